"""Claim owners in the state database: who holds which queued ids, their heartbeats, and what a run left behind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .core import StateCore, batches, read_dt, read_dt_required, utcnow
from .owners import ClaimOwner, OwnerStatus, host_key, process_alive


@dataclass(frozen=True)
class LeftItem:
    """An id a run left pending or claimed, and why (see StateDB.left_behind)."""

    aweme_id: str
    state: str
    attempts: int
    owner_id: str | None
    owner_alive: bool | None  # None: not claimed
    last_error: str | None


class OwnerState(StateCore):
    """claim_owners: register, heartbeat, end and expire owners; report who holds what and what is left."""

    def register_owner(self, owner: ClaimOwner) -> None:
        """Start heartbeating as ``owner`` (call before claiming with it)."""
        now = utcnow()
        self._write(
            "INSERT INTO claim_owners (owner_id, run_id, host, host_key, pid, pid_start, heartbeat_seconds, "
            "started_at, heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner_id) "
            "DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            [
                owner.owner_id,
                owner.run_id,
                owner.host,
                owner.host_key,
                owner.pid,
                owner.pid_start,
                owner.heartbeat_seconds,
                now,
                now,
                now + timedelta(seconds=owner.stale_after),
            ],
        )

    def heartbeat(self, owner: ClaimOwner, *, lease: timedelta | None = None) -> bool:
        """Renew ``owner``'s claims (and the lease of each, for readers that only know leases). False when the owner
        had already expired: some of its claims may have been taken since."""
        now = utcnow()
        with self._tx(write=True) as tx:
            row = tx.fetchone("SELECT expires_at FROM claim_owners WHERE owner_id = ?", [owner.owner_id])
            live = row is not None and read_dt_required(row[0]) > now
            tx.execute(
                "UPDATE claim_owners SET heartbeat_at = ?, expires_at = ? WHERE owner_id = ?",
                [now, now + timedelta(seconds=owner.stale_after), owner.owner_id],
            )
            if lease is not None:
                tx.execute(
                    "UPDATE archive_queue SET lease_until = ? WHERE claim_owner = ? AND lease_until IS NOT NULL",
                    [now + lease, owner.owner_id],
                )
        return live

    def end_owner(self, owner: ClaimOwner) -> int:
        """The owner is done: whatever it still holds is released (attempts kept). Returns how many claims."""
        with self._tx(write=True) as tx:
            released = tx.execute(
                "UPDATE archive_queue SET claim_owner = NULL, lease_until = NULL, updated_at = ? WHERE claim_owner = ?",
                [utcnow(), owner.owner_id],
            ).rowcount
            tx.execute("DELETE FROM claim_owners WHERE owner_id = ?", [owner.owner_id])
        return released

    def expire_dead_owners(self, *, alive=process_alive, local_key: str | None = None) -> list[str]:
        """Expire live-looking owners on this host whose process is gone, so their claims are free at once.

        ``local_key`` is this host's ``host_key()`` (same host name, boot and pid namespace: only then are pids
        comparable); a pid reused by another process is told apart by its start time. Returns the expired owner
        ids; owners elsewhere are left to their heartbeats.
        """
        local_key = local_key or host_key()
        now = utcnow()
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT owner_id, pid, pid_start FROM claim_owners WHERE host_key = ? AND expires_at > ?",
                [local_key, now],
            )
        dead = [owner_id for owner_id, pid, started in rows if not alive(int(pid), started)]
        if dead:
            with self._tx(write=True) as tx:
                for batch in batches(dead):
                    marks = ", ".join(["?"] * len(batch))
                    tx.execute(f"UPDATE claim_owners SET expires_at = ? WHERE owner_id IN ({marks})", [now, *batch])
        return dead

    def owner_statuses(self) -> list[OwnerStatus]:
        """Every registered owner and every owner id still named by a claim, with its claims and whether it is alive."""
        now = utcnow()
        local = host_key()
        with self._tx() as tx:
            owners = tx.fetchall(
                "SELECT owner_id, run_id, host, host_key, pid, pid_start, heartbeat_at, expires_at FROM claim_owners"
            )
            claims = dict(
                tx.fetchall(
                    "SELECT claim_owner, COUNT(*) FROM archive_queue WHERE claim_owner IS NOT NULL "
                    "AND state IN ('pending', 'resolved') GROUP BY claim_owner"
                )
            )
        out = []
        for owner_id, run_id, host, key, pid, started, beat, expires in owners:
            beat_at = read_dt(beat)
            if read_dt_required(expires) <= now:
                alive, why = False, f"silent since {beat_at:%Y-%m-%d %H:%M:%S} UTC"
            elif key == local and not process_alive(int(pid), started):
                alive, why = False, "process gone"
            else:
                alive, why = True, "heartbeating"
            out.append(OwnerStatus(owner_id, run_id, host, int(pid), beat_at, alive, why, int(claims.pop(owner_id, 0))))
        for owner_id, count in claims.items():
            out.append(OwnerStatus(owner_id, None, "?", 0, None, False, "unregistered", int(count)))
        return out

    def left_behind(self, limit: int = 100) -> tuple[int, list[LeftItem]]:
        """Ids still pending or resolved (not yet downloaded): how many, and up to ``limit`` of them with their claim.

        Each run reports these with a reason, so nothing is left behind silently."""
        now = utcnow()
        with self._tx() as tx:
            total = int(tx.fetchrow("SELECT COUNT(*) FROM archive_queue WHERE state IN ('pending', 'resolved')")[0])
            rows = tx.fetchall(
                "SELECT q.aweme_id, q.state, q.attempts, q.claim_owner, o.expires_at, q.last_error, q.lease_until, "
                "o.host_key, o.pid, o.pid_start "
                "FROM archive_queue q LEFT JOIN claim_owners o ON o.owner_id = q.claim_owner "
                "WHERE q.state IN ('pending', 'resolved') ORDER BY q.added_at, q.aweme_id LIMIT ?",
                [int(limit)],
            )
        items = []
        local = host_key()
        for aweme_id, state, attempts, owner, expires, error, lease, key, pid, started in rows:
            if owner is not None:
                alive = expires is not None and read_dt_required(expires) > now
                if alive and key == local:  # on this host a gone process is dead whatever its last heartbeat
                    alive = process_alive(int(pid), started)
            elif lease is not None and read_dt_required(lease) > now:
                alive = True  # a lease of a release before owners
            else:
                alive = None
            items.append(LeftItem(aweme_id, state, int(attempts), owner, alive, error))
        return total, items

"""Claim owners in the state database: who holds which queued ids and units of work, their heartbeats, and what a
run left behind.

Two kinds of claim share one owner machinery: queued video ids (``archive_queue.claim_owner``) and units of API work
that are not queue items (``work_claims``: a listing walk, an account's profile or follow walk, a video's comment
walk, a handle's user id, each for one day). Either holds while its owner lives (see ``owners``): an owner on this
host is dead only when its process is gone, however late its heartbeat (every claim first vouches for this host's
late owners whose process is alive, in the claim's own transaction); an owner on another host is presumed dead once
silent for three heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from .backends import Tx
from .core import StateCore, batches, read_dt, read_dt_required, utcnow
from .owners import STALE_AFTER_BEATS, ClaimOwner, OwnerStatus, host_key, process_alive, provably_alive


@dataclass(frozen=True)
class LeftItem:
    """An id a run left pending or claimed, and why (see StateDB.left_behind)."""

    aweme_id: str
    state: str
    attempts: int
    owner_id: str | None
    owner_alive: bool | None  # None: not claimed
    last_error: str | None


UnitClaimStatus = Literal["mine", "done", "held"]


@dataclass(frozen=True)
class UnitClaim:
    """The answer to claiming one unit of work: ``mine`` (claimed now, ``taken_over`` when another owner had it before
    and stopped), ``done`` (finished for the day, by anyone) or ``held`` (a live owner other than us works on it)."""

    status: UnitClaimStatus
    taken_over: bool = False
    holder: str | None = None  # the live owner's run id, when held


@dataclass(frozen=True)
class UnitRow:
    """One unit of the day as `tiklive status` and waiting workers read it."""

    unit: str
    state: str  # 'claimed', 'left' or 'done'
    owner_id: str | None
    owner_alive: bool
    complete: bool  # its kv marker says it is finished for the day
    done_by: str | None


# A unit row is free when nobody live holds it: no owner, or an owner whose expiry passed (silent, or found dead).
_UNIT_FREE = (
    "(work_claims.claim_owner IS NULL OR NOT EXISTS (SELECT 1 FROM claim_owners o "
    "WHERE o.owner_id = work_claims.claim_owner AND o.expires_at > ?))"
)


def vouch_for_local(tx: Tx, now: datetime, local_key: str | None = None) -> list[str]:
    """Inside a claim's transaction, before it decides: renew every owner on this host whose heartbeat is late but
    whose process is provably the one that registered (alive, same start time). Returns their ids.

    A late heartbeat on this host says the owner is slow (starved of CPU, a long stall, a wall-clock jump), never
    that it is dead: the process table says that, and ``expire_dead_owners`` acts on it. Without this a claimer
    would take a live owner's ids whose requests may already be on their way, and both would pay for them."""
    rows = tx.fetchall(
        "SELECT owner_id, pid, pid_start, heartbeat_seconds FROM claim_owners WHERE host_key = ? AND expires_at <= ? "
        "ORDER BY owner_id",  # owner rows are locked in one order by every claimer (no deadlock between two)
        [local_key or host_key(), now],
    )
    vouched = []
    for owner_id, pid, started, beat in rows:
        if provably_alive(int(pid), started):
            tx.execute(
                "UPDATE claim_owners SET expires_at = ? WHERE owner_id = ?",
                [now + timedelta(seconds=STALE_AFTER_BEATS * float(beat)), owner_id],
            )
            vouched.append(owner_id)
    return vouched


def owner_alive(expires: object, key: str, pid: object, started: str | None, now: datetime, local: str) -> bool:
    """Whether a registered owner still holds its claims, as claimers decide it: on this host, with its start time
    known, its process alone decides (a late heartbeat is vouched for at the next claim); elsewhere its expiry."""
    if key == local and started:
        return process_alive(int(pid), started)  # type: ignore[call-overload]
    alive = expires is not None and read_dt_required(expires) > now
    return alive and (key != local or process_alive(int(pid), started))  # type: ignore[call-overload]


def unit_done_key(unit: str, day: date) -> str:
    """The kv marker that says ``unit`` is finished for ``day`` (committed with the walk's last cursor)."""
    return f"complete:{unit}:{day.isoformat()}"


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
        """The owner is done: whatever it still holds (queued ids, units of work) is released (attempts kept).
        Returns how many claims."""
        with self._tx(write=True) as tx:
            # the owner's row first, as every claim (vouching), heartbeat and confirmation takes it: no deadlock
            tx.execute("DELETE FROM claim_owners WHERE owner_id = ?", [owner.owner_id])
            released = tx.execute(
                "UPDATE archive_queue SET claim_owner = NULL, lease_until = NULL, updated_at = ? WHERE claim_owner = ?",
                [utcnow(), owner.owner_id],
            ).rowcount
            released += tx.execute(
                "UPDATE work_claims SET claim_owner = NULL WHERE claim_owner = ? AND state <> 'done'", [owner.owner_id]
            ).rowcount
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
            for owner_id, count in tx.fetchall(
                "SELECT claim_owner, COUNT(*) FROM work_claims WHERE claim_owner IS NOT NULL AND state <> 'done' "
                "GROUP BY claim_owner"
            ):
                claims[owner_id] = claims.get(owner_id, 0) + count
        out = []
        for owner_id, run_id, host, key, pid, started, beat, expires in owners:
            beat_at = read_dt(beat)
            if owner_alive(expires, key, pid, started, now, local):
                late = read_dt_required(expires) <= now
                alive, why = True, "alive (heartbeat late)" if late else "heartbeating"
            elif key == local and not process_alive(int(pid), started):
                alive, why = False, "process gone"
            else:
                alive, why = False, f"silent since {beat_at:%Y-%m-%d %H:%M:%S} UTC"
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
                alive = expires is not None and owner_alive(expires, key, pid, started, now, local)
            elif lease is not None and read_dt_required(lease) > now:
                alive = True  # a lease of a release before owners
            else:
                alive = None
            items.append(LeftItem(aweme_id, state, int(attempts), owner, alive, error))
        return total, items

    # -- units of work that are not queue items ----------------------------------------------------------------------
    def claim_unit(self, unit: str, day: date, owner: ClaimOwner) -> UnitClaim:
        """Atomically claim ``unit`` for ``day`` for ``owner`` (registered), before its first request.

        One statement decides, on both backends (an upsert whose update applies only to a free row: on Postgres the
        conflicting row is locked while its condition is evaluated; SQLite holds the write lock): of concurrent
        claimers exactly one gets ``mine``. A unit whose done marker exists is ``done``; one held by a live owner
        other than ``owner`` is ``held``; one whose owner is dead or silent is taken over (``taken_over``), and the
        walk resumes from the cursor its owner persisted after every page. Claiming a unit already ours is ``mine``.
        """
        now = utcnow()
        done_key = unit_done_key(unit, day)
        with self._tx(write=True) as tx:
            if tx.fetchone("SELECT 1 FROM kv WHERE key = ?", [done_key]) is not None:
                return UnitClaim("done")
            vouch_for_local(tx, now)  # a late owner of this host whose process lives keeps its unit
            before = tx.fetchone("SELECT claim_owner FROM work_claims WHERE unit = ? AND day = ?", [unit, day])
            won = tx.fetchall(
                "INSERT INTO work_claims (unit, day, state, claim_owner, attempts, claimed_at) "
                "VALUES (?, ?, 'claimed', ?, 1, ?) ON CONFLICT (unit, day) DO UPDATE SET state = 'claimed', "
                "claim_owner = excluded.claim_owner, attempts = work_claims.attempts + 1, "
                "claimed_at = excluded.claimed_at, done_at = NULL, done_by = NULL, done_pid = NULL "
                # a row finished since our look at its done marker (the finisher committed in between) is done: the
                # upsert decides on the row as committed now, so a unit just finished is never claimed again
                "WHERE work_claims.state <> 'done' AND "
                f"(work_claims.claim_owner = excluded.claim_owner OR {_UNIT_FREE}) RETURNING unit",
                [unit, day, owner.owner_id, now, now],
            )
            if won:
                previous = before[0] if before else None
                return UnitClaim("mine", taken_over=previous is not None and previous != owner.owner_id)
            holder = tx.fetchone(
                "SELECT w.state, o.run_id FROM work_claims w LEFT JOIN claim_owners o ON o.owner_id = w.claim_owner "
                "WHERE w.unit = ? AND w.day = ?",
                [unit, day],
            )
        if holder is not None and holder[0] == "done":
            return UnitClaim("done")
        return UnitClaim("held", holder=holder[1] if holder else None)

    def unit_held(self, unit: str, day: date, owner: ClaimOwner) -> bool:
        """Whether ``owner`` still holds ``unit`` (checked before each page: a claim lost while this process was
        silent may have been taken over by another run, which then walks on from the persisted cursor)."""
        with self._tx() as tx:
            row = tx.fetchone(
                "SELECT 1 FROM work_claims WHERE unit = ? AND day = ? AND claim_owner = ? AND state <> 'done'",
                [unit, day, owner.owner_id],
            )
        return row is not None

    def confirm_unit(self, unit: str, day: date, owner: ClaimOwner) -> bool:
        """Right before a page is paid for: renew ``owner`` and check that it still holds ``unit``, in one
        transaction that locks the unit's row (the owner's row first, as its heartbeat does), so no claimer can take
        it between the check and the renewal. False: taken over, the page is not bought."""
        now = utcnow()
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE claim_owners SET heartbeat_at = ?, expires_at = ? WHERE owner_id = ?",
                [now, now + timedelta(seconds=owner.stale_after), owner.owner_id],
            )
            held = tx.fetchall(  # an UPDATE, not a SELECT: it takes the row's lock (Postgres) as confirm_claim does
                "UPDATE work_claims SET claimed_at = claimed_at WHERE unit = ? AND day = ? AND claim_owner = ? "
                "AND state <> 'done' RETURNING unit",
                [unit, day, owner.owner_id],
            )
        return bool(held)

    def finish_unit(self, unit: str, day: date, owner: ClaimOwner) -> None:
        """``unit`` is finished for ``day``: its done marker is written (if the walk's last page did not already) and
        the claim records who finished it. Another owner that claims it now gets ``done`` and spends nothing."""
        now = utcnow()
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, '1', ?) ON CONFLICT (key) DO NOTHING",
                [unit_done_key(unit, day), now],
            )
            tx.execute(
                "UPDATE work_claims SET state = 'done', claim_owner = NULL, done_at = ?, done_by = ?, done_pid = ? "
                "WHERE unit = ? AND day = ?",
                [now, owner.run_id, owner.pid, unit, day],
            )

    def leave_unit(self, unit: str, day: date, owner: ClaimOwner) -> None:
        """``unit``'s answers stayed unreadable: ``owner`` keeps it until it ends (so this run does not loop on it and
        no other run waits for it), then it is free for the next run."""
        self._write(
            "UPDATE work_claims SET state = 'left' WHERE unit = ? AND day = ? AND claim_owner = ?",
            [unit, day, owner.owner_id],
        )

    def release_unit(self, unit: str, day: date, owner: ClaimOwner) -> None:
        """Give ``unit`` back at once (nothing was spent on it): the next claimer takes it."""
        self._write(
            "UPDATE work_claims SET claim_owner = NULL WHERE unit = ? AND day = ? AND claim_owner = ? "
            "AND state <> 'done'",
            [unit, day, owner.owner_id],
        )

    def reopen_unit(self, unit: str, day: date) -> None:
        """Operator action (a cursor reset): the unit is no longer done for ``day``; the next run walks it again."""
        with self._tx(write=True) as tx:
            tx.execute("DELETE FROM kv WHERE key = ?", [unit_done_key(unit, day)])
            tx.execute(
                "UPDATE work_claims SET state = 'claimed', claim_owner = NULL WHERE unit = ? AND day = ?", [unit, day]
            )

    def units(self, day: date, prefix: str = "") -> list[UnitRow]:
        """The day's claimed units whose name starts with ``prefix``, with their holder's liveness and done marker."""
        now = utcnow()
        local = host_key()
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT w.unit, w.state, w.claim_owner, o.expires_at, o.host_key, o.pid, o.pid_start, w.done_by, "
                "k.key FROM work_claims w LEFT JOIN claim_owners o ON o.owner_id = w.claim_owner "
                "LEFT JOIN kv k ON k.key = 'complete:' || w.unit || ':' || ? "
                "WHERE w.day = ? AND substr(w.unit, 1, CAST(? AS INTEGER)) = ? ORDER BY w.unit",
                [day.isoformat(), day, len(prefix), prefix],
            )
        out = []
        for unit, state, owner_id, expires, key, pid, started, done_by, marker in rows:
            alive = owner_id is not None and expires is not None and owner_alive(expires, key, pid, started, now, local)
            out.append(UnitRow(unit, state, owner_id, alive, marker is not None, done_by))
        return out

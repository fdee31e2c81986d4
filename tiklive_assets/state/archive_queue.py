"""The archive queue: ids to capture, claimed by one worker at a time, and the states each id moves through.

A claimed id is paid for (its /post-detail/ request) only by the owner that holds it: ``confirm_claim`` renews the
owner and re-checks the claim in one transaction right before each paid request, a claim is taken from an owner of
this host only once its process is gone (``claims.vouch_for_local`` runs in every claim's transaction), and a
release names its owner, so a run never frees an id that another run has taken since.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from .backends import Tx
from .claims import vouch_for_local
from .core import StateCore, batches, utcnow
from .models import QUEUE_STATES, QueueItem
from .owners import ClaimOwner

DEFAULT_LEASE = timedelta(minutes=15)

_QUEUE_COLS = "aweme_id, source, author_handle, state, attempts"


def _queue_item(row: tuple) -> QueueItem:
    return QueueItem(aweme_id=row[0], source=row[1], author_handle=row[2], state=row[3], attempts=int(row[4]))


def queued_ids(tx: Tx, aweme_ids: list[str]) -> set[str]:
    """Which of ``aweme_ids`` (one batch) are in the queue already, whatever their state."""
    marks = ", ".join(["?"] * len(aweme_ids))
    return {r[0] for r in tx.fetchall(f"SELECT aweme_id FROM archive_queue WHERE aweme_id IN ({marks})", aweme_ids)}


def insert_pending(tx: Tx, rows: list[tuple[str, str, str | None]], now: datetime) -> int:
    """Queue (aweme_id, source, author_handle) rows (one batch) as 'pending'; returns how many were new."""
    values = ", ".join(["(?, ?, ?, 'pending', 0, ?, ?)"] * len(rows))
    params: list[Any] = []
    for aweme_id, source, author_handle in rows:
        params += [aweme_id, source, author_handle, now, now]
    return len(
        tx.fetchall(
            "INSERT INTO archive_queue (aweme_id, source, author_handle, state, attempts, added_at, updated_at) "
            f"VALUES {values} ON CONFLICT (aweme_id) DO NOTHING RETURNING aweme_id",
            params,
        )
    )


def mark_downloaded_in(tx: Tx, aweme_id: str, now: datetime) -> bool:
    """pending/resolved -> downloaded inside ``tx`` (idempotent; the claim ends). False if unknown or dead."""
    cur = tx.execute(
        "UPDATE archive_queue SET state = 'downloaded', downloaded_at = COALESCE(downloaded_at, ?), "
        "lease_until = NULL, claim_owner = NULL, updated_at = ? WHERE aweme_id = ? AND state <> 'dead'",
        [now, now, aweme_id],
    )
    return cur.rowcount > 0


class QueueState(StateCore):
    """archive_queue: enqueue, claim (with an owner or a lease), and move ids through their states."""

    def enqueue(self, items: Iterable[tuple[str, str, str | None]]) -> int:
        """Add (aweme_id, source, author_handle) rows as 'pending'; ids already queued (any state) are left alone.

        Returns how many ids were new.
        """
        rows: dict[str, tuple[str, str, str | None]] = {}
        for aweme_id, source, author_handle in items:
            aweme_id = str(aweme_id).strip()
            if not aweme_id:
                raise ValueError("enqueue: empty aweme_id")
            if aweme_id not in rows:
                rows[aweme_id] = (aweme_id, str(source), author_handle)
        added = 0
        for batch in batches(list(rows.values())):  # one transaction a batch
            now = utcnow()
            with self._tx(write=True) as tx:
                added += insert_pending(tx, batch, now)
        return added

    def known(self, aweme_ids: Iterable[str]) -> set[str]:
        """The subset of ``aweme_ids`` already in the queue, whatever their state."""
        ids = list(dict.fromkeys(str(a) for a in aweme_ids))
        found: set[str] = set()
        for batch in batches(ids):
            with self._tx() as tx:
                found.update(queued_ids(tx, batch))
        return found

    def pending(self, limit: int) -> list[QueueItem]:
        """Up to ``limit`` 'pending' rows, oldest first (claimed or not; read-only)."""
        with self._tx() as tx:
            rows = tx.fetchall(
                f"SELECT {_QUEUE_COLS} FROM archive_queue WHERE state = 'pending' ORDER BY added_at, aweme_id LIMIT ?",
                [int(limit)],
            )
        return [_queue_item(r) for r in rows]

    # A row is free when nobody holds it: no owner and no unexpired lease (claims of releases before owners), or an
    # owner that is no longer live (expires_at passed: it stopped heartbeating, or was found dead and expired).
    _FREE = (
        "((q.claim_owner IS NULL AND (q.lease_until IS NULL OR q.lease_until <= ?)) OR "
        "(q.claim_owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM claim_owners o "
        "WHERE o.owner_id = q.claim_owner AND o.expires_at > ?)))"
    )

    def claim_pending(
        self, limit: int, *, lease: timedelta = DEFAULT_LEASE, state: str = "pending", owner: ClaimOwner | None = None
    ) -> list[QueueItem]:
        """Atomically claim up to ``limit`` free rows in ``state``, oldest first, incrementing ``attempts``.

        With an ``owner`` (registered with ``register_owner``), a claim holds as long as its owner heartbeats, however
        long the id takes, and is free again as soon as the owner stops (``expire_dead_owners``, or its expiry
        passing): a killed run's ids are taken by the next run at once. Without one, a claim is a lease that
        holds for ``lease``. Either way it ends when the row changes state (mark_downloaded / mark_dead) or on
        ``release()``. Concurrent claimers (threads or processes) never receive the same id.
        """
        if state not in ("pending", "resolved"):
            raise ValueError(f"claim_pending: can only claim 'pending' or 'resolved' rows, not {state!r}")
        if limit <= 0:
            return []
        now = utcnow()
        lock = " FOR UPDATE OF q SKIP LOCKED" if self.dialect == "postgres" else ""
        with self._tx(write=True) as tx:
            vouch_for_local(tx, now)  # a late owner of this host whose process lives keeps its ids
            rows = tx.fetchall(
                "UPDATE archive_queue SET attempts = attempts + 1, lease_until = ?, claim_owner = ?, updated_at = ? "
                "WHERE aweme_id IN (SELECT q.aweme_id FROM archive_queue q "
                f"WHERE q.state = ? AND {self._FREE} "
                f"ORDER BY q.added_at, q.aweme_id LIMIT ?{lock}) "
                f"RETURNING {_QUEUE_COLS}, added_at",
                [now + lease, owner.owner_id if owner else None, now, state, now, now, int(limit)],
            )
        rows.sort(key=lambda r: (r[5], r[0]))
        return [_queue_item(r) for r in rows]

    def claim_held(self, aweme_id: str, owner: ClaimOwner) -> bool:
        """Whether ``owner`` still holds ``aweme_id`` (checked before paying for it: a claim lost while this process
        was silent may have been taken by another run, which then pays for it instead)."""
        with self._tx() as tx:
            row = tx.fetchone(
                "SELECT 1 FROM archive_queue WHERE aweme_id = ? AND claim_owner = ? "
                "AND state IN ('pending', 'resolved')",
                [aweme_id, owner.owner_id],
            )
        return row is not None

    def confirm_claim(self, aweme_id: str, owner: ClaimOwner) -> bool:
        """Right before paying for ``aweme_id``: renew ``owner`` (its heartbeat, as the heartbeat thread would) and
        check that it still holds the id, in one transaction that locks the id's row, so no claimer can take it
        between the check and the renewal. False: another run holds it now (it pays, not us)."""
        now = utcnow()
        with self._tx(write=True) as tx:
            # the owner's row first, then the id's: the order the heartbeat takes them in (no deadlock with it)
            tx.execute(
                "UPDATE claim_owners SET heartbeat_at = ?, expires_at = ? WHERE owner_id = ?",
                [now, now + timedelta(seconds=owner.stale_after), owner.owner_id],
            )
            held = tx.fetchall(
                "UPDATE archive_queue SET updated_at = ? WHERE aweme_id = ? AND claim_owner = ? "
                "AND state IN ('pending', 'resolved') RETURNING aweme_id",
                [now, aweme_id, owner.owner_id],
            )
        return bool(held)

    def release(self, aweme_id: str, *, refund_attempt: bool = False, owner: ClaimOwner | None = None) -> bool:
        """Drop the claim on a row so it can be claimed again at once. ``refund_attempt`` takes back the attempt the
        claim counted, for an id that was never really tried (the run stopped first, or failed for a reason that
        was not the id's). With ``owner``, only that owner's claim is dropped: an id another run has taken since is
        left to it."""
        refund = ", attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END" if refund_attempt else ""
        mine = " AND claim_owner = ?" if owner is not None else ""
        changed = self._write(
            f"UPDATE archive_queue SET lease_until = NULL, claim_owner = NULL{refund}, updated_at = ? "
            f"WHERE aweme_id = ?{mine}",
            [utcnow(), aweme_id, *([owner.owner_id] if owner is not None else [])],
        )
        return changed > 0

    def note_failure(self, aweme_id: str, problem: str) -> None:
        """Remember why the id's last attempt failed (shown by `tiklive status` and the run summary)."""
        self._write(
            "UPDATE archive_queue SET last_error = ?, updated_at = ? WHERE aweme_id = ?",
            [problem[:500], utcnow(), aweme_id],
        )

    def mark_resolved(self, aweme_id: str, author_handle: str | None = None) -> bool:
        """pending -> resolved (keeps the known handle when ``author_handle`` is None). False if not applicable."""
        now = utcnow()
        changed = self._write(
            "UPDATE archive_queue SET state = 'resolved', author_handle = COALESCE(?, author_handle), "
            # the claim (lease) holds until downloaded, so no second worker pays for the same id again
            "resolved_at = ?, updated_at = ? "
            "WHERE aweme_id = ? AND state IN ('pending', 'resolved')",
            [author_handle, now, now, aweme_id],
        )
        return changed > 0

    def mark_downloaded(self, aweme_id: str) -> bool:
        """pending/resolved -> downloaded (idempotent). False if the id is unknown or dead."""
        with self._tx(write=True) as tx:
            return mark_downloaded_in(tx, aweme_id, utcnow())

    def mark_dead(self, aweme_id: str, reason: str, http_status: int | None = None) -> bool:
        """Mark the id dead (never claimed or re-enqueued again) and dead-letter it.

        Idempotent: the first reason/status/time is kept. Returns True when the dead letter is new.
        An id not yet in the queue is added as dead (source 'unknown') so discovery cannot re-queue it.
        """
        now = utcnow()
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO archive_queue (aweme_id, source, state, attempts, added_at, updated_at) "
                "VALUES (?, 'unknown', 'dead', 0, ?, ?) ON CONFLICT (aweme_id) DO UPDATE SET "
                "state = 'dead', lease_until = NULL, claim_owner = NULL, updated_at = excluded.updated_at",
                [aweme_id, now, now],
            )
            new = tx.fetchall(
                "INSERT INTO dead_letter (aweme_id, reason, http_status, failed_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (aweme_id) DO NOTHING RETURNING aweme_id",
                [aweme_id, reason, http_status, now],
            )
        return bool(new)

    def requeue(self, aweme_id: str) -> bool:
        """Operator action: put a row back to 'pending' with attempts reset, and drop its dead letter."""
        with self._tx(write=True) as tx:
            cur = tx.execute(
                "UPDATE archive_queue SET state = 'pending', attempts = 0, lease_until = NULL, claim_owner = NULL, "
                "last_error = NULL, updated_at = ? "
                "WHERE aweme_id = ?",
                [utcnow(), aweme_id],
            )
            tx.execute("DELETE FROM dead_letter WHERE aweme_id = ?", [aweme_id])
            return cur.rowcount > 0

    def state_of(self, aweme_id: str) -> str | None:
        with self._tx() as tx:
            row = tx.fetchone("SELECT state FROM archive_queue WHERE aweme_id = ?", [aweme_id])
        return row[0] if row else None

    def queue_depth(self) -> dict[str, int]:
        """Row count per state; every state is present (zeros included)."""
        depth = {state: 0 for state in QUEUE_STATES}
        with self._tx() as tx:
            for state, count in tx.fetchall("SELECT state, COUNT(*) FROM archive_queue GROUP BY state"):
                depth[state] = int(count)
        return depth

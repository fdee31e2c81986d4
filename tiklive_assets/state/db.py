"""StateDB: the pipeline's operational state (queue, dead letters, files, cursors, credits, caches) on sqlite or Postgres."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .backends import Backend, Tx, backend_from_url
from .errors import CreditBudgetExhausted
from .models import FILE_KINDS, QUEUE_STATES, CursorRecord, FileRecord, QueueItem, is_file_kind
from .owners import ClaimOwner, OwnerStatus, host_key, process_alive
from .schema import ADDED_COLUMNS, add_columns_sql, ddl_for, widen_file_kinds_sql

DEFAULT_LEASE = timedelta(minutes=15)
_BATCH = 500
# Advisory-lock namespaces (Postgres): (namespace, key) pairs for pg_advisory_xact_lock(int, int).
_LOCK_MIGRATE = (0x71C1, 0)
_LOCK_CREDITS = 0x71C2

_QUEUE_COLS = "aweme_id, source, author_handle, state, attempts"


@dataclass(frozen=True)
class LeftItem:
    """An id a run left pending or claimed, and why (see StateDB.left_behind)."""

    aweme_id: str
    state: str
    attempts: int
    owner_id: str | None
    owner_alive: bool | None  # None: not claimed
    last_error: str | None


@dataclass(frozen=True)
class ListingPage:
    """What StateDB.record_listing_page committed for one listing page, in one transaction."""

    new: int  # ids queued by this page
    enqueued_today: int  # the walk's total for the day, this page included
    complete: bool  # the walk is finished for the day


@dataclass(frozen=True)
class DeadLetter:
    aweme_id: str
    reason: str | None
    http_status: int | None
    failed_at: datetime | None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _read_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _as_utc(value)
    return _as_utc(datetime.fromisoformat(str(value)))


def _read_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _as_day(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return _as_utc(value).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _norm_handle(handle: str) -> str:
    """TikTok handles are case-insensitive; '@Cristiano' and 'cristiano' are the same key."""
    return handle.strip().lstrip("@").lower()


def _batches(seq: list, size: int = _BATCH) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _queue_item(row: tuple) -> QueueItem:
    return QueueItem(aweme_id=row[0], source=row[1], author_handle=row[2], state=row[3], attempts=int(row[4]))


def state_url_for(data_root: str | Path) -> str:
    """The default embedded state database URL for a data root: ``sqlite:///<root>/state.sqlite``."""
    return f"sqlite:///{Path(data_root).expanduser().resolve() / 'state.sqlite'}"


class StateDB:
    """Operational state shared by every worker thread and process. Thread-safe; nothing connects until first use."""

    def __init__(self, backend: Backend, url: str) -> None:
        self._backend = backend
        self.url = url
        self._migrated = False
        self._migrate_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> StateDB:
        """``sqlite:///abs/path/state.sqlite`` (embedded, WAL) or ``postgresql://user@host/db``."""
        return cls(backend_from_url(url), url)

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgres'."""
        return self._backend.dialect

    def __repr__(self) -> str:
        return f"StateDB(dialect={self.dialect!r})"

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this object opened (it reconnects if used again)."""
        self._backend.close()

    # ------------------------------------------------------------------------------------------
    # plumbing
    # ------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create every table and index that does not exist yet (idempotent, safe to run concurrently)."""
        with self._backend.transaction(write=True) as tx:
            if self.dialect == "postgres":
                tx.execute("SELECT pg_advisory_xact_lock(CAST(? AS integer), CAST(? AS integer))", _LOCK_MIGRATE)
            for stmt in ddl_for(self.dialect):
                tx.execute(stmt)
            for stmt in widen_file_kinds_sql(self.dialect, self._file_kind_definition(tx)):
                tx.execute(stmt)
            for stmt in add_columns_sql(self.dialect, self._columns(tx, {t for t, _, _ in ADDED_COLUMNS})):
                tx.execute(stmt)
        self._migrated = True

    def _columns(self, tx: Tx, tables: set[str]) -> dict[str, set[str]]:
        """The columns each of ``tables`` has now (to add those an older release did not create)."""
        out: dict[str, set[str]] = {}
        for table in sorted(tables):
            if self.dialect == "postgres":
                rows = tx.fetchall("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                   "AND table_schema = current_schema()", [table])
                out[table] = {r[0] for r in rows}
            else:
                out[table] = {r[1] for r in tx.fetchall(f"PRAGMA table_info({table})")}
        return out

    def _file_kind_definition(self, tx: Tx) -> str:
        """The archived_files kind CHECK as the database holds it (to tell whether it predates photo posts)."""
        if self.dialect == "postgres":
            row = tx.fetchone("SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                              "WHERE t.relname = 'archived_files' AND c.contype = 'c' AND t.relnamespace = "
                              "to_regnamespace(current_schema())::oid")
        else:
            row = tx.fetchone("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'archived_files'")
        return str(row[0]) if row and row[0] else ""

    def _ensure_migrated(self) -> None:
        if self._migrated:
            return
        with self._migrate_lock:
            if not self._migrated:
                self.migrate()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Tx]:
        self._ensure_migrated()
        with self._backend.transaction(write=write) as tx:
            yield tx

    # ------------------------------------------------------------------------------------------
    # archive_queue
    # ------------------------------------------------------------------------------------------
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
        for batch in _batches(list(rows.values())):
            now = utcnow()
            values = ", ".join(["(?, ?, ?, 'pending', 0, ?, ?)"] * len(batch))
            params: list[Any] = []
            for aweme_id, source, author_handle in batch:
                params += [aweme_id, source, author_handle, now, now]
            with self._tx(write=True) as tx:
                inserted = tx.fetchall(
                    "INSERT INTO archive_queue (aweme_id, source, author_handle, state, attempts, added_at, updated_at) "
                    f"VALUES {values} ON CONFLICT (aweme_id) DO NOTHING RETURNING aweme_id",
                    params,
                )
            added += len(inserted)
        return added

    def known(self, aweme_ids: Iterable[str]) -> set[str]:
        """The subset of ``aweme_ids`` already in the queue, whatever their state."""
        ids = list(dict.fromkeys(str(a) for a in aweme_ids))
        found: set[str] = set()
        for batch in _batches(ids):
            marks = ", ".join(["?"] * len(batch))
            with self._tx() as tx:
                found.update(r[0] for r in tx.fetchall(
                    f"SELECT aweme_id FROM archive_queue WHERE aweme_id IN ({marks})", batch))
        return found

    def pending(self, limit: int) -> list[QueueItem]:
        """Up to ``limit`` 'pending' rows, oldest first (claimed or not; read-only)."""
        with self._tx() as tx:
            rows = tx.fetchall(
                f"SELECT {_QUEUE_COLS} FROM archive_queue WHERE state = 'pending' "
                "ORDER BY added_at, aweme_id LIMIT ?", [int(limit)])
        return [_queue_item(r) for r in rows]

    # A row is free when nobody holds it: no owner and no unexpired lease (claims of releases before owners), or an
    # owner that is no longer live (expires_at passed: it stopped heartbeating, or was found dead and expired).
    _FREE = ("((q.claim_owner IS NULL AND (q.lease_until IS NULL OR q.lease_until <= ?)) OR "
             "(q.claim_owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM claim_owners o "
             "WHERE o.owner_id = q.claim_owner AND o.expires_at > ?)))")

    def claim_pending(self, limit: int, *, lease: timedelta = DEFAULT_LEASE, state: str = "pending",
                      owner: ClaimOwner | None = None) -> list[QueueItem]:
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
            row = tx.fetchone("SELECT 1 FROM archive_queue WHERE aweme_id = ? AND claim_owner = ? "
                              "AND state IN ('pending', 'resolved')", [aweme_id, owner.owner_id])
        return row is not None

    def release(self, aweme_id: str, *, refund_attempt: bool = False) -> bool:
        """Drop the claim on a row so it can be claimed again at once. ``refund_attempt`` takes back the attempt the
        claim counted, for an id that was never really tried (the run stopped first, or failed for a reason that
        was not the id's)."""
        refund = ", attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END" if refund_attempt else ""
        with self._tx(write=True) as tx:
            cur = tx.execute(f"UPDATE archive_queue SET lease_until = NULL, claim_owner = NULL{refund}, updated_at = ? "
                             "WHERE aweme_id = ?", [utcnow(), aweme_id])
            return cur.rowcount > 0

    def note_failure(self, aweme_id: str, problem: str) -> None:
        """Remember why the id's last attempt failed (shown by `tiklive status` and the run summary)."""
        with self._tx(write=True) as tx:
            tx.execute("UPDATE archive_queue SET last_error = ?, updated_at = ? WHERE aweme_id = ?",
                       [problem[:500], utcnow(), aweme_id])

    # ------------------------------------------------------------------------------------------
    # claim owners
    # ------------------------------------------------------------------------------------------
    def register_owner(self, owner: ClaimOwner) -> None:
        """Start heartbeating as ``owner`` (call before claiming with it)."""
        now = utcnow()
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO claim_owners (owner_id, run_id, host, host_key, pid, pid_start, heartbeat_seconds, "
                "started_at, heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner_id) "
                "DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
                [owner.owner_id, owner.run_id, owner.host, owner.host_key, owner.pid, owner.pid_start,
                 owner.heartbeat_seconds, now, now, now + timedelta(seconds=owner.stale_after)],
            )

    def heartbeat(self, owner: ClaimOwner, *, lease: timedelta | None = None) -> bool:
        """Renew ``owner``'s claims (and the lease of each, for readers that only know leases). False when the owner
        had already expired: some of its claims may have been taken since."""
        now = utcnow()
        with self._tx(write=True) as tx:
            row = tx.fetchone("SELECT expires_at FROM claim_owners WHERE owner_id = ?", [owner.owner_id])
            live = row is not None and _read_dt(row[0]) > now
            tx.execute("UPDATE claim_owners SET heartbeat_at = ?, expires_at = ? WHERE owner_id = ?",
                       [now, now + timedelta(seconds=owner.stale_after), owner.owner_id])
            if lease is not None:
                tx.execute("UPDATE archive_queue SET lease_until = ? WHERE claim_owner = ? AND lease_until IS NOT NULL",
                           [now + lease, owner.owner_id])
        return live

    def end_owner(self, owner: ClaimOwner) -> int:
        """The owner is done: whatever it still holds is released (attempts kept). Returns how many claims."""
        with self._tx(write=True) as tx:
            released = tx.execute("UPDATE archive_queue SET claim_owner = NULL, lease_until = NULL, updated_at = ? "
                                  "WHERE claim_owner = ?", [utcnow(), owner.owner_id]).rowcount
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
            rows = tx.fetchall("SELECT owner_id, pid, pid_start FROM claim_owners WHERE host_key = ? AND expires_at > ?",
                               [local_key, now])
        dead = [owner_id for owner_id, pid, started in rows if not alive(int(pid), started)]
        if dead:
            with self._tx(write=True) as tx:
                for batch in _batches(dead):
                    marks = ", ".join(["?"] * len(batch))
                    tx.execute(f"UPDATE claim_owners SET expires_at = ? WHERE owner_id IN ({marks})", [now, *batch])
        return dead

    def owner_statuses(self) -> list[OwnerStatus]:
        """Every registered owner and every owner id still named by a claim, with its claims and whether it is alive."""
        now = utcnow()
        local = host_key()
        with self._tx() as tx:
            owners = tx.fetchall("SELECT owner_id, run_id, host, host_key, pid, pid_start, heartbeat_at, expires_at "
                                 "FROM claim_owners")
            claims = dict(tx.fetchall("SELECT claim_owner, COUNT(*) FROM archive_queue WHERE claim_owner IS NOT NULL "
                                      "AND state IN ('pending', 'resolved') GROUP BY claim_owner"))
        out = []
        for owner_id, run_id, host, key, pid, started, beat, expires in owners:
            beat_at = _read_dt(beat)
            if _read_dt(expires) <= now:
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
            total = int(tx.fetchone("SELECT COUNT(*) FROM archive_queue WHERE state IN ('pending', 'resolved')")[0])
            rows = tx.fetchall(
                "SELECT q.aweme_id, q.state, q.attempts, q.claim_owner, o.expires_at, q.last_error, q.lease_until, "
                "o.host_key, o.pid, o.pid_start "
                "FROM archive_queue q LEFT JOIN claim_owners o ON o.owner_id = q.claim_owner "
                "WHERE q.state IN ('pending', 'resolved') ORDER BY q.added_at, q.aweme_id LIMIT ?", [int(limit)])
        items = []
        local = host_key()
        for aweme_id, state, attempts, owner, expires, error, lease, key, pid, started in rows:
            if owner is not None:
                alive = expires is not None and _read_dt(expires) > now
                if alive and key == local:  # on this host a gone process is dead whatever its last heartbeat
                    alive = process_alive(int(pid), started)
            elif lease is not None and _read_dt(lease) > now:
                alive = True  # a lease of a release before owners
            else:
                alive = None
            items.append(LeftItem(aweme_id, state, int(attempts), owner, alive, error))
        return total, items

    def mark_resolved(self, aweme_id: str, author_handle: str | None = None) -> bool:
        """pending -> resolved (keeps the known handle when ``author_handle`` is None). False if not applicable."""
        now = utcnow()
        with self._tx(write=True) as tx:
            cur = tx.execute(
                "UPDATE archive_queue SET state = 'resolved', author_handle = COALESCE(?, author_handle), "
                # the claim (lease) holds until downloaded, so no second worker pays for the same id again
                "resolved_at = ?, updated_at = ? "
                "WHERE aweme_id = ? AND state IN ('pending', 'resolved')",
                [author_handle, now, now, aweme_id],
            )
            return cur.rowcount > 0

    def mark_downloaded(self, aweme_id: str) -> bool:
        """pending/resolved -> downloaded (idempotent). False if the id is unknown or dead."""
        now = utcnow()
        with self._tx(write=True) as tx:
            cur = tx.execute(
                "UPDATE archive_queue SET state = 'downloaded', downloaded_at = COALESCE(downloaded_at, ?), "
                "lease_until = NULL, claim_owner = NULL, updated_at = ? WHERE aweme_id = ? AND state <> 'dead'",
                [now, now, aweme_id],
            )
            return cur.rowcount > 0

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
                "WHERE aweme_id = ?", [utcnow(), aweme_id])
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

    # ------------------------------------------------------------------------------------------
    # dead_letter
    # ------------------------------------------------------------------------------------------
    def dead_letter(self, aweme_id: str) -> DeadLetter | None:
        with self._tx() as tx:
            row = tx.fetchone("SELECT aweme_id, reason, http_status, failed_at FROM dead_letter WHERE aweme_id = ?",
                              [aweme_id])
        if row is None:
            return None
        return DeadLetter(row[0], row[1], None if row[2] is None else int(row[2]), _read_dt(row[3]))

    def dead_letters_by_reason(self, since: datetime | None = None) -> dict[str, int]:
        """Dead-letter counts per reason (None reason counted as 'unknown'), optionally only those failed at/after ``since``."""
        sql = "SELECT reason, COUNT(*) FROM dead_letter"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE failed_at >= ?"
            params.append(_as_utc(since))
        sql += " GROUP BY reason"
        out: dict[str, int] = {}
        with self._tx() as tx:
            for reason, count in tx.fetchall(sql, params):
                key = reason if reason is not None else "unknown"
                out[key] = out.get(key, 0) + int(count)
        return out

    def age_out_dead_letters(self, older_than: timedelta) -> int:
        """Delete dead letters that failed more than ``older_than`` ago; returns how many.

        The queue rows stay 'dead', so the ids are still never re-queued.
        """
        cutoff = utcnow() - older_than
        with self._tx(write=True) as tx:
            return tx.execute("DELETE FROM dead_letter WHERE failed_at < ?", [cutoff]).rowcount

    # ------------------------------------------------------------------------------------------
    # archived_files
    # ------------------------------------------------------------------------------------------
    def record_file(self, aweme_id: str, kind: str, storage_key: str, sha256: str | None, size: int | None,
                    ingest_date: date | str | None) -> None:
        """Upsert the stored object for (aweme_id, kind): 'video', 'cover', 'sidecar', or a photo post's 'sound' and
        'image-<n>'."""
        if not is_file_kind(kind):
            raise ValueError(f"record_file: kind must be one of {FILE_KINDS} or 'image-<n>', not {kind!r}")
        day = None if ingest_date is None else _as_day(ingest_date)
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO archived_files (aweme_id, kind, storage_key, sha256, bytes, ingest_date, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (aweme_id, kind) DO UPDATE SET "
                "storage_key = excluded.storage_key, sha256 = excluded.sha256, bytes = excluded.bytes, "
                "ingest_date = excluded.ingest_date, recorded_at = excluded.recorded_at",
                [aweme_id, kind, storage_key, sha256, size, day, utcnow()],
            )

    def files_for(self, aweme_id: str) -> list[FileRecord]:
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT aweme_id, kind, storage_key, sha256, bytes, ingest_date, recorded_at "
                "FROM archived_files WHERE aweme_id = ? ORDER BY kind", [aweme_id])
        return [FileRecord(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4]), _read_date(r[5]),
                           _read_dt(r[6])) for r in rows]

    # ------------------------------------------------------------------------------------------
    # cursors
    # ------------------------------------------------------------------------------------------
    def get_cursor(self, scope: str) -> CursorRecord | None:
        with self._tx() as tx:
            row = tx.fetchone("SELECT scope, value, pages, updated_at FROM cursors WHERE scope = ?", [scope])
        return None if row is None else CursorRecord(row[0], row[1], row[2], _read_dt(row[3]))

    def set_cursor(self, scope: str, value: str | int | None, pages: int | None = None, *,
                   values: dict[str, str | None] | None = None) -> None:
        """Upsert the cursor for ``scope`` and append it to cursor_history; committed before returning.

        ``values`` are kv entries written in the same transaction (None deletes one): a walk's markers (complete,
        replies pending) can never disagree with its cursor after a crash."""
        text = None if value is None else str(value)
        now = utcnow()
        with self._tx(write=True) as tx:
            self._set_cursor(tx, scope, text, pages, now)
            self._set_values(tx, values or {}, now)

    @staticmethod
    def _set_cursor(tx: Tx, scope: str, text: str | None, pages: int | None, now: datetime) -> None:
        tx.execute(
            "INSERT INTO cursors (scope, value, pages, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET value = excluded.value, pages = excluded.pages, "
            "updated_at = excluded.updated_at",
            [scope, text, pages, now],
        )
        tx.execute("INSERT INTO cursor_history (scope, value, pages, recorded_at) VALUES (?, ?, ?, ?)",
                   [scope, text, pages, now])

    @staticmethod
    def _set_values(tx: Tx, values: dict[str, str | None], now: datetime) -> None:
        for key, value in values.items():
            if value is None:
                tx.execute("DELETE FROM kv WHERE key = ?", [key])
            else:
                tx.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                           "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at", [key, value, now])

    def record_listing_page(self, scope: str, rows: list[tuple[str, str, str | None]], *, next_cursor: str | None,
                            pages: int, max_videos: int, last_page: bool, stop_when_all_known: bool,
                            counter_key: str, complete_key: str) -> ListingPage:
        """One discovery page, in ONE transaction: queue its new ids (up to the walk's allowance for the day), advance
        the cursor, count them toward the day's total, and mark the walk complete when this page ends it.

        A crash before the commit leaves nothing (the rerun fetches the page again); after it, everything. The
        walk ends on its last page (``last_page``), at ``max_videos`` queued today, or, with
        ``stop_when_all_known``, on a page whose ids were all queued before (posts captured on an earlier day).
        """
        unique = list({str(r[0]).strip(): (str(r[0]).strip(), str(r[1]), r[2]) for r in rows}.values())
        if any(not r[0] for r in unique):
            raise ValueError("record_listing_page: empty aweme_id")
        now = utcnow()
        with self._tx(write=True) as tx:
            row = tx.fetchone("SELECT value FROM kv WHERE key = ?", [counter_key])
            enqueued = int(row[0]) if row and row[0] else 0
            known: set[str] = set()
            for batch in _batches([r[0] for r in unique]):
                marks = ", ".join(["?"] * len(batch))
                known.update(r[0] for r in tx.fetchall(
                    f"SELECT aweme_id FROM archive_queue WHERE aweme_id IN ({marks})", batch))
            fresh = [r for r in unique if r[0] not in known][:max(max_videos - enqueued, 0)]
            new = 0
            for batch in _batches(fresh):
                values = ", ".join(["(?, ?, ?, 'pending', 0, ?, ?)"] * len(batch))
                params: list[Any] = []
                for aweme_id, source, author_handle in batch:
                    params += [aweme_id, source, author_handle, now, now]
                new += len(tx.fetchall(
                    "INSERT INTO archive_queue (aweme_id, source, author_handle, state, attempts, added_at, updated_at) "
                    f"VALUES {values} ON CONFLICT (aweme_id) DO NOTHING RETURNING aweme_id", params))
            enqueued += new
            complete = last_page or enqueued >= max_videos or (stop_when_all_known and bool(unique) and new == 0)
            self._set_cursor(tx, scope, None if next_cursor is None else str(next_cursor), pages, now)
            self._set_values(tx, {counter_key: str(enqueued), complete_key: "1" if complete else None}, now)
        return ListingPage(new=new, enqueued_today=enqueued, complete=complete)

    def delete_cursor(self, scope: str) -> bool:
        """Forget the current cursor (its history is kept). True if there was one."""
        with self._tx(write=True) as tx:
            return tx.execute("DELETE FROM cursors WHERE scope = ?", [scope]).rowcount > 0

    def list_cursors(self, prefix: str = "") -> list[CursorRecord]:
        """Current cursors whose scope starts with ``prefix``, by scope."""
        sql = "SELECT scope, value, pages, updated_at FROM cursors"
        params: list[Any] = []
        if prefix:
            sql += " WHERE substr(scope, 1, CAST(? AS INTEGER)) = ?"
            params += [len(prefix), prefix]
        with self._tx() as tx:
            rows = tx.fetchall(sql + " ORDER BY scope", params)
        return [CursorRecord(r[0], r[1], r[2], _read_dt(r[3])) for r in rows]

    def cursor_history(self, scope: str, limit: int = 20) -> list[CursorRecord]:
        """The last ``limit`` values set for ``scope``, newest first (updated_at = when it was recorded)."""
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT scope, value, pages, recorded_at FROM cursor_history WHERE scope = ? "
                "ORDER BY id DESC LIMIT ?", [scope, int(limit)])
        return [CursorRecord(r[0], r[1], r[2], _read_dt(r[3])) for r in rows]

    def prune_cursor_history(self, keep: int = 200) -> int:
        """Janitor: keep only the newest ``keep`` history rows per scope; returns how many were deleted."""
        with self._tx(write=True) as tx:
            return tx.execute(
                "DELETE FROM cursor_history WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
                "(PARTITION BY scope ORDER BY id DESC) AS rn FROM cursor_history) ranked WHERE rn > ?)",
                [int(keep)],
            ).rowcount

    # ------------------------------------------------------------------------------------------
    # credits
    # ------------------------------------------------------------------------------------------
    def reserve_credit(self, day: date, endpoint: str, daily_budget: int | None, *, cost: int = 1) -> int:
        """Atomically spend ``cost`` credits of ``day``'s budget on ``endpoint``; returns the new day total.

        Raises CreditBudgetExhausted (and spends nothing) when the day total across all endpoints would
        exceed ``daily_budget``. ``daily_budget=None`` means unlimited (still counted). Correct across
        threads and processes: one transaction holding the day's lock (Postgres advisory lock,
        sqlite BEGIN IMMEDIATE).
        """
        day = _as_day(day)
        with self._tx(write=True) as tx:
            if self.dialect == "postgres":
                tx.execute("SELECT pg_advisory_xact_lock(CAST(? AS integer), CAST(? AS integer))",
                           [_LOCK_CREDITS, day.toordinal()])
            spent = int(tx.fetchone("SELECT COALESCE(SUM(requests), 0) FROM credits WHERE day = ?", [day])[0])
            if daily_budget is not None and spent + cost > daily_budget:
                raise CreditBudgetExhausted(day, spent, daily_budget)
            tx.execute(
                "INSERT INTO credits (day, endpoint, requests) VALUES (?, ?, ?) "
                "ON CONFLICT (day, endpoint) DO UPDATE SET requests = credits.requests + excluded.requests",
                [day, endpoint, cost],
            )
        return spent + cost

    def credits_spent(self, day: date) -> dict[str, int]:
        """Requests per endpoint on ``day``."""
        with self._tx() as tx:
            rows = tx.fetchall("SELECT endpoint, requests FROM credits WHERE day = ? ORDER BY endpoint",
                               [_as_day(day)])
        return {endpoint: int(n) for endpoint, n in rows}

    # ------------------------------------------------------------------------------------------
    # user_ids
    # ------------------------------------------------------------------------------------------
    def cached_user_id(self, handle: str, max_age: timedelta | None = None) -> str | None:
        """The cached user id for a handle (case-insensitive, '@' optional), or None if unknown / older than max_age."""
        sql = "SELECT user_id FROM user_ids WHERE handle = ?"
        params: list[Any] = [_norm_handle(handle)]
        if max_age is not None:
            sql += " AND resolved_at >= ?"
            params.append(utcnow() - max_age)
        with self._tx() as tx:
            row = tx.fetchone(sql, params)
        return None if row is None else row[0]

    def cache_user_id(self, handle: str, user_id: str | int) -> None:
        """Cache a handle's numeric user id; anything but 1-32 digits is refused (a cached non-answer would fail
        every later run)."""
        text = str(user_id)
        if isinstance(user_id, bool) or not (text.isdigit() and text.isascii() and len(text) <= 32):
            raise ValueError(f"refusing to cache {user_id!r} as the user id of @{handle}: a user id is 1-32 digits")
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO user_ids (handle, user_id, resolved_at) VALUES (?, ?, ?) ON CONFLICT (handle) "
                "DO UPDATE SET user_id = excluded.user_id, resolved_at = excluded.resolved_at",
                [_norm_handle(handle), str(user_id), utcnow()],
            )

    def forget_user_id(self, handle: str) -> str | None:
        """Drop a handle's cached user id (the next run asks /userid/ again); returns the id it held, if any."""
        with self._tx(write=True) as tx:
            row = tx.fetchone("SELECT user_id FROM user_ids WHERE handle = ?", [_norm_handle(handle)])
            tx.execute("DELETE FROM user_ids WHERE handle = ?", [_norm_handle(handle)])
        return None if row is None else row[0]

    # ------------------------------------------------------------------------------------------
    # kv
    # ------------------------------------------------------------------------------------------
    def get_value(self, key: str, default: str | None = None) -> str | None:
        with self._tx() as tx:
            row = tx.fetchone("SELECT value FROM kv WHERE key = ?", [key])
        return default if row is None else row[0]

    def set_value(self, key: str, value: str | None) -> None:
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [key, value, utcnow()],
            )

    def delete_value(self, key: str) -> bool:
        with self._tx(write=True) as tx:
            return tx.execute("DELETE FROM kv WHERE key = ?", [key]).rowcount > 0

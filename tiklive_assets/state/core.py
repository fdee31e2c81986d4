"""The base every area of the state database builds on: backend, migrations, transactions, value conversions.

Each area (queue, claim owners, dead letters, files, cursors, credits, user ids, kv) is a class deriving from
``StateCore``; ``StateDB`` combines them, so every area shares one backend and one migration.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from .backends import Backend, Tx
from .schema import ADDED_COLUMNS, add_columns_sql, ddl_for, widen_file_kinds_sql

_BATCH = 500
# Advisory-lock namespaces (Postgres): (namespace, key) pairs for pg_advisory_xact_lock(int, int).
_LOCK_MIGRATE = (0x71C1, 0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def read_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def read_dt_required(value: Any) -> datetime:
    """:func:`read_dt` of a NOT NULL column."""
    result = read_dt(value)
    if result is None:
        raise ValueError("NULL in a NOT NULL timestamp column")
    return result


def read_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def as_day(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return as_utc(value).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def batches(seq: list, size: int = _BATCH) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class StateCore:
    """The backend and migrations shared by every area; nothing connects until first use."""

    def __init__(self, backend: Backend, url: str) -> None:
        self._backend = backend
        self.url = url
        self._migrated = False
        self._migrate_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgres'."""
        return self._backend.dialect

    def describe(self) -> str:
        """Where the database is, for messages: a sqlite file's path, or a Postgres URL without its password."""
        return self._backend.describe()

    def close(self) -> None:
        """Close every connection this object opened (it reconnects if used again)."""
        self._backend.close()

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
                rows = tx.fetchall(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                    "AND table_schema = current_schema()",
                    [table],
                )
                out[table] = {r[0] for r in rows}
            else:
                out[table] = {r[1] for r in tx.fetchall(f"PRAGMA table_info({table})")}
        return out

    def _file_kind_definition(self, tx: Tx) -> str:
        """The archived_files kind CHECK as the database holds it (to tell whether it predates photo posts)."""
        if self.dialect == "postgres":
            row = tx.fetchone(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_class t ON t.oid = c.conrelid "
                "WHERE t.relname = 'archived_files' AND c.contype = 'c' AND t.relnamespace = "
                "to_regnamespace(current_schema())::oid"
            )
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

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in a write transaction of its own; returns how many rows it changed."""
        with self._tx(write=True) as tx:
            return int(tx.execute(sql, params).rowcount)

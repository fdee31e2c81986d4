"""Connection handling for the two state backends (sqlite3 and psycopg 3), behind one transaction API."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .errors import StateUnavailable

BUSY_TIMEOUT_MS = 30_000


def _sqlite_param(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


class Tx:
    """One open transaction: run SQL written with ``?`` placeholders on either backend."""

    def __init__(self, backend: Backend, conn: Any) -> None:
        self._backend = backend
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._backend.execute(self._conn, sql, params)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def fetchrow(self, sql: str, params: Sequence[Any] = ()) -> tuple:
        """The one row of a query that always returns one (an aggregate without GROUP BY)."""
        row = self.execute(sql, params).fetchone()
        if row is None:
            raise RuntimeError(f"no row from a query that always returns one: {sql}")
        return row


class Backend:
    """Per-thread connections (re-opened after fork); subclasses know how to connect and begin."""

    dialect: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[int, tuple[threading.Thread, Any]] = {}
        self._pid = os.getpid()

    # -- subclass hooks -------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _is_usable(self, conn: Any) -> bool:
        return True

    def _close_conn(self, conn: Any) -> None:
        with suppress(Exception):
            conn.close()

    @contextmanager
    def _begin(self, conn: Any, write: bool) -> Iterator[None]:
        raise NotImplementedError
        yield

    def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def _conn(self) -> Any:
        me = threading.current_thread()
        ident = threading.get_ident()
        with self._lock:
            if os.getpid() != self._pid:  # forked: never reuse the parent's connections
                self._conns = {}
                self._pid = os.getpid()
            entry = self._conns.get(ident)
            if entry is not None and entry[0] is me and self._is_usable(entry[1]):
                return entry[1]
            stale = [entry[1]] if entry is not None else []
            for key, (thread, conn) in list(self._conns.items()):
                if not thread.is_alive():
                    stale.append(conn)
                    del self._conns[key]
        for conn in stale:
            self._close_conn(conn)
        conn = self._connect()
        with self._lock:
            self._conns[ident] = (me, conn)
        return conn

    def _unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database cannot be reached (rather than that a statement is wrong)."""
        return False

    def describe(self) -> str:
        return self.dialect

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        try:
            conn = self._conn()
        except Exception as exc:
            if self._unavailable(exc):
                raise StateUnavailable(self.describe(), exc) from exc
            raise
        try:
            with self._begin(conn, write):
                yield Tx(self, conn)
        except StateUnavailable:
            raise
        except Exception as exc:
            if self._unavailable(exc):
                raise StateUnavailable(self.describe(), exc) from exc
            raise

    def close(self) -> None:
        with self._lock:
            conns = [conn for _, conn in self._conns.values()] if os.getpid() == self._pid else []
            self._conns = {}
        for conn in conns:
            self._close_conn(conn)


class SqliteBackend(Backend):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit BEGIN [IMMEDIATE] ... COMMIT.
        conn = sqlite3.connect(
            str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextmanager
    def _begin(self, conn: sqlite3.Connection, write: bool) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a
        # read-then-write transaction can never fail half-way with SQLITE_BUSY.
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def execute(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        return conn.execute(sql, [_sqlite_param(p) for p in params])

    _OUTAGE_WORDS = ("locked", "unable to open", "disk i/o", "readonly", "database or disk is full")

    def _unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in self._OUTAGE_WORDS)

    def describe(self) -> str:
        return str(self.path)


class PostgresBackend(Backend):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._sql_cache: dict[str, str] = {}

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def _is_usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def _unavailable(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError)

    def describe(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"

    @contextmanager
    def _begin(self, conn: Any, write: bool) -> Iterator[None]:
        with conn.transaction():
            yield

    def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        pg_sql = self._sql_cache.get(sql)
        if pg_sql is None:
            # Our SQL never contains literal '?' or '%', so this translation is exact.
            pg_sql = sql.replace("?", "%s")
            self._sql_cache[sql] = pg_sql
        params = [p.replace(tzinfo=UTC) if isinstance(p, datetime) and p.tzinfo is None else p for p in params]
        return conn.execute(pg_sql, params)


def _shown(url: str) -> str:
    """A state URL fit for a message: its password, if any, replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password:
            host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return "<unparsable URL>"
    return url


def backend_from_url(url: str) -> Backend:
    """``sqlite:///abs/path/state.sqlite`` or ``postgresql://...`` (``postgres://``, ``postgresql+psycopg://`` too)."""
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        rest = rest.split("?", 1)[0]
        if rest.startswith("//"):
            rest = rest[2:]  # the (empty) authority
        path = unquote(rest)
        if not path or path in (":memory:", "/:memory:"):
            raise ValueError(
                f"state database URL {_shown(url)!r}: an in-memory sqlite database cannot be shared between threads "
                "and processes; use sqlite:///abs/path/state.sqlite"
            )
        if path.startswith("/"):
            path = "/" + path.lstrip("/")
        return SqliteBackend(Path(path))
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg3://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
            break
    if url.startswith("postgresql://"):
        return PostgresBackend(url)
    raise ValueError(
        f"unsupported state database URL {_shown(url)!r} (TIKLIVE_STATE_URL): expected "
        "sqlite:///abs/path/state.sqlite or postgresql://..."
    )

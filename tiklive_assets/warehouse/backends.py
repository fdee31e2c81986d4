"""Warehouse backends with one schema: a DuckDB file (default) or Postgres, loaded a whole day at a time.

``open_warehouse(url)`` picks the backend from a URL: ``postgresql://…`` is Postgres (psycopg 3), anything
else is a DuckDB file path (``duckdb:///abs/path`` or a plain path). ``TIKLIVE_WAREHOUSE_URL`` chooses it for
the pipeline; unset, it is ``TIKLIVE_HOME/warehouse.duckdb``. Nothing connects until ``open()`` (or ``with``).

``load_day(parsed_day)`` replaces one day in one transaction: ``window`` tables delete ``dt = day`` and insert,
``upsert`` tables ``INSERT … ON CONFLICT DO UPDATE`` (see :mod:`.schema`). Bulk paths only: DuckDB inserts
straight from the Arrow table (an upsert table merges with its existing rows in SQL, or, while it is empty, takes
the Arrow rows as they are); Postgres streams it with ``COPY`` into a staging table. Loading the same day twice
leaves every table as it was.

``replace_tables(tables, data)`` rebuilds whole tables in one transaction (the Research API's, which are derived
from the whole ``research-raw/`` archive at once); a table left by an older layout is dropped and created anew.
``open_warehouse(url, read_only=True)`` only reads: it creates nothing (DuckDB opens the file read-only).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

import pyarrow as pa

from tiklive_assets import settings
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.settings import WAREHOUSE_URL

from . import schema

if TYPE_CHECKING:
    import duckdb
    import psycopg

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_TEXT_TYPES = ("varchar", "text", "character varying")


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened or loaded; the message says what to do."""


class Warehouse(Protocol):
    url: str

    def open(self) -> Warehouse: ...
    def close(self) -> None: ...
    def ensure_schema(self) -> None: ...
    def load_day(self, day: date, tables: dict[str, pa.Table]) -> dict[str, int]: ...
    def replace_tables(self, tables: Sequence[schema.Table], data: Mapping[str, pa.Table]) -> dict[str, int]: ...
    def row_count(self, table: str) -> int: ...
    def fingerprint(self, table: str) -> str: ...
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


def describe_url(url: str) -> str:
    """The URL without a password, for logs and snapshot manifests: ``scheme://user:***@host:port/path``.

    The query and fragment are dropped (libpq reads ``?password=`` there too), and the host is what follows the
    last ``@`` (a password may hold one). A libpq ``key=value`` string shows as ``<postgres dsn>``: it may hold a
    password anywhere. A DuckDB path is shown as it is."""
    import re
    from urllib.parse import urlsplit

    if "://" not in url:
        keyword = r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|service|options)\s*="
        return "<postgres dsn>" if re.search(keyword, url, re.IGNORECASE) else url
    parts = urlsplit(url)
    creds, at, host = parts.netloc.rpartition("@")
    user = creds.partition(":")[0] if at else ""
    shown = f"{user}:***@" if at and ":" in creds else f"{user}@" if user else ""
    return f"{parts.scheme}://{shown}{host}{parts.path}"


def default_url(home: Path | None = None) -> str:
    """``TIKLIVE_WAREHOUSE_URL``, else the DuckDB file ``<home or TIKLIVE_HOME>/warehouse.duckdb``."""
    return settings.warehouse_url(home)


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def open_warehouse(url: str, read_only: bool = False) -> Warehouse:
    """The backend ``url`` names (not connected yet). ``read_only``: it only reads, and creates nothing."""
    if is_postgres(url):
        return PostgresWarehouse(url.replace("postgresql+psycopg://", "postgresql://"), read_only=read_only)
    if url.startswith("duckdb://"):
        url = url.removeprefix("duckdb://")
    if "://" in url:
        raise WarehouseError(
            f"unknown warehouse URL {describe_url(url)!r}: set {WAREHOUSE_URL} to postgresql://user@host/db or to a "
            "DuckDB file path (duckdb:///abs/path.duckdb)"
        )
    return DuckDBWarehouse(url, read_only=read_only)


def _digest(rows: Iterable[tuple]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _missing_columns(existing: Iterable[str], table: schema.Table) -> list[str]:
    """``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` for the declared columns a warehouse made by an older release
    lacks, so an old file or database keeps working (new columns are nullable: old rows have no value for them)."""
    have = set(existing)
    return [
        f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {c.name} {c.sql}"
        for c in table.columns
        if c.name not in have
    ]


def _stale(table: schema.Table, found: list[tuple[str, str]]) -> bool:
    """Whether a stored table's columns (names in order, or TEXT-ness) differ from its declaration: an older layout
    (ids were BIGINT once). Only tables rebuilt whole are checked: dropping one loses nothing."""
    want = [(c.name, c.sql == "TEXT") for c in table.columns]
    have = [(name, kind.lower() in _TEXT_TYPES) for name, kind in found]
    return want != have


class _Base:
    """What both backends share: schema creation, the day load, whole-table replacement, counts and fingerprints.

    A backend supplies its connection's primitives: a transaction, a statement, the stored columns, an Arrow insert
    and an upsert."""

    url: str
    indices: bool  # whether secondary indices and every primary key are created (see Table.create_sql)
    read_only: bool
    COLUMNS_SQL: str  # (table, column, data type) of the stored tables, in column order
    _handle: Any = None  # the open connection

    def _connect(self) -> Any:
        raise NotImplementedError

    def open(self) -> Self:
        """Connect (and, unless read-only, create what the schema lacks); a no-op when already open."""
        if self._handle is None:
            self._handle = self._connect()
            if not self.read_only:
                self.ensure_schema()
        return self

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _connection(self) -> Any:
        if self._handle is None:
            raise WarehouseError("the warehouse is not open: use `with open_warehouse(url) as wh:`")
        return self._handle

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def _fetch(self, sql: str) -> list[tuple]:
        """The rows of ``sql``, inside the current transaction (``query`` ends it)."""
        raise NotImplementedError

    def _columns(self) -> dict[str, list[tuple[str, str]]]:
        """The stored tables' columns in order, as (name, data type), by table name."""
        columns: dict[str, list[tuple[str, str]]] = {}
        for name, column, kind in self._fetch(self.COLUMNS_SQL):
            columns.setdefault(name, []).append((column, kind))
        return columns

    def _insert(self, spec: schema.Table, data: pa.Table) -> None:
        raise NotImplementedError

    def _load_upsert(self, spec: schema.Table, data: pa.Table) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_schema(self) -> None:
        with self._transaction():
            self._create(schema.TABLES)

    def _create(self, tables: Sequence[schema.Table]) -> None:
        for table in tables:
            for statement in table.create_sql(indices=self.indices):
                self._execute(statement)
        columns = self._columns()
        for table in tables:
            for statement in _missing_columns((c for c, _ in columns.get(table.name, [])), table):
                self._execute(statement)

    def load_day(self, day: date, tables: dict[str, pa.Table]) -> dict[str, int]:
        with self._transaction():
            for spec in schema.TABLES:
                data = tables[spec.name]
                if spec.mode == "window":
                    self._execute(f"DELETE FROM {spec.name} WHERE dt = ?", [day])
                    if data.num_rows:
                        self._insert(spec, data)
                elif data.num_rows:
                    self._load_upsert(spec, data)
                crashpoint("warehouse.load.mid_day")  # some tables replaced, the transaction open
        return {name: t.num_rows for name, t in tables.items()}

    def replace_tables(self, tables: Sequence[schema.Table], data: Mapping[str, pa.Table]) -> dict[str, int]:
        """Every row of each of ``tables`` becomes ``data[name]``, in one transaction (readers see the old rows or
        the new ones). A table stored with an older layout is dropped and created anew."""
        with self._transaction():
            stored = self._columns()
            for table in tables:
                if table.name in stored and _stale(table, stored[table.name]):
                    self._execute(f"DROP TABLE {table.name}")
            self._create(tables)
            for table in tables:
                self._execute(f"DELETE FROM {table.name}")
                if data[table.name].num_rows:
                    self._insert(table, data[table.name])
        return {table.name: data[table.name].num_rows for table in tables}

    def row_count(self, table: str) -> int:
        schema.BY_NAME[table]
        return int(self.query(f"SELECT count(*) FROM {table}")[0][0])

    def fingerprint(self, table: str) -> str:
        """sha256 over every row in key order: equal fingerprints mean equal tables (within one backend)."""
        spec = schema.BY_NAME[table]
        cols = ", ".join(spec.column_names)
        return _digest(self.query(f"SELECT {cols} FROM {table} ORDER BY {', '.join(spec.key)}"))

    def fingerprints(self) -> dict[str, tuple[int, str]]:
        return {t: (self.row_count(t), self.fingerprint(t)) for t in schema.TABLE_NAMES}


class DuckDBWarehouse(_Base):
    """One DuckDB file; only one process may write it at a time (the ``duckdb_writer`` pool in Dagster)."""

    indices = False
    COLUMNS_SQL = (
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE schema_name = current_schema() "
        "AND database_name = current_database() ORDER BY table_name, column_index"
    )

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        self.path = Path(path).absolute()
        self.url = str(self.path)
        self.read_only = read_only

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.IOException as exc:
            if self.read_only:
                raise WarehouseError(f"cannot open {self.path} for reading: {exc}") from exc
            raise WarehouseError(
                f"cannot open {self.path} for writing ({exc}); another process holds it. Only one writer per "
                "DuckDB file: analysts should open marts.duckdb or the Parquet exports, never the live warehouse"
            ) from exc

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self._connection()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(sql, list(params))

    def _fetch(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    @contextmanager
    def _staged(self, spec: schema.Table, data: pa.Table) -> Iterator[str]:
        view = f"staged_{spec.name}"
        self.con.register(view, data)
        try:
            yield view
        finally:
            self.con.unregister(view)

    def _insert(self, spec: schema.Table, data: pa.Table) -> None:
        cols = ", ".join(spec.column_names)
        with self._staged(spec, data) as view:
            self.con.execute(f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM {view}")

    def _load_upsert(self, spec: schema.Table, data: pa.Table) -> None:
        with self._staged(spec, data) as view:
            self._upsert(spec, view)

    def _upsert(self, spec: schema.Table, view: str) -> None:
        """UPDATE the staged keys the table holds, INSERT the others; no key is deleted and re-inserted, which
        DuckDB's primary-key index makes slow at COMMIT (seconds for 50,000 rows).

        Into an empty table (the first day loaded into a new warehouse, a replay from scratch) every merged row is
        the staged row itself, so the rows are inserted straight from the Arrow view: the merge's two joins would
        return the same rows in the same order (the view's key order), at twice the cost."""
        con = self.con
        if con.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {spec.name})").fetchone() == (True,):
            cols = ", ".join(spec.column_names)
            con.execute(f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM {view}")
        else:
            self._merge(spec, view)

    def _merge(self, spec: schema.Table, view: str) -> None:
        """The upsert through :meth:`schema.Table.merge_select_sql`: every staged key LEFT JOIN the table."""
        con = self.con
        cols = ", ".join(spec.column_names)
        merged = f"merged_{spec.name}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {merged} AS {spec.merge_select_sql(view)}")
        match = " AND ".join(f"{spec.name}.{k} = m.{k}" for k in spec.key)
        settable = [c for c in spec.column_names if c not in spec.key]
        con.execute(
            f"UPDATE {spec.name} SET {', '.join(f'{c} = m.{c}' for c in settable)} FROM {merged} m WHERE {match}"
        )
        con.execute(
            f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM {merged} "
            f"ANTI JOIN {spec.name} USING ({', '.join(spec.key)})"
        )
        con.execute(f"DROP TABLE {merged}")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()


class PostgresWarehouse(_Base):
    """Postgres through psycopg 3; a day is ``COPY``-ed into temporary staging tables, then merged in SQL."""

    indices = True
    COLUMNS_SQL = (
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only

    def _connect(self) -> psycopg.Connection:
        import psycopg

        try:
            return psycopg.connect(self.url)
        except psycopg.OperationalError as exc:
            raise WarehouseError(f"cannot connect to {describe_url(self.url)}: {exc}; check {WAREHOUSE_URL}") from exc

    @property
    def conn(self) -> psycopg.Connection:
        return self._connection()

    def _transaction(self) -> AbstractContextManager[Any]:
        return self.conn.transaction()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql.replace("?", "%s"), list(params))

    def _fetch(self, sql: str) -> list[tuple]:
        return self.conn.execute(sql).fetchall()

    def _insert(self, spec: schema.Table, data: pa.Table) -> None:
        copy_rows(self.conn, spec.name, ", ".join(spec.column_names), data)

    def _load_upsert(self, spec: schema.Table, data: pa.Table) -> None:
        stage = f"stage_{spec.name}"
        self.conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {spec.name} INCLUDING DEFAULTS) ON COMMIT DROP")
        copy_rows(self.conn, stage, ", ".join(spec.column_names), data)
        self.conn.execute(spec.upsert_sql(stage))

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), list(params))
            rows = cur.fetchall() if cur.description is not None else []
        self.conn.commit()
        return rows


def copy_rows(conn: psycopg.Connection, table: str, cols: str, data: pa.Table, batch_rows: int = 10_000) -> None:
    """``COPY table (cols) FROM STDIN`` fed from Arrow record batches (bounded memory, one round trip per stream)."""
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for record_batch in data.to_batches(max_chunksize=batch_rows):
            columns = [column.to_pylist() for column in record_batch.columns]
            for row in zip(*columns, strict=True):
                copy.write_row(row)

"""Warehouse backends with one schema: a DuckDB file (default) or Postgres, loaded a whole day at a time.

``open_warehouse(url)`` picks the backend from a URL: ``postgresql://…`` is Postgres (psycopg 3), anything
else is a DuckDB file path (``duckdb:///abs/path`` or a plain path). ``TIKLIVE_WAREHOUSE_URL`` chooses it for
the pipeline; unset, it is ``TIKLIVE_HOME/warehouse.duckdb``. Nothing connects until ``open()`` (or ``with``).

``load_day(parsed_day)`` replaces one day in one transaction: ``window`` tables delete ``dt = day`` and insert,
``upsert`` tables ``INSERT … ON CONFLICT DO UPDATE`` (see :mod:`.schema`). Bulk paths only: DuckDB inserts
straight from the Arrow table (an upsert table merges with its existing rows in SQL, or, while it is empty, takes
the Arrow rows as they are); Postgres streams it with ``COPY`` into a staging table. Loading the same day twice
leaves every table as it was.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any, Protocol, Self

import pyarrow as pa

from tiklive_assets.crashpoints import crashpoint

from . import schema

WAREHOUSE_URL = "TIKLIVE_WAREHOUSE_URL"  # postgresql://… or a DuckDB path; default TIKLIVE_HOME/warehouse.duckdb


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened or loaded; the message says what to do."""


class Warehouse(Protocol):
    url: str

    def open(self) -> Warehouse: ...
    def close(self) -> None: ...
    def ensure_schema(self) -> None: ...
    def load_day(self, day: date, tables: dict[str, pa.Table]) -> dict[str, int]: ...
    def row_count(self, table: str) -> int: ...
    def fingerprint(self, table: str) -> str: ...
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


def describe_url(url: str) -> str:
    """The URL without a password, for logs and metadata."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.split("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def default_url(home: Path | None = None) -> str:
    """``TIKLIVE_WAREHOUSE_URL``, else the DuckDB file ``<home or TIKLIVE_HOME>/warehouse.duckdb``."""
    from tiklive_assets import settings

    if os.environ.get(WAREHOUSE_URL):
        return os.environ[WAREHOUSE_URL]
    root = settings.DataRoot(home) if home else settings.DataRoot.from_env()
    return str(root.warehouse)


def open_warehouse(url: str) -> Warehouse:
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresWarehouse(url)
    if url.startswith("duckdb://"):
        url = url.removeprefix("duckdb://")
    if "://" in url:
        raise WarehouseError(
            f"unknown warehouse URL {describe_url(url)!r}: set {WAREHOUSE_URL} to postgresql://user@host/db or to a "
            "DuckDB file path (duckdb:///abs/path.duckdb)"
        )
    return DuckDBWarehouse(url)


def _digest(rows: Iterable[tuple]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


class _Base:
    url: str

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

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


def _missing_columns(existing: set[str], table: schema.Table) -> list[str]:
    """``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` for the declared columns a warehouse made by an older release
    lacks, so an old file or database keeps working (new columns are nullable: old rows have no value for them)."""
    return [
        f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {c.name} {c.sql}"
        for c in table.columns
        if c.name not in existing
    ]


class DuckDBWarehouse(_Base):
    """One DuckDB file; only one process may write it at a time (the ``duckdb_writer`` pool in Dagster)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.url = str(self.path)
        self._con = None

    def open(self) -> DuckDBWarehouse:
        import duckdb

        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._con = duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                raise WarehouseError(
                    f"cannot open {self.path} for writing ({exc}); another process holds it. Only one writer per "
                    "DuckDB file: analysts should open marts.duckdb or the Parquet exports, never the live warehouse"
                ) from exc
            self.ensure_schema()
        return self

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self):
        if self._con is None:
            raise WarehouseError("the warehouse is not open: use `with open_warehouse(url) as wh:`")
        return self._con

    def ensure_schema(self) -> None:
        for table in schema.TABLES:
            for statement in table.create_sql(indices=False):
                self.con.execute(statement)
        columns: dict[str, set[str]] = {}
        for name, column in self.con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = current_schema() "
            "AND database_name = current_database()"
        ).fetchall():
            columns.setdefault(name, set()).add(column)
        for table in schema.TABLES:
            for statement in _missing_columns(columns.get(table.name, set()), table):
                self.con.execute(statement)

    def load_day(self, day: date, tables: dict[str, pa.Table]) -> dict[str, int]:
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            for spec in schema.TABLES:
                data = tables[spec.name]
                view = f"staged_{spec.name}"
                con.register(view, data)
                try:
                    cols = ", ".join(spec.column_names)
                    if spec.mode == "window":
                        con.execute(f"DELETE FROM {spec.name} WHERE dt = ?", [day])
                        if data.num_rows:
                            con.execute(f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM {view}")
                    elif data.num_rows:
                        self._upsert(spec, view)
                finally:
                    con.unregister(view)
                crashpoint("warehouse.load.mid_day")  # some tables replaced, the transaction open
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return {name: t.num_rows for name, t in tables.items()}

    def _upsert(self, spec: schema.Table, view: str) -> None:
        """UPDATE the staged keys the table holds, INSERT the others; no key is deleted and re-inserted, which
        DuckDB's primary-key index makes slow at COMMIT (seconds for 50,000 rows).

        Into an empty table (the first day loaded into a new warehouse, a replay from scratch) every merged row is
        the staged row itself, so the rows are inserted straight from the Arrow view: the merge's two joins would
        return the same rows in the same order (the view's key order), at twice the cost."""
        con = self.con
        if con.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {spec.name})").fetchone()[0]:
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

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = None

    def open(self) -> PostgresWarehouse:
        import psycopg

        if self._conn is None:
            try:
                self._conn = psycopg.connect(self.url)
            except psycopg.OperationalError as exc:
                raise WarehouseError(
                    f"cannot connect to {describe_url(self.url)}: {exc}; check {WAREHOUSE_URL}"
                ) from exc
            self.ensure_schema()
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self):
        if self._conn is None:
            raise WarehouseError("the warehouse is not open: use `with open_warehouse(url) as wh:`")
        return self._conn

    def ensure_schema(self) -> None:
        with self.conn.transaction():
            for table in schema.TABLES:
                for statement in table.create_sql():
                    self.conn.execute(statement)
            columns: dict[str, set[str]] = {}
            for name, column in self.conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            ).fetchall():
                columns.setdefault(name, set()).add(column)
            for table in schema.TABLES:
                for statement in _missing_columns(columns.get(table.name, set()), table):
                    self.conn.execute(statement)

    def load_day(self, day: date, tables: dict[str, pa.Table]) -> dict[str, int]:
        conn = self.conn
        with conn.transaction(), conn.cursor() as cur:
            for spec in schema.TABLES:
                data = tables[spec.name]
                cols = ", ".join(spec.column_names)
                if spec.mode == "window":
                    cur.execute(f"DELETE FROM {spec.name} WHERE dt = %s", [day])
                    if data.num_rows:
                        _copy(cur, spec.name, cols, data)
                elif data.num_rows:
                    stage = f"stage_{spec.name}"
                    cur.execute(f"CREATE TEMP TABLE {stage} (LIKE {spec.name} INCLUDING DEFAULTS) ON COMMIT DROP")
                    _copy(cur, stage, cols, data)
                    cur.execute(spec.upsert_sql(stage))
                crashpoint("warehouse.load.mid_day")  # some tables replaced, the transaction open
        return {name: t.num_rows for name, t in tables.items()}

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), list(params))
            rows = cur.fetchall() if cur.description is not None else []
        self.conn.commit()
        return rows


def _copy(cur, table: str, cols: str, data: pa.Table, batch_rows: int = 10_000) -> None:
    """``COPY table (cols) FROM STDIN`` fed from Arrow record batches (bounded memory, one round trip per stream)."""
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for record_batch in data.to_batches(max_chunksize=batch_rows):
            columns = [column.to_pylist() for column in record_batch.columns]
            for row in zip(*columns, strict=True):
                copy.write_row(row)

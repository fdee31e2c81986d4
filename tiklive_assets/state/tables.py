"""Every table of the state database as rows: list them, read them all in one consistent transaction, write them back.

What snapshots and restores build on, on both backends. A row travels as a JSON object (column -> value): text and
numbers as they are, timestamps and days as ISO 8601 text (UTC, microseconds), the form SQLite stores them in and
Postgres reads them from, so a snapshot of one backend restores into the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .backends import Tx
from .core import StateCore, as_utc
from .schema import ddl_for

_FETCH = 2_000
_INSERT_PARAMS = 10_000  # bound parameters per INSERT statement (both backends accept far more)
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
_CREATE_RE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")

# Tables other areas of the project create on the same database when first used (the Research API's quota ledger
# and window progress): copied when they exist.
EXTRA_TABLES: tuple[str, ...] = ("research_quota", "research_windows")


def core_tables() -> list[str]:
    """The tables every state database has once migrated, in creation order."""
    return [m[1] for stmt in ddl_for("sqlite") if (m := _CREATE_RE.match(stmt))]


def state_tables(extra: Sequence[str] = ()) -> list[str]:
    """Every table a state database may hold: the core ones, then :data:`EXTRA_TABLES` and ``extra``."""
    return list(dict.fromkeys([*core_tables(), *EXTRA_TABLES, *extra]))


def _checked(table: str) -> str:
    if not _NAME_RE.fullmatch(table):
        raise ValueError(f"{table!r} is not a state table name")
    return table


def to_json_value(value: Any) -> Any:
    """A column value as a snapshot stores it (timestamps and days as ISO text)."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    identity: bool = False  # Postgres GENERATED ALWAYS AS IDENTITY: inserted with OVERRIDING SYSTEM VALUE


class TableAccess:
    """Table-level access inside one open transaction of ``state`` (its dialect decides the SQL)."""

    def __init__(self, state: StateCore, tx: Tx) -> None:
        self.dialect = state.dialect
        self.tx = tx

    def existing(self, tables: Sequence[str]) -> list[str]:
        """Those of ``tables`` the database holds, in the order given."""
        if self.dialect == "postgres":
            rows = self.tx.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_type = 'BASE TABLE'"
            )
        else:
            rows = self.tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        present = {r[0] for r in rows}
        return [t for t in tables if t in present]

    def columns(self, table: str) -> list[Column]:
        table = _checked(table)
        if self.dialect == "postgres":
            rows = self.tx.fetchall(
                "SELECT column_name, data_type, is_identity FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                [table],
            )
            return [Column(r[0], str(r[1]).upper(), r[2] == "YES") for r in rows]
        return [Column(r[1], str(r[2]).upper()) for r in self.tx.fetchall(f"PRAGMA table_info({table})")]

    def count(self, table: str) -> int:
        return int(self.tx.fetchrow(f"SELECT COUNT(*) FROM {_checked(table)}")[0])

    def rows(self, table: str, columns: Sequence[Column]) -> Iterator[dict[str, Any]]:
        """Every row of ``table`` as {column: value}, fetched in batches (memory stays bounded)."""
        names = [c.name for c in columns]
        select = f"SELECT {', '.join(names)} FROM {_checked(table)}"
        if self.dialect == "postgres":  # a server-side cursor: the client never holds the whole table
            self.tx.execute(f"DECLARE state_rows NO SCROLL CURSOR FOR {select}")
            try:
                while batch := self.tx.fetchall(f"FETCH FORWARD {_FETCH} FROM state_rows"):
                    for row in batch:
                        yield {n: to_json_value(v) for n, v in zip(names, row, strict=True)}
            finally:
                self.tx.execute("CLOSE state_rows")
            return
        cursor = self.tx.execute(select)
        while batch := cursor.fetchmany(_FETCH):
            for row in batch:
                yield {n: to_json_value(v) for n, v in zip(names, row, strict=True)}

    def clear(self, table: str) -> int:
        return int(self.tx.execute(f"DELETE FROM {_checked(table)}").rowcount)

    def insert(self, table: str, columns: Sequence[Column], rows: Iterator[dict[str, Any]]) -> int:
        """Insert ``rows`` (each a {column: value} holding only ``columns``); returns how many."""
        table, names = _checked(table), [c.name for c in columns]
        overriding = " OVERRIDING SYSTEM VALUE" if any(c.identity for c in columns) else ""
        per_statement = max(1, _INSERT_PARAMS // max(1, len(names)))
        marks = "(" + ", ".join(["?"] * len(names)) + ")"
        done = 0
        batch: list[Any] = []

        def flush(count: int) -> None:
            values = ", ".join([marks] * count)
            self.tx.execute(f"INSERT INTO {table} ({', '.join(names)}){overriding} VALUES {values}", batch)
            batch.clear()

        for row in rows:
            batch.extend(row.get(n) for n in names)
            done += 1
            if done % per_statement == 0:
                flush(per_statement)
        if done % per_statement:
            flush(done % per_statement)
        for column in columns:
            if column.identity:  # the next generated id follows the restored ones
                self.tx.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column.name}'), "
                    f"COALESCE((SELECT MAX({column.name}) FROM {table}), 0) + 1, false)"
                )
        return done


def read_consistently(state: StateCore, work: Callable[[TableAccess], Any]) -> Any:
    """Run ``work`` in one read transaction that sees a single moment of the database, whatever writes meanwhile.

    SQLite: one deferred transaction (WAL readers keep the snapshot their first read took). Postgres: REPEATABLE
    READ, READ ONLY, so every statement reads the snapshot of the first.
    """
    with state._tx() as tx:
        if state.dialect == "postgres":
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return work(TableAccess(state, tx))


def write_at_once(state: StateCore, work: Callable[[TableAccess], Any]) -> Any:
    """Run ``work`` in one write transaction: every change it makes lands together, or none does."""
    with state._tx(write=True) as tx:
        return work(TableAccess(state, tx))

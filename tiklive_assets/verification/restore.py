"""Restore verification: replay one random recent day into a scratch database and compare.

"A backup you have never restored is a rumour." Pick a day from the last 30 that has an archive (the random seed
and the day are recorded; today, when no earlier day is archived yet, as on a fresh install), parse every object
of it (each must parse), load it into a scratch DuckDB, and check
that the warehouse holds what the replay produced:

- window tables (history: snapshots, metric history, follow edges, credits, ...) hold exactly the day's rows
  (``dt = day``), within a relative tolerance, and the same values (sums of every integer column);
- upsert tables (posts, users, comments, music, ...) hold every key the replay produced (a later day may have
  moved a key's ``dt`` forward, never removed it);
- a sample of the day's raw objects restores byte for byte, one object at a time, the way a restore of a single
  object reads it: a compacted day's members are read alone from their bundle (a ranged read of the row group
  holding them) and must match the sha256 and size recorded when they were packed, and every sampled object must
  be intact gzip. Days past the hot period are compacted, so this is what proves the bundles restore.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from tiklive_assets.storage import NotFound, ObjectStore
from tiklive_assets.storage.bundles import live_bundles_of_day, read_index, read_member
from tiklive_assets.storage.keys import RAW_SUFFIX
from tiklive_assets.warehouse import TABLES, Warehouse, open_warehouse
from tiklive_assets.warehouse.parse import raw_day_prefix
from tiklive_assets.warehouse.reader import parse_day


@dataclass
class TableComparison:
    table: str
    replayed: int
    in_warehouse: int
    missing_keys: int = 0
    values_differ: list[str] = field(default_factory=list)  # window tables: integer columns whose day sums differ

    def within(self, tolerance: float) -> bool:
        if self.values_differ:  # the tolerance is for row counts; changed values are never tolerated
            return False
        if self.missing_keys:
            return self.missing_keys <= tolerance * max(self.replayed, 1)
        return abs(self.replayed - self.in_warehouse) <= tolerance * max(self.replayed, 1)


@dataclass
class RestoreReport:
    day: date | None
    seed: int
    objects: int = 0
    unreadable: list[str] = field(default_factory=list)
    tables: list[TableComparison] = field(default_factory=list)
    tolerance: float = 0.0
    sampled: int = 0  # raw objects read back one at a time
    sampled_bundled: int = 0  # of those, members read alone from their bundle
    sample_failures: list[str] = field(default_factory=list)  # "<key>: <why>" of each that did not restore

    @property
    def failing_tables(self) -> list[TableComparison]:
        return [t for t in self.tables if not t.within(self.tolerance)]

    @property
    def passed(self) -> bool:
        return (
            self.day is not None
            and self.objects > 0
            and not self.unreadable
            and not self.failing_tables
            and not self.sample_failures
        )


SAMPLE_SIZE = 20  # raw objects of the day read back one at a time


def archived(store: ObjectStore, day: date) -> bool:
    """True when the day has raw objects, loose or compacted into bundles."""
    return next(iter(store.list(raw_day_prefix(day))), None) is not None or bool(live_bundles_of_day(store, day))


def candidate_days(store: ObjectStore, today: date, window_days: int = 30) -> list[date]:
    """Past days (yesterday back to ``window_days`` ago) whose raw archive (loose or bundled) is not empty."""
    return [day for back in range(1, window_days + 1) if archived(store, day := today - timedelta(days=back))]


def _intact_gzip(data: bytes) -> bool:
    try:
        zlib.decompress(data, 31)
        return True
    except zlib.error:
        try:
            gzip.decompress(data)
            return True
        except (OSError, EOFError):
            return False


def sample_restores(store: ObjectStore, day: date, seed: int, size: int = SAMPLE_SIZE) -> tuple[int, int, list[str]]:
    """(objects sampled, of which bundled, failures): ``size`` raw objects of the day, loose and bundled alike,
    chosen by ``seed``, each read back alone and checked (a member: its bytes against the sha256 and size its
    bundle recorded when it was packed; every object: intact gzip)."""
    entries: dict[str, tuple[str | None, str, int]] = {}  # raw key -> (bundle or None, sha256, size)
    for info in store.list(raw_day_prefix(day)):
        if RAW_SUFFIX in info.key:
            entries[info.key] = (None, "", info.size)
    for bundle in live_bundles_of_day(store, day).values():
        for member in read_index(store, bundle):
            entries[member.key] = (bundle, member.sha256, member.size)  # the bundled copy is the one replay reads
    keys = sorted(entries)
    chosen = sorted(random.Random(seed).sample(keys, min(size, len(keys))))
    failures, bundled = [], 0
    for key in chosen:
        holder, sha, length = entries[key]
        try:
            data = store.get_bytes(key) if holder is None else read_member(store, holder, key)
        except (NotFound, KeyError):
            failures.append(f"{key}: gone while sampled" if holder is None else f"{key}: not in {holder}")
            continue
        if holder is not None:
            bundled += 1
            if len(data) != length or hashlib.sha256(data).hexdigest() != sha:
                failures.append(f"{key}: its bytes in {holder} differ from the sha256 recorded when it was packed")
                continue
        if not _intact_gzip(data):
            failures.append(f"{key}: not intact gzip")
    return len(chosen), bundled, failures


def pick_day(store: ObjectStore, today: date, seed: int, window_days: int = 30) -> date | None:
    """A random archived day of the window before today; today when it is the only archived day (a fresh install
    verifies what it has); None when nothing in the window is archived."""
    days = candidate_days(store, today, window_days)
    if days:
        return random.Random(seed).choice(days)
    return today if archived(store, today) else None


def _differing_sums(scratch: Warehouse, warehouse: Warehouse, table, day: date) -> list[str]:
    """Integer columns whose sum over the day differs: catches changed values, not just missing rows (and the
    sums compare across DuckDB and Postgres, where a row hash would not)."""
    columns = [c.name for c in table.columns if c.sql in ("BIGINT", "INTEGER")]
    if not columns:
        return []
    sql = f"SELECT {', '.join(f'sum({c})' for c in columns)} FROM {table.name} WHERE dt = ?"
    mine, theirs = scratch.query(sql, [day])[0], warehouse.query(sql, [day])[0]
    return [c for c, a, b in zip(columns, mine, theirs, strict=True) if (a or 0) != (b or 0)]


def _keys_in_warehouse(warehouse: Warehouse, table, day: date) -> set[tuple]:
    cols = ", ".join(table.key)
    return set(warehouse.query(f"SELECT {cols} FROM {table.name} WHERE dt >= ?", [day]))


def verify_day(
    store: ObjectStore,
    warehouse: Warehouse,
    day: date,
    *,
    seed: int = 0,
    tolerance: float = 0.0,
    scratch_dir: Path | None = None,
    processes: int | None = None,
) -> RestoreReport:
    """Replay ``day`` into a scratch DuckDB and compare it with ``warehouse`` (already open)."""
    report = RestoreReport(day=day, seed=seed, tolerance=tolerance)
    parsed = parse_day(store, day)
    report.objects = parsed.objects
    report.unreadable = list(parsed.corrupt)
    report.sampled, report.sampled_bundled, report.sample_failures = sample_restores(store, day, seed)
    with (
        tempfile.TemporaryDirectory(dir=scratch_dir, prefix="restore-") as tmp,
        open_warehouse(str(Path(tmp) / "scratch.duckdb")) as scratch,
    ):
        scratch.load_day(day, parsed.tables)
        for table in TABLES:
            replayed = scratch.query(f"SELECT count(*) FROM {table.name} WHERE dt = ?", [day])[0][0]
            if table.mode == "window":
                held = warehouse.query(f"SELECT count(*) FROM {table.name} WHERE dt = ?", [day])[0][0]
                report.tables.append(
                    TableComparison(
                        table.name, replayed, held, values_differ=_differing_sums(scratch, warehouse, table, day)
                    )
                )
            else:
                keys = set(scratch.query(f"SELECT {', '.join(table.key)} FROM {table.name}"))
                present = keys & _keys_in_warehouse(warehouse, table, day)
                report.tables.append(TableComparison(table.name, len(keys), len(present), len(keys - present)))
    return report


def verify_random_day(
    store: ObjectStore, warehouse: Warehouse, today: date, seed: int, *, tolerance: float = 0.0, window_days: int = 30
) -> RestoreReport:
    day = pick_day(store, today, seed, window_days)
    if day is None:
        return RestoreReport(day=None, seed=seed, tolerance=tolerance)
    return verify_day(store, warehouse, day, seed=seed, tolerance=tolerance)

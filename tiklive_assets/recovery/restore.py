"""Restore the warehouse: the latest snapshot (or the newest taken at or before a time), then a replay of only the
days the snapshot cannot hold, from the raw archive.

A DuckDB warehouse is rebuilt in a new file beside the target and each table's row count checked against the
manifest's; only then is the file moved over the target in one rename, so a failed restore (a damaged file, other row
counts) leaves the old file as it was. A Postgres warehouse gets each table replaced in its own transaction
(``DELETE`` then ``COPY`` from the Parquet file, streamed in batches, then its row count checked against the
manifest's before the commit): a table whose count differs is rolled back, the tables before it stay replaced; run
the restore again (or with ``--at``) if it stops half-way. Tables are created from the project's declarations, so a
snapshot taken by an older release loads into today's columns (a column it lacks stays null until the days are
replayed).

The days after the snapshot come from the archive through the same day load as ``tiklive replay``
(:func:`tiklive_assets.warehouse.load_days`): every day from :meth:`Manifest.replay_from` to today (UTC) that holds
archived responses. The Research API's tables are rebuilt from ``research-raw/`` when it changed after the snapshot.

An erasure run after the snapshot was taken removed its user from the archive but not from the snapshot: the restore
lists such erasures, and every erasure the log does not record as completed, so that they are executed again
(``tiklive erase ... --execute``) before anyone reads the data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.keys import RAW_PREFIX, RESEARCH_PREFIX
from tiklive_assets.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    ReplayReport,
    WarehouseError,
    day_range,
    load_days,
    open_warehouse,
)
from tiklive_assets.warehouse.raw import raw_day_prefix
from tiklive_assets.warehouse.schema import TABLES, Table

from .snapshots import KNOWN_TABLES, Manifest, SnapshotError, choose_snapshot, fetched

_BATCH_ROWS = 50_000


@dataclass
class RestoreReport:
    snapshot: Manifest
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # rows restored per table
    restore_seconds: float = 0.0
    replayed: list[date] = field(default_factory=list)
    replay: ReplayReport | None = None
    research: str | None = None  # what the research tables rebuild said, when one ran
    not_in_snapshot: list[str] = field(default_factory=list)  # tables the snapshot lacks (a newer release's)
    unknown_tables: list[str] = field(default_factory=list)  # tables of the snapshot this release does not know
    erasures_after: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# -- the snapshot into a warehouse ---------------------------------------------------------------------------------


def _table_files(manifest: Manifest) -> dict[str, str]:
    return {f.table: f.name for f in manifest.files if f.table}


def _columns(table: Table, path: Path) -> list[str]:
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return [c for c in table.column_names if c in present]


def _create(wh: Any, tables: list[Table], indices: bool) -> None:
    for table in tables:
        for statement in table.create_sql(indices=indices):
            wh.query(statement)


def _wrong_counts(manifest: Manifest, rows: dict[str, int]) -> str | None:
    """What differs between the restored row counts and the manifest's, or None when they match."""
    wrong = {name: n for name, n in rows.items() if n != manifest.tables.get(name)}
    if not wrong:
        return None
    return ", ".join(f"{name}: {n} rows, the manifest says {manifest.tables.get(name)}" for name, n in wrong.items())


def _into_duckdb(
    target: DuckDBWarehouse, folder: Path, files: dict[str, str], tables: list[Table], manifest: Manifest
) -> dict[str, int]:
    """Build the warehouse in ``<target>.restoring`` and check its row counts against the manifest's; only then
    rename it over ``target`` (and drop the old WAL). On other counts the new file is removed, the old one stays."""
    _not_in_use(target)
    building = target.path.with_name(target.path.name + ".restoring")
    leftovers = (building, building.with_name(building.name + ".wal"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    rows: dict[str, int] = {}
    with open_warehouse(str(building)) as wh:
        assert isinstance(wh, DuckDBWarehouse)
        _create(wh, [t for t in tables if t not in TABLES], indices=False)
        for table in tables:
            path = folder / files[table.name]
            cols = ", ".join(_columns(table, path))
            escaped = str(path).replace("'", "''")
            wh.con.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM read_parquet('{escaped}')")
            rows[table.name] = wh.row_count(table.name)
        wh.con.execute("CHECKPOINT")
    wrong = _wrong_counts(manifest, rows)
    if wrong:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        raise SnapshotError(
            f"snapshot {manifest.snapshot_id} loaded with other row counts ({wrong}); {target.path} was left as it "
            "was: restore an older snapshot with --at"
        )
    target.path.with_name(target.path.name + ".wal").unlink(missing_ok=True)
    os.replace(building, target.path)
    return rows


def _not_in_use(target: DuckDBWarehouse) -> None:
    """Refuse to replace a DuckDB file another process has open (its writes would go to the replaced file): stop the
    pipeline first. A file too damaged to open is replaced."""
    if not target.path.exists():
        return
    try:
        with open_warehouse(str(target.path), read_only=True):
            pass
    except WarehouseError as exc:
        if "lock" in str(exc).lower():
            raise WarehouseError(
                f"{target.path} is open in another process: stop the pipeline (the Dagster code location, "
                f"`tiklive ui`, a running `tiklive run`) before restoring it. {exc}"
            ) from exc


def _into_postgres(
    target: PostgresWarehouse, folder: Path, files: dict[str, str], tables: list[Table], manifest: Manifest
) -> dict[str, int]:
    """Each table replaced in its own transaction: DELETE, then COPY from its Parquet file in batches, then its row
    count checked against the manifest's before the commit (other counts roll that table back and stop)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tiklive_assets.warehouse.backends import copy_rows

    rows: dict[str, int] = {}
    with target as wh:
        assert isinstance(wh, PostgresWarehouse)
        _create(wh, [t for t in tables if t not in TABLES], indices=True)
        conn = wh.conn
        for table in tables:
            path = folder / files[table.name]
            cols = _columns(table, path)
            with conn.transaction():
                conn.execute(f"DELETE FROM {table.name}")
                for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=cols):
                    copy_rows(conn, table.name, ", ".join(cols), pa.Table.from_batches([batch]))
                count = int(conn.execute(f"SELECT count(*) FROM {table.name}").fetchall()[0][0])
                wrong = _wrong_counts(manifest, {table.name: count})
                if wrong:  # raised inside the transaction: this table is rolled back to what it held
                    done = ", ".join(rows) or "none"
                    raise SnapshotError(
                        f"snapshot {manifest.snapshot_id} loaded with other row counts ({wrong}); {table.name} was "
                        f"rolled back (tables already replaced: {done}): restore an older snapshot with --at"
                    )
            rows[table.name] = count
    return rows


def restore_snapshot(
    store: ObjectStore, manifest: Manifest, target_url: str, *, scratch: Path | None = None
) -> tuple[dict[str, int], list[str], list[str]]:
    """Load ``manifest``'s snapshot into the warehouse at ``target_url``: (rows per table, tables the snapshot
    lacks, snapshot tables this release does not know). Each table's row count must match the manifest's before it
    replaces what the warehouse holds (:class:`SnapshotError` otherwise)."""
    files = _table_files(manifest)
    tables = [KNOWN_TABLES[name] for name in files if name in KNOWN_TABLES]
    unknown = sorted(name for name in files if name not in KNOWN_TABLES)
    missing = sorted(t.name for t in TABLES if t.name not in files)
    target = open_warehouse(target_url)
    with fetched(store, manifest, scratch) as folder:
        if isinstance(target, DuckDBWarehouse):
            rows = _into_duckdb(target, folder, files, tables, manifest)
        else:
            assert isinstance(target, PostgresWarehouse)
            rows = _into_postgres(target, folder, files, tables, manifest)
    return rows, missing, unknown


# -- the whole restore ---------------------------------------------------------------------------------------------


def archived_days(store: ObjectStore, start: date, end: date, prefix: str = RAW_PREFIX) -> list[date]:
    """The days from ``start`` to ``end`` holding archived responses (one short listing per day)."""
    if end < start:
        return []
    return [day for day in day_range(start, end) if next(iter(store.list(raw_day_prefix(day, prefix))), None)]


def _research_changed_since(store: ObjectStore, when: datetime) -> bool:
    return any(info.last_modified >= when for info in store.list(RESEARCH_PREFIX + "/"))


def erasures_after(entries: list[dict[str, Any]], when: datetime) -> list[dict[str, Any]]:
    """The erasure log entries that finished (or started, if unfinished) after ``when``, and every entry whose
    status is not ``completed`` (``started``, ``incomplete``: an erasure that did not finish must run again, whenever
    it started). An entry without a status is judged by its times alone."""
    out = []
    for entry in entries:
        unfinished = "status" in entry and entry["status"] != "completed"
        stamp = entry.get("finished_at") or entry.get("started_at")
        if unfinished or (stamp and datetime.fromisoformat(str(stamp)).astimezone(UTC) >= when):
            out.append(entry)
    return out


def restore_warehouse(
    store: ObjectStore,
    target_url: str,
    *,
    at: datetime | None = None,
    until: date | None = None,
    exports: Path | None = None,
    processes: int = 1,
    scratch: Path | None = None,
    erasure_log: list[dict[str, Any]] | None = None,
    progress: Callable[[int], None] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> RestoreReport:
    """The latest snapshot (or the newest at or before ``at``) into ``target_url``, then the archived days after it
    up to ``until`` (default today, UTC). ``say`` hears each step as it starts."""
    started = time.monotonic()
    manifest = choose_snapshot(store, at)
    report = RestoreReport(snapshot=manifest, target=target_url)
    say(
        f"restoring snapshot {manifest.snapshot_id} ({manifest.rows:,} rows in {len(manifest.tables)} tables, "
        f"{manifest.size / 1e6:.1f} MB; last day {manifest.last_day or 'none'})"
    )
    report.rows, report.not_in_snapshot, report.unknown_tables = restore_snapshot(
        store, manifest, target_url, scratch=scratch
    )
    report.restore_seconds = time.monotonic() - started
    end = until or datetime.now(UTC).date()
    report.replayed = archived_days(store, manifest.replay_from(), end)
    shown = f"{report.replayed[0]}..{report.replayed[-1]}" if report.replayed else "none"
    say(
        f"snapshot restored in {report.restore_seconds:.1f}s; replaying the {len(report.replayed)} archived "
        f"day(s) it may lack: {shown}"
    )
    if report.replayed:
        with open_warehouse(target_url) as wh:
            report.replay = load_days(
                store, wh, report.replayed, exports=exports, processes=processes, progress=progress
            )
    if _research_changed_since(store, manifest.taken_at):
        from tiklive_assets.research.warehouse import load_research_warehouse

        say("research-raw/ changed after the snapshot: rebuilding the research tables")
        report.research = str(load_research_warehouse(store, target_url))
    report.erasures_after = erasures_after(erasure_log or [], manifest.taken_at)
    report.seconds = time.monotonic() - started
    return report

"""Replay: rebuild the warehouse (or a scratch database) for a range of days from the raw archive alone.

The "database lost" runbook becomes: delete the warehouse, ``tiklive replay --from D1 --to D2``, get
identical tables. Days load in ascending order, each in its own transaction, so an interrupted replay resumes by
running it again (every day load is idempotent). Memory is bounded by one day's rows.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from tiklive_assets.storage import NotFound, ObjectStore
from tiklive_assets.storage.keys import RAW_PREFIX

from .archive_index_store import day_part, part_key, write_part
from .backends import Warehouse, open_warehouse
from .exports import export_day
from .reader import ParsedDay, count_day_objects, parse_day, parser_pool
from .remote import publish_day
from .schema import TABLES


@dataclass
class ReplayReport:
    days: list[date] = field(default_factory=list)
    objects: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # "<key>: <error>" of each quarantined object
    corrupt: list[str] = field(default_factory=list)
    refused: dict[date, list[str]] = field(default_factory=dict)  # days left as they were: damaged objects
    quarantined: int = 0
    items_without_id: int = 0
    posts_without_author: int = 0
    values_nulled: Counter = field(default_factory=Counter)
    error_responses: Counter = field(default_factory=Counter)
    objects_by_day: dict[date, int] = field(default_factory=dict)
    quarantined_by_day: dict[date, int] = field(default_factory=dict)
    rows_by_day: dict[date, dict[str, int]] = field(default_factory=dict)  # each day's own rows per table
    error_responses_by_day: dict[date, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self, day: date, objects: int, rows: dict[str, int], errors: list[str], parsed: ParsedDay | None = None
    ) -> None:
        self.days.append(day)
        self.objects += objects
        for name, n in rows.items():
            self.rows[name] = self.rows.get(name, 0) + n
        self.errors.extend(errors)
        self.objects_by_day[day] = objects
        self.rows_by_day[day] = dict(rows)
        if parsed is not None:
            self.error_responses_by_day[day] = sum(parsed.error_responses.values())
            self.corrupt.extend(parsed.corrupt)
            self.quarantined += parsed.quarantined
            self.quarantined_by_day[day] = parsed.quarantined
            self.items_without_id += parsed.items_without_id
            self.posts_without_author += parsed.posts_without_author
            self.values_nulled.update(parsed.values_nulled)
            self.error_responses.update(parsed.error_responses)

    @property
    def values_nulled_total(self) -> int:
        return sum(self.values_nulled.values())


def day_range(start: date, end: date) -> Iterator[date]:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def load_days(
    store: ObjectStore,
    warehouse: Warehouse,
    days: list[date],
    *,
    exports: Path | None = None,
    processes: int = 1,
    threads: int | None = None,
    prefix: str = RAW_PREFIX,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
    index_store: ObjectStore | None = None,
) -> ReplayReport:
    """Parse and load each day in order (and export its Parquet files when ``exports`` is given).

    ``index_store``: also write each loaded day's archive index part there (``index/user-ids/day=…``, beside the
    archive: normally ``store`` itself), so erasure can find the day's objects without the warehouse.

    A replay never silently drops rows: when some of a day's archived objects are damaged (their bytes are not
    gzip any more) and the warehouse already holds rows of that day, the day is left as it is and reported in
    ``refused`` with the damaged keys, unless ``force`` (restore the objects from the secondary store first). A
    refused day's index part is deleted from ``index_store``, as it may be stale: erasure then scans that day whole."""
    import time

    started = time.monotonic()
    report = ReplayReport()
    pool = parser_pool(processes) if processes > 1 else None
    try:
        for day in sorted(days):
            parsed = parse_day(store, day, prefix=prefix, pool=pool, threads=threads, progress=progress)
            if parsed.corrupt and not force and _holds_rows(warehouse, day):
                report.refused[day] = list(parsed.corrupt)
                report.corrupt.extend(parsed.corrupt)
                if index_store is not None:  # its old part may miss what was archived since: erasure scans it whole
                    _drop_part(index_store, day)
                continue
            warehouse.load_day(day, parsed.tables)
            if exports is not None:
                export_day(exports, day, parsed.tables)
                publish_day(store, exports, day)  # beside an archive on S3 the published copy follows (erasure too)
            if index_store is not None:
                write_part(index_store, day, day_part(store, day, parsed.tables["archive_index"]))
            report.add(day, parsed.objects, parsed.row_counts, parsed.errors, parsed)
    finally:
        if pool is not None:
            pool.shutdown()
    report.seconds = time.monotonic() - started
    return report


def _drop_part(index_store: ObjectStore, day: date) -> None:
    """Delete ``day``'s archive index part (a missing one is fine): without it erasure scans that day whole."""
    with contextlib.suppress(NotFound):
        index_store.delete(part_key(day))


def _holds_rows(warehouse: Warehouse, day: date) -> bool:
    """Whether the warehouse already has rows of ``day`` (which a load from damaged objects would shrink)."""
    return any(
        warehouse.query(f"SELECT 1 FROM {table.name} WHERE dt = ? LIMIT 1", [day])
        for table in TABLES
        if table.mode == "window"
    )


def replay(
    store: ObjectStore,
    warehouse_url: str,
    start: date,
    end: date,
    *,
    exports: Path | None = None,
    processes: int = 1,
    prefix: str = RAW_PREFIX,
    progress_factory: Callable[[int], Callable[[int], None]] | None = None,
    force: bool = False,
    index: bool = True,
) -> ReplayReport:
    """Replay ``start``..``end`` (inclusive) into the warehouse at ``warehouse_url``.

    ``index`` (the default) also rewrites each replayed day's archive index part beside the archive: it is a pure
    function of the archive, so a part that is already right is left as it is (the store writes nothing).

    ``progress_factory(total_objects)`` returns the callback that receives counts of parsed objects (the CLI
    hands in a tqdm bar); counting the objects first is one listing per day, no GETs.
    """
    days = list(day_range(start, end))
    progress = None
    if progress_factory is not None:
        progress = progress_factory(sum(count_day_objects(store, d, prefix) for d in days))
    with open_warehouse(warehouse_url) as warehouse:
        return load_days(
            store,
            warehouse,
            days,
            exports=exports,
            processes=processes,
            prefix=prefix,
            progress=progress,
            force=force,
            index_store=store if index else None,
        )

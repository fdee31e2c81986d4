"""Reading one archive day: list the day's prefixes, fetch bodies with bounded parallel GETs, parse them.

On S3 every object is a GET with network latency, so bodies are fetched by a thread pool, one bounded batch at a
time (at most ``batch`` bodies in memory, the next batch in flight while the current one is parsed). On local
disk reads are cheap and parsing (gzip + JSON) is the cost, so a day can be split over worker processes instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import multiprocessing

import pyarrow as pa

from tiklive_assets.storage import LocalStore, ObjectInfo, ObjectStore
from tiklive_assets.storage.keys import RAW_PREFIX

from .parse import DayParser, raw_day_prefix, video_day_prefix

DEFAULT_BATCH = 256
DEFAULT_S3_THREADS = 16
MIN_OBJECTS_PER_PROCESS = 5_000  # below this, starting processes costs more than it saves

Progress = Callable[[int], None]


@dataclass
class ParsedDay:
    day: date
    tables: dict[str, pa.Table]
    objects: int
    errors: list[str]

    @property
    def row_counts(self) -> dict[str, int]:
        return {name: table.num_rows for name, table in self.tables.items()}


def list_day(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
    """(raw response objects, video MP4 objects) archived under ``day``."""
    raw = [info for info in store.list(raw_day_prefix(day, prefix)) if ".json.gz" in info.key]
    videos = [info for info in store.list(video_day_prefix(day)) if info.key.endswith(".mp4")]
    return raw, videos


def iter_bodies(
    store: ObjectStore, infos: list[ObjectInfo], *, threads: int = 1, batch: int = DEFAULT_BATCH
) -> Iterator[tuple[ObjectInfo, bytes]]:
    """(info, bytes) for each object, in order; with ``threads > 1``, parallel GETs, one batch ahead at most."""
    if threads <= 1:
        for info in infos:
            yield info, store.get_bytes(info.key)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="archive-get") as pool:
        def submit(start: int) -> list[Future]:
            return [pool.submit(store.get_bytes, info.key) for info in infos[start : start + batch]]

        pending = submit(0)
        for start in range(0, len(infos), batch):
            following = submit(start + batch) if start + batch < len(infos) else []
            for info, future in zip(infos[start : start + batch], pending):
                yield info, future.result()
            pending = following


def _default_threads(store: ObjectStore) -> int:
    return 1 if isinstance(store, LocalStore) else DEFAULT_S3_THREADS


def _parse_chunk(store: ObjectStore, day: date, prefix: str, infos: list[ObjectInfo]) -> DayParser:
    parser = DayParser(day, prefix)
    for info in infos:
        parser.add(info, store.get_bytes(info.key))
    return parser


def parse_day(
    store: ObjectStore,
    day: date,
    *,
    prefix: str = RAW_PREFIX,
    threads: int | None = None,
    processes: int = 1,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> ParsedDay:
    """Every warehouse table for ``day``, from the archived objects of that day only.

    ``threads``: parallel GETs (default 16 for S3-like stores, 1 for local disk). ``processes``: split the
    parsing of a local-disk day over that many processes (used by ``tiklive replay --processes`` and the
    benchmark; only for a LocalStore, whose reads need no shared client).
    """
    raw, videos = list_day(store, day, prefix)
    parser = DayParser(day, prefix)
    for info in videos:
        parser.add_video(info)
    if processes > 1 and isinstance(store, LocalStore) and len(raw) >= MIN_OBJECTS_PER_PROCESS:
        parts = max(processes * 4, 1)
        size = -(-len(raw) // parts)
        chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
        context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            futures = [pool.submit(_parse_chunk, store, day, prefix, chunk) for chunk in chunks]
            for chunk, future in zip(chunks, futures):
                parser.merge(future.result())
                if progress:
                    progress(len(chunk))
    else:
        threads = _default_threads(store) if threads is None else threads
        done = 0
        for info, gz in iter_bodies(store, raw, threads=threads, batch=batch):
            parser.add(info, gz)
            done += 1
            if progress and done % batch == 0:
                progress(batch)
        if progress and done % batch:
            progress(done % batch)
    tables = parser.tables()
    return ParsedDay(day, tables, parser.objects, parser.errors)


def count_day_objects(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> int:
    """How many raw objects a day holds (for a progress bar's total); a listing, no GETs."""
    return sum(1 for info in store.list(raw_day_prefix(day, prefix)) if ".json.gz" in info.key)

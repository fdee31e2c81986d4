"""Reading one archive day: list the day's prefixes, fetch bodies with bounded parallel GETs, parse them.

On S3 every object is a GET with network latency, so bodies are fetched by a thread pool, a bounded window at a
time (at most two batches of bodies fetched ahead of the parser, in listing order). On local
disk reads are cheap and parsing (gzip + JSON) is the cost, so a day can be split over worker processes instead;
the local listing is a plain directory scan without a stat per file (an object's size is its bytes' length, and
its modification time is only read when its gzip header carries no fetch time).

A day past the hot period is compacted: its raw objects are members of one bundle per endpoint
(:mod:`tiklive_assets.storage.bundles`), and loose objects may sit beside them (held keys, late writes, a
compaction cut short). Every path reads both, in key order, each key once (a key both loose and in the live bundle
is read from the bundle: compaction checked the bytes are the same), so a compacted day replays to the same
tables as before. Bundles are read a row group at a time: on S3 by parallel ranged GETs, locally by seeks.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa

from tiklive_assets.concurrency import bounded_map
from tiklive_assets.storage import LocalStore, ObjectInfo, ObjectStore
from tiklive_assets.storage.bundles import Bundle, Member, iter_members, live_bundles_of_day, read_index
from tiklive_assets.storage.keys import RAW_PREFIX, RAW_SUFFIX

from .parse import DayParser, raw_day_prefix, video_day_prefix
from .parse_tombstones import tombstones

MEDIA_SUFFIXES = (".mp4", ".jpg", ".mp3")  # a video, a photo post's images and its sound
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_READ_SIZE = 1 << 18  # one read covers nearly every archived response
_PART_SUFFIX = ".part"  # a LocalStore write in progress (never listed by the store either)

DEFAULT_BATCH = 256
DEFAULT_S3_THREADS = 16
PROCESS_CHUNK = 4_096  # objects per task handed to a parser process; a day's remainder is parsed in-process

SIGN_ALL_UP_TO = 10_000  # days with more objects sign one object in SIGN_SAMPLE (by key hash) for schema_fields
SIGN_SAMPLE = 8

Progress = Callable[[int], None]


def sign_every(objects: int) -> int:
    """Field signatures (schema drift) of every object on ordinary days; one in 8 on big ones, chosen by a hash of
    the key, so the sample is the same whatever the split over processes: a field carried by 0.1 % of a
    50,000-object day is still seen, at a tenth of the cost."""
    return 1 if objects <= SIGN_ALL_UP_TO else SIGN_SAMPLE


@dataclass
class ParsedDay:
    day: date
    tables: dict[str, pa.Table]
    objects: int
    errors: list[str]  # "<key>: <error>" of each quarantined object
    corrupt: list[str] = field(default_factory=list)  # keys whose bytes are not gzip: a damaged archive copy
    items_without_id: int = 0
    posts_without_author: int = 0
    values_nulled: Counter = field(default_factory=Counter)  # field -> values nulled (not coercible)
    error_responses: Counter = field(default_factory=Counter)  # "endpoint/reason" -> objects

    @property
    def quarantined(self) -> int:
        return self.tables["quarantine"].num_rows

    @property
    def row_counts(self) -> dict[str, int]:
        return {name: table.num_rows for name, table in self.tables.items()}


def list_day(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
    """(raw response objects, media objects: MP4s, photo posts' images and sounds) archived under ``day``; a
    bundled raw object is listed with its member size and fetch time (read it with ``bundles.day_objects``)."""
    raw = [info for info in store.list(raw_day_prefix(day, prefix)) if RAW_SUFFIX in info.key]
    bundled = day_bundles(store, day, prefix)
    if bundled:
        members = {m.key: ObjectInfo(m.key, m.size, m.fetched_at) for ms in bundled.values() for m in ms}
        raw = sorted([*(i for i in raw if i.key not in members), *members.values()], key=lambda i: i.key)
    videos = [info for info in store.list(video_day_prefix(day)) if info.key.endswith(MEDIA_SUFFIXES)]
    return raw, videos


def day_bundles(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> dict[str, list[Member]]:
    """The day's live bundles (the highest generation of each endpoint) and their members: index reads only."""
    return {key: read_index(store, key) for key in live_bundles_of_day(store, day, prefix).values()}


Entry = tuple[str, str | None, datetime | None]  # (raw key, bundle holding it or None: loose, fetch time)


def day_entries(loose_keys: list[str], bundled: dict[str, list[Member]]) -> list[Entry]:
    """Every raw object of a day once, in key order: a loose key a live bundle also holds is read from the bundle."""
    entries: dict[str, Entry] = {key: (key, None, None) for key in loose_keys}
    for bundle_key, members in bundled.items():
        for m in members:
            entries[m.key] = (m.key, bundle_key, m.fetched_at)
    return [entries[key] for key in sorted(entries)]


def _parse_entries(parser: DayParser, store: LocalStore, entries: list[Entry], opened: dict[str, Bundle]) -> None:
    """Parse loose and bundled objects in the entries' order: runs of loose keys by :func:`_parse_local`, members
    from their bundle (opened once, read a row group at a time)."""
    root, run = str(store.root), []
    add = parser.add_bytes
    for key, holder, fetched_at in entries:
        if holder is None:
            run.append(key)
            continue
        if run:
            _parse_local(parser, root, run)
            run = []
        bundle = opened.get(holder)
        if bundle is None:
            bundle = opened[holder] = Bundle(store, holder)
        gz = bundle.body(key)
        add(key, gz, len(gz), fetched_at)
    if run:
        _parse_local(parser, root, run)


def local_raw_keys(store: LocalStore, day: date, prefix: str = RAW_PREFIX) -> list[str]:
    """The day's raw keys on local disk by a directory scan (no stat per file: the store's listing stats each one,
    a third of a day's listing time). Same selection as ``store.list``: regular files, no ``.part`` writes."""
    head = raw_day_prefix(day, prefix)
    base = os.path.join(str(store.root), *head.rstrip("/").split("/"))
    keys: list[str] = []
    try:
        endpoints = [entry for entry in os.scandir(base) if entry.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return keys
    for endpoint in endpoints:
        stem = f"{head}{endpoint.name}/"
        with os.scandir(endpoint.path) as scan:
            keys.extend(
                stem + entry.name
                for entry in scan
                if RAW_SUFFIX in entry.name
                and not entry.name.endswith(_PART_SUFFIX)
                and entry.is_file(follow_symlinks=False)
            )
    keys.sort()
    return keys


def _modified(fd: int) -> datetime:
    return datetime.fromtimestamp(os.fstat(fd).st_mtime, tz=UTC)  # as LocalStore's ObjectInfo has it


def _parse_local(parser: DayParser, root: str, keys: list[str]) -> None:
    """Read and parse local objects: os.open/os.read (no buffered file object per object), an fstat only when the
    gzip header has no fetch time."""
    add = parser.add_bytes
    base = root + os.sep
    for key in keys:
        fd = os.open(base + key, _READ_FLAGS)
        try:
            gz = os.read(fd, _READ_SIZE)
            if len(gz) == _READ_SIZE:  # a large object: read the rest
                parts = [gz]
                while chunk := os.read(fd, _READ_SIZE):
                    parts.append(chunk)
                gz = b"".join(parts)
            modified = None if gz[:2] == b"\x1f\x8b" and gz[4:8] != b"\0\0\0\0" else _modified(fd)
        finally:
            os.close(fd)
        add(key, gz, len(gz), modified)


def iter_bodies(
    store: ObjectStore, infos: list[ObjectInfo], *, threads: int = 1, batch: int = DEFAULT_BATCH
) -> Iterator[tuple[ObjectInfo, bytes]]:
    """(info, bytes) for each object, in order; with ``threads > 1``, parallel GETs, at most two batches of bodies
    fetched and not yet handed on (the current one and the next in flight)."""

    def fetch(info: ObjectInfo) -> tuple[ObjectInfo, bytes]:
        return info, store.get_bytes(info.key)

    return bounded_map(
        fetch, infos, workers=threads, in_flight=2 * batch, ordered=True, thread_name_prefix="archive-get"
    )


def _default_threads(store: ObjectStore) -> int:
    return 1 if isinstance(store, LocalStore) else DEFAULT_S3_THREADS


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a day's rows pile up: they are acyclic tuples and dicts, and
    otherwise every few thousand allocations trigger a traversal of all of them (a third of the parse time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_chunk(root: str, day: date, prefix: str, keys: list[str], sign_every: int = 1) -> DayParser:
    parser = DayParser(day, prefix, sign_every=sign_every)
    with _no_cyclic_gc():
        _parse_local(parser, root, keys)
    return parser


def _parse_entry_chunk(root: str, day: date, prefix: str, entries: list[Entry], sign_every: int = 1) -> DayParser:
    parser = DayParser(day, prefix, sign_every=sign_every)
    with _no_cyclic_gc():
        _parse_entries(parser, LocalStore(root), entries, {})
    return parser


def parser_pool(processes: int) -> ProcessPoolExecutor:
    """Worker processes for :func:`parse_day`, created once per replay (forked: no re-import per worker)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context(method))


def parse_day(
    store: ObjectStore,
    day: date,
    *,
    prefix: str = RAW_PREFIX,
    threads: int | None = None,
    pool: Executor | None = None,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> ParsedDay:
    """Every warehouse table for ``day``, from the archived objects of that day only.

    ``threads``: parallel GETs (default 16 for S3-like stores, 1 for local disk). ``pool``: a
    :func:`parser_pool` to split the parsing of a local-disk day over processes (``tiklive replay --processes``
    and the benchmark; only for a LocalStore, whose reads need no shared client).
    """
    with _no_cyclic_gc():
        return _parse_day(store, day, prefix, threads, pool, batch, progress)


def _parse_day(store, day, prefix, threads, pool, batch, progress) -> ParsedDay:
    parser = DayParser(day, prefix)
    if pool is not None and isinstance(store, LocalStore):
        _parse_in_processes(store, day, prefix, pool, parser, progress)
    elif isinstance(store, LocalStore) and threads in (None, 1):
        keys = local_raw_keys(store, day, prefix)
        bundled = day_bundles(store, day, prefix)
        entries = day_entries(keys, bundled) if bundled else None
        parser.sign_every = sign_every(len(keys) if entries is None else len(entries))
        root = str(store.root)
        opened: dict[str, Bundle] = {}
        for start in range(0, len(keys) if entries is None else len(entries), batch):
            if entries is None:
                chunk = len(keys[start : start + batch])
                _parse_local(parser, root, keys[start : start + batch])
            else:
                chunk = len(entries[start : start + batch])
                _parse_entries(parser, store, entries[start : start + batch], opened)
            if progress:
                progress(chunk)
    else:
        threads = _default_threads(store) if threads is None else threads
        done = 0
        for key, gz, modified in _remote_objects(store, day, prefix, parser, threads, batch):
            parser.add_bytes(key, gz, len(gz), modified)
            done += 1
            if progress and done % batch == 0:
                progress(batch)
        if progress and done % batch:
            progress(done % batch)
    for info in store.list(video_day_prefix(day)):
        parser.add_video(info)
    tables = tombstones(store, day, parser.tables(), prefix)  # the day's not-found answers of captured content
    return ParsedDay(
        day,
        tables,
        parser.objects,
        parser.errors,
        corrupt=parser.corrupt,
        items_without_id=parser.items_without_id,
        posts_without_author=parser.posts_without_author,
        values_nulled=Counter(parser.tally.nulled),
        error_responses=Counter(
            {f"{endpoint}/{reason}": n for (endpoint, reason), n in parser.error_responses.items()}
        ),
    )


def _remote_objects(
    store: ObjectStore, day: date, prefix: str, parser: DayParser, threads: int, batch: int
) -> Iterator[tuple[str, bytes, datetime | None]]:
    """(key, bytes, fetch time) of the day's loose objects by parallel GETs and of its bundles' members by parallel
    ranged GETs of their row groups, merged in key order, each key once."""
    raw = [info for info in store.list(raw_day_prefix(day, prefix)) if RAW_SUFFIX in info.key]
    bundled = day_bundles(store, day, prefix)
    members = {m.key for ms in bundled.values() for m in ms}
    loose = [info for info in raw if info.key not in members]
    parser.sign_every = sign_every(len(loose) + len(members))
    streams: list[Iterator[tuple[str, bytes, datetime | None]]] = [
        ((info.key, gz, info.last_modified) for info, gz in iter_bodies(store, loose, threads=threads, batch=batch))
    ]
    for key in bundled:
        streams.append((m.key, gz, m.fetched_at) for m, gz in iter_members(store, key, threads=threads))
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda item: item[0])


def _parse_in_processes(
    store: LocalStore, day: date, prefix: str, pool: Executor, parser: DayParser, progress: Progress | None
) -> None:
    """Split the day's keys into chunks for the pool (workers read the files and bundles themselves: only key
    names travel), and merge each worker's rows as its chunk comes back."""
    keys = local_raw_keys(store, day, prefix)
    root = str(store.root)
    bundled = day_bundles(store, day, prefix)
    if bundled:
        entries = day_entries(keys, bundled)
        parser.sign_every = every = sign_every(len(entries))
        futures = [
            (
                len(entries[start : start + PROCESS_CHUNK]),
                pool.submit(_parse_entry_chunk, root, day, prefix, entries[start : start + PROCESS_CHUNK], every),
            )
            for start in range(0, len(entries), PROCESS_CHUNK)
        ]
    else:
        parser.sign_every = every = sign_every(len(keys))
        futures = [
            (
                len(keys[start : start + PROCESS_CHUNK]),
                pool.submit(_parse_chunk, root, day, prefix, keys[start : start + PROCESS_CHUNK], every),
            )
            for start in range(0, len(keys), PROCESS_CHUNK)
        ]
    for size, future in futures:
        parser.merge(future.result())
        if progress:
            progress(size)


def count_day_objects(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> int:
    """How many raw objects a day holds, loose or bundled (for a progress bar's total); a listing and the bundles'
    indexes, no bodies."""
    if isinstance(store, LocalStore):
        keys = local_raw_keys(store, day, prefix)
    else:
        keys = [info.key for info in store.list(raw_day_prefix(day, prefix)) if RAW_SUFFIX in info.key]
    bundled = day_bundles(store, day, prefix)
    return len(day_entries(keys, bundled)) if bundled else len(keys)

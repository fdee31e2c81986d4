"""Bundles: one archive day's raw objects of one endpoint packed into one Parquet object, byte for byte.

Cold storage classes bill every object as at least 128 KiB and charge a request per object for each lifecycle
transition, while a raw response is a 2-5 KB gzip object: tiering loose objects would multiply the bill. A bundle
keeps each member's exact gzip bytes (column ``body``, no extra compression, no dictionary) beside its key,
fetch time (the loose object's modification time, which replay uses as the capture time when the gzip header
carries none), sha256 and size, sorted by key, in row groups of about 1 MiB. The Parquet footer is the offset
index: one member is read with ranged reads of the footer and of its row group only (:func:`read_member`).

Key layout: ``tiklive-bundles/<archive prefix>/YYYY/MM/DD/<endpoint>[-<generation>].parquet``; generation 1 has
no suffix. A (day, endpoint) has at most one live bundle, its highest generation; every new generation holds the
complete set (the previous generation's members, plus newly packed loose objects, minus what an erasure removed),
so a crash between writing generation N+1 and deleting generation N is harmless: readers use only the highest
generation, plus loose objects (:func:`day_objects`).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tiklive_assets.concurrency import bounded_map

from .base import ObjectStore, PutResult, StoreError
from .errors import NotFound
from .keys import RAW_PREFIX, RAW_SUFFIX, RESEARCH_PREFIX, InvalidKeyPart, check_endpoint, check_prefix, split_raw_key

BUNDLE_PREFIX = "tiklive-bundles"
BUNDLE_SUFFIX = ".parquet"
BUNDLE_CONTENT_TYPE = "application/octet-stream"  # what the mirror's repair gives a .parquet key
ROW_GROUP_BYTES = 1 << 20  # member bytes per row group: one member read fetches about this much
INDEX_COLUMNS = ["key", "fetched_at", "sha256", "size"]
SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("body", pa.binary(), nullable=False),
    ]
)
_GENERATION_RE = re.compile(r"(?P<endpoint>.+)-(?P<generation>[0-9]+)")
ENDPOINT_BUNDLE_RULE = "an endpoint whose last word is not a number (a '-<number>' suffix names the generation)"


class BundleError(StoreError):
    """A bundle cannot be written or read as it should: the message says which bundle and why."""


@dataclass(frozen=True)
class BundleKey:
    archive_prefix: str
    day: date
    endpoint: str
    generation: int

    @property
    def key(self) -> str:
        return bundle_key(self.archive_prefix, self.day, self.endpoint, self.generation)


@dataclass(frozen=True)
class Member:
    """One packed raw object. ``fetched_at`` is the loose object's last_modified (replay's capture time when the
    gzip header has none)."""

    key: str
    sha256: str
    size: int
    fetched_at: datetime


def bundle_key(archive_prefix: str, day: date, endpoint: str, generation: int = 1) -> str:
    """``tiklive-bundles/<archive prefix>/YYYY/MM/DD/<endpoint>[-<generation>].parquet`` (no suffix for 1)."""
    endpoint = check_endpoint(endpoint)
    if _GENERATION_RE.fullmatch(endpoint):
        raise InvalidKeyPart("endpoint", endpoint, ENDPOINT_BUNDLE_RULE)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        raise InvalidKeyPart("generation", generation, "a whole number from 1")
    if isinstance(day, datetime):
        day = day.date()
    suffix = "" if generation == 1 else f"-{generation}"
    return f"{BUNDLE_PREFIX}/{check_prefix(archive_prefix)}/{day:%Y/%m/%d}/{endpoint}{suffix}{BUNDLE_SUFFIX}"


def parse_bundle_key(key: str) -> BundleKey | None:
    """Inverse of :func:`bundle_key`, or None for any other key (a conflict copy, a foreign object)."""
    head = BUNDLE_PREFIX + "/"
    if not isinstance(key, str) or not key.startswith(head) or not key.endswith(BUNDLE_SUFFIX):
        return None
    parts = key[len(head) :].split("/")
    if len(parts) < 5:
        return None
    prefix, (year, month, dd), name = "/".join(parts[:-4]), parts[-4:-1], parts[-1][: -len(BUNDLE_SUFFIX)]
    match = _GENERATION_RE.fullmatch(name)
    endpoint, generation = (match["endpoint"], int(match["generation"])) if match else (name, 1)
    try:
        parsed = BundleKey(prefix, date(int(year), int(month), int(dd)), endpoint, generation)
        return parsed if parsed.key == key else None  # e.g. "<endpoint>-1" or "2026/5/29" are not made here
    except (ValueError, InvalidKeyPart):
        return None


def day_bundle_prefix(day: date, archive_prefix: str = RAW_PREFIX) -> str:
    return f"{BUNDLE_PREFIX}/{check_prefix(archive_prefix)}/{day:%Y/%m/%d}/"


def bundles_of_day(store: ObjectStore, day: date, archive_prefix: str = RAW_PREFIX) -> list[str]:
    """Every bundle key of the day, live and stale generations alike, sorted by (endpoint, generation).

    Readers want :func:`live_bundles_of_day` (the highest generation of each endpoint); an erasure must look at
    every generation, since a crash can leave a stale one behind until the next rewrite deletes it."""
    listed = (parse_bundle_key(info.key) for info in store.list(day_bundle_prefix(day, archive_prefix)))
    found = [p for p in listed if p is not None and p.archive_prefix == archive_prefix and p.day == day]
    return [p.key for p in sorted(found, key=lambda p: (p.endpoint, p.generation))]


def live_bundles_of_day(store: ObjectStore, day: date, archive_prefix: str = RAW_PREFIX) -> dict[str, str]:
    """endpoint -> key of its live bundle (the highest generation) for the day."""
    live: dict[str, str] = {}
    for key in bundles_of_day(store, day, archive_prefix):  # ascending generation: the last one wins
        parsed = parse_bundle_key(key)
        assert parsed is not None
        live[parsed.endpoint] = key
    return live


# -- reading --------------------------------------------------------------------------------------------------


class _StoreFile(io.RawIOBase):
    """A read-only, seekable file over one object whose every read is a ``read_range`` of the store."""

    def __init__(self, store: ObjectStore, key: str, size: int) -> None:
        super().__init__()
        self._store, self._key, self._size, self._pos = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        size = min(size, max(0, self._size - self._pos))
        if size == 0:
            return b""
        data = self._store.read_range(self._key, self._pos, size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)


def _open(store: ObjectStore, key: str) -> pq.ParquetFile:
    info = store.stat(key)
    if info is None:
        raise NotFound(key, store.describe())
    try:
        return pq.ParquetFile(_StoreFile(store, key, info.size))
    except (pa.ArrowException, OSError) as exc:
        raise BundleError(f"{store.describe()}: {key!r} is not a readable bundle ({exc})") from None


def _members(table: pa.Table) -> list[Member]:
    columns = [table.column(name).to_pylist() for name in INDEX_COLUMNS]
    return [Member(key, sha, size, fetched.astimezone(UTC)) for key, fetched, sha, size in zip(*columns, strict=True)]


def _group_range(meta: pq.FileMetaData, group: int) -> tuple[str, str] | None:
    stats = meta.row_group(group).column(0).statistics
    if stats is None or not stats.has_min_max:
        return None
    return str(stats.min), str(stats.max)


class Bundle:
    """A bundle read from the store: its members (from the footer and the index columns), and their bodies read
    a row group at a time when asked for (not thread-safe: one Bundle per thread)."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.key = key
        self._file = _open(store, key)
        self.members: list[Member] = _members(self._file.read(columns=INDEX_COLUMNS))
        self._by_key = {m.key: m for m in self.members}
        self._groups: list[tuple[int, int]] = []  # (first row, rows) of each row group
        start = 0
        for group in range(self._file.metadata.num_row_groups):
            rows = self._file.metadata.row_group(group).num_rows
            self._groups.append((start, rows))
            start += rows
        self._starts = [first for first, _ in self._groups]
        self._row = {m.key: row for row, m in enumerate(self.members)}
        self._cached: tuple[int, list[bytes]] | None = None

    def __contains__(self, raw_key: object) -> bool:
        return raw_key in self._by_key

    def __len__(self) -> int:
        return len(self.members)

    def _bodies(self, group: int) -> list[bytes]:
        if self._cached is None or self._cached[0] != group:
            bodies = self._file.read_row_group(group, columns=["body"]).column(0).to_pylist()
            self._cached = (group, bodies)
        return self._cached[1]

    def body(self, raw_key: str) -> bytes:
        """The member's exact gzip bytes; KeyError if the bundle does not hold ``raw_key``."""
        row = self._row[raw_key]
        group = bisect.bisect_right(self._starts, row) - 1
        return self._bodies(group)[row - self._groups[group][0]]

    def __iter__(self) -> Iterator[tuple[Member, bytes]]:
        """Every (member, bytes) in key order, one row group in memory at a time."""
        for group, (first, rows) in enumerate(self._groups):
            bodies = self._file.read_row_group(group, columns=["body"]).column(0).to_pylist()
            yield from zip(self.members[first : first + rows], bodies, strict=True)

    @property
    def row_groups(self) -> int:
        return len(self._groups)

    @property
    def metadata(self) -> pq.FileMetaData:
        return self._file.metadata


def iter_members(
    store: ObjectStore, bundle_key: str, *, threads: int = 1, ahead: int = 1
) -> Iterator[tuple[Member, bytes]]:
    """Every (member, bytes) of a bundle in key order, its row groups fetched by up to ``threads`` parallel
    ranged reads (at most ``ahead`` row groups per thread fetched and not yet handed on, about 1 MiB each): the
    read path for a remote store, where each read waits on the network."""
    bundle = Bundle(store, bundle_key)
    if threads <= 1 or bundle.row_groups <= 1:
        yield from bundle
        return
    info = store.stat(bundle_key)
    size = info.size if info else 0
    meta = bundle.metadata

    def fetch(group: int) -> list[bytes]:
        file = pq.ParquetFile(_StoreFile(store, bundle_key, size), metadata=meta)  # no second footer read
        return list(file.read_row_group(group, columns=["body"]).column(0).to_pylist())

    groups = bounded_map(
        fetch, range(bundle.row_groups), workers=threads, in_flight=threads * ahead, ordered=True,
        thread_name_prefix="bundle-get",
    )  # fmt: skip
    for (first, rows), bodies in zip(bundle._groups, groups, strict=True):
        yield from zip(bundle.members[first : first + rows], bodies, strict=True)


def read_bundle(store: ObjectStore, bundle_key: str) -> Bundle:
    return Bundle(store, bundle_key)


def read_index(store: ObjectStore, bundle_key: str) -> list[Member]:
    """The members of a bundle, in key order: the footer and the index columns only, no body is read."""
    return _members(_open(store, bundle_key).read(columns=INDEX_COLUMNS))


def read_member(store: ObjectStore, bundle_key: str, raw_key: str) -> bytes:
    """One member's exact bytes, by ranged reads of the footer and of the row group holding it (found by the
    key column's min/max statistics, the offset index); KeyError if the bundle does not hold it."""
    file = _open(store, bundle_key)
    meta = file.metadata
    for group in range(meta.num_row_groups):
        bounds = _group_range(meta, group)
        if bounds is not None and not bounds[0] <= raw_key <= bounds[1]:
            continue
        table = file.read_row_group(group, columns=["key", "body"])
        keys = table.column(0).to_pylist()
        if raw_key in keys:
            return bytes(table.column(1)[keys.index(raw_key)].as_py())
    raise KeyError(raw_key)


# -- writing --------------------------------------------------------------------------------------------------


def write_bundle(store: ObjectStore, bundle_key: str, items: Iterable[tuple[Member, bytes]]) -> PutResult:
    """Write a bundle atomically (one ``put_file`` of a finished local Parquet file), members sorted by key.

    Every member's size and sha256 must match its bytes, and a key may appear once: else ValueError and nothing is
    written. Writing the same members again is ``identical``; a key already holding a different bundle is refused
    (BundleError; the store's conflict copy is removed): a rewrite is a new generation."""
    if parse_bundle_key(bundle_key) is None:
        raise InvalidKeyPart("bundle key", bundle_key, "a key made by bundle_key()")
    ordered = sorted(items, key=lambda item: item[0].key)
    for previous, (member, body) in zip([None, *ordered], ordered, strict=False):
        if previous is not None and previous[0].key == member.key:
            raise ValueError(f"{bundle_key}: member {member.key!r} is given twice")
        if len(body) != member.size or hashlib.sha256(body).hexdigest() != member.sha256:
            raise ValueError(f"{bundle_key}: the bytes of member {member.key!r} do not match its size and sha256")
    with tempfile.TemporaryDirectory(prefix="tiklive-bundle-") as scratch:
        path = os.path.join(scratch, "bundle.parquet")
        _write_parquet(path, ordered)
        result = store.put_file(path=path, key=bundle_key, content_type=BUNDLE_CONTENT_TYPE)
    if result.status == "conflict":
        if result.conflict_key:
            store.delete(result.conflict_key)
        raise BundleError(
            f"{store.describe()}: {bundle_key!r} already holds a different bundle; a rewrite goes to the next "
            "generation, never over an existing one"
        )
    return result


def _write_parquet(path: str, ordered: list[tuple[Member, bytes]]) -> None:
    with pq.ParquetWriter(
        path,
        SCHEMA,
        compression={"key": "zstd", "fetched_at": "zstd", "sha256": "zstd", "size": "zstd", "body": "none"},
        use_dictionary=False,
        write_statistics=["key"],
    ) as writer:
        start = 0
        while start < len(ordered) or (start == 0 and not ordered):
            end, group_bytes = start, 0
            while end < len(ordered) and (end == start or group_bytes + ordered[end][0].size <= ROW_GROUP_BYTES):
                group_bytes += ordered[end][0].size
                end += 1
            batch = ordered[start:end]
            table = pa.table(
                {
                    "key": [m.key for m, _ in batch],
                    "fetched_at": [m.fetched_at for m, _ in batch],
                    "sha256": [m.sha256 for m, _ in batch],
                    "size": [m.size for m, _ in batch],
                    "body": [b for _, b in batch],
                },
                schema=SCHEMA,
            )
            writer.write_table(table, row_group_size=max(1, len(batch)))
            if not ordered:
                break
            start = end


# -- the read path of a day -----------------------------------------------------------------------------------


def _raw_day_prefix(day: date, archive_prefix: str) -> str:
    return f"{check_prefix(archive_prefix)}/{day:%Y/%m/%d}/"


def day_objects(
    store: ObjectStore, day: date, archive_prefix: str = RAW_PREFIX
) -> Iterator[tuple[str, bytes, datetime]]:
    """(raw key, gzip bytes, fetched_at) of every loose and bundled raw object of the day, in key order, each key
    once: a key both loose and in the live bundle (mid-compaction: the bytes were verified equal) comes from the
    bundle, and a loose object is only read when no bundle holds it."""
    loose = (
        (info.key, 1, info.last_modified, None)
        for info in store.list(_raw_day_prefix(day, archive_prefix))
        if RAW_SUFFIX in info.key
    )
    sources: list[Iterator[tuple[str, int, datetime, bytes | None]]] = [loose]
    for key in live_bundles_of_day(store, day, archive_prefix).values():
        sources.append((m.key, 0, m.fetched_at, body) for m, body in read_bundle(store, key))
    last: str | None = None
    for raw, _, fetched_at, body in heapq.merge(*sources, key=lambda item: (item[0], item[1])):
        if raw == last:
            continue
        last = raw
        if body is None:
            try:
                body = store.get_bytes(raw)
            except NotFound:  # packed and deleted since the listing, or erased: read it from its bundle if any
                holder = locate(store, raw)
                if holder is None:
                    continue
                body = read_member(store, holder, raw)
        yield raw, body, fetched_at


def locate(store: ObjectStore, raw_key: str) -> str | None:
    """The live bundle holding ``raw_key`` (a raw key or a conflict copy of either API), or None: loose or absent."""
    for prefix in (RAW_PREFIX, RESEARCH_PREFIX):
        parts = split_raw_key(raw_key, prefix)
        if parts is None or parts.day is None:
            continue
        try:
            holder = live_bundles_of_day(store, parts.day, prefix).get(parts.endpoint)
        except InvalidKeyPart:
            return None
        if holder is None:
            return None
        return holder if any(m.key == raw_key for m in read_index(store, holder)) else None
    return None

"""The archive index exported beside the archive, so erasure works without the warehouse.

One Parquet object per archive day, ``index/user-ids/day=YYYY-MM-DD/part.parquet``, written whole by one put
(a reader sees the old part or the new one; between the delete and the put of a replacement there is none, and
an erasure then scans that day instead). A part holds the day's index rows keyed for lookup: one row per
reference (``ref`` is ``id:<user id>``, ``handle:<handle>`` or ``post:<aweme_id>``) with the object's ``key``,
its ``role`` and ``aweme_id``, sorted by ``ref`` in small row groups, so a lookup reads only the row groups whose
``ref`` range can hold what it looks for (the footer's statistics say which).

The part of a day is a pure function of that day's archive: ``tiklive-raw/``, ``research-raw/`` and ``videos/``
objects (what :mod:`.archive_index` records). Covers are found by the day and post their media name.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tiklive_assets.storage import LocalStore, NotFound, ObjectStore
from tiklive_assets.storage.keys import COVERS_PREFIX, RAW_PREFIX, RAW_SUFFIX, RESEARCH_PREFIX, VIDEOS_PREFIX

from .archive_index import IndexRows, Row, body_rows, key_rows, mention_rows
from .raw import UnreadableObject, inflate, loads, raw_day_prefix

INDEX_PREFIX = "index/user-ids/"
PART_NAME = "part.parquet"
ROW_GROUP = 4096
SCHEMA = pa.schema([("ref", pa.string()), ("key", pa.string()), ("role", pa.string()), ("aweme_id", pa.string())])
ARCHIVE_PREFIXES = (f"{RAW_PREFIX}/", f"{RESEARCH_PREFIX}/", VIDEOS_PREFIX, COVERS_PREFIX)


def part_key(day: date) -> str:
    return f"{INDEX_PREFIX}day={day.isoformat()}/{PART_NAME}"


def refs_of(user_id: str | None, handles: Iterable[str] = (), aweme_ids: Iterable[str] = ()) -> list[str]:
    """The lookup refs of a user (their id and handles) and of posts."""
    refs = [f"id:{user_id}"] if user_id else []
    refs += [f"handle:{h.lstrip('@').lower()}" for h in handles]
    refs += [f"post:{a}" for a in aweme_ids]
    return sorted(set(refs))


def export_table(rows: Iterable[Row]) -> pa.Table:
    """Index rows (user_id, handle, key, role, aweme_id) -> the part's lookup rows, sorted."""
    out: set[tuple[str, str, str, str]] = set()
    for uid, handle, key, role, aweme in rows:
        if uid:
            out.add((f"id:{uid}", key, role, aweme))
        if handle:
            out.add((f"handle:{handle}", key, role, aweme))
        if aweme:
            out.add((f"post:{aweme}", key, role, aweme))
    ordered = sorted(out)
    return pa.table([pa.array([r[i] for r in ordered], pa.string()) for i in range(4)], schema=SCHEMA)


def encode_part(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP, write_statistics=["ref"])
    return buffer.getvalue()


def write_part(store: ObjectStore, day: date, table: pa.Table) -> str:
    """Put the day's part (replacing a different one: delete, then one atomic put). Returns its key."""
    key = part_key(day)
    data = encode_part(table)
    if read_part_bytes(store, day) not in (None, data):  # the store never overwrites: replace it
        store.delete(key)
    store.put_bytes(key, data, content_type="application/vnd.apache.parquet")
    return key


def research_rows(store: ObjectStore, day: date) -> IndexRows:
    """The index rows of the day's Research API objects (``research-raw/YYYY/MM/DD/``)."""
    rows = IndexRows(day)
    head = len(RESEARCH_PREFIX) + 12
    for info in store.list(raw_day_prefix(day, RESEARCH_PREFIX)):
        if RAW_SUFFIX not in info.key:
            continue
        key_rows(info.key, rows.add)
        try:
            text = inflate(store.get_bytes(info.key))
            mention_rows(info.key, text, rows.add)
            body_rows(info.key, info.key[head:].partition("/")[0], loads(text), rows.add)
        except UnreadableObject:
            continue
    return rows


def day_part(store: ObjectStore, day: date, warehouse_rows: pa.Table) -> pa.Table:
    """The exported part of ``day``: the warehouse's ``archive_index`` rows of the day plus its Research objects."""
    columns = ["user_id", "handle", "key", "role", "aweme_id"]
    rows: list[Row] = list(zip(*(warehouse_rows.column(c).to_pylist() for c in columns), strict=True))
    return export_table([*rows, *research_rows(store, day).rows])


@dataclass
class IndexHits:
    """What a lookup found: (key, role, aweme_id) by ref, the days read, and the bytes read."""

    rows: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    parts_read: int = 0
    bytes_read: int = 0

    def keys(self) -> set[str]:
        return {key for hits in self.rows.values() for key, _role, _aweme in hits}


def read_part_bytes(store: ObjectStore, day: date) -> bytes | None:
    try:
        return store.get_bytes(part_key(day))
    except NotFound:
        return None


def lookup(parts: dict[date, bytes], refs: Iterable[str], hits: IndexHits | None = None) -> IndexHits:
    """Rows for ``refs`` from already-read parts, reading only the row groups whose ref range can hold one."""
    hits = hits or IndexHits()
    wanted = sorted(set(refs))
    if not wanted:
        return hits
    values = pa.array(wanted, pa.string())
    for data in parts.values():
        parquet = pq.ParquetFile(io.BytesIO(data))
        groups = [g for g in range(parquet.num_row_groups) if _may_hold(parquet.metadata.row_group(g), wanted)]
        if not groups:
            continue
        table = parquet.read_row_groups(groups)
        table = table.filter(pc.is_in(table["ref"], value_set=values))
        for ref, key, role, aweme in zip(*(table.column(i).to_pylist() for i in range(4)), strict=True):
            hits.rows.setdefault(ref, set()).add((key, role, aweme))
    return hits


def _may_hold(group: pq.RowGroupMetaData, wanted: list[str]) -> bool:
    stats = group.column(0).statistics
    if stats is None or not stats.has_min_max:
        return True
    low, high = stats.min, stats.max
    return any(low <= ref <= high for ref in wanted)


def archive_days(store: ObjectStore, today: date | None = None) -> list[date]:
    """Every day holding archived objects (raw, Research, media or covers), without listing the objects: a local
    store's day directories, else one short listing per day from the first archived day to today."""
    if isinstance(store, LocalStore):
        return sorted(set(_local_days(store)))
    today = today or datetime.now(UTC).date()
    firsts = [d for prefix in ARCHIVE_PREFIXES if (d := _first_day(store, prefix)) is not None]
    if not firsts:
        return []
    days = []
    day = min(firsts)
    while day <= today:
        if any(next(iter(store.list(p)), None) is not None for p in day_prefixes(day)):
            days.append(day)
        day += timedelta(days=1)
    return days


def day_prefixes(day: date) -> list[str]:
    return [
        raw_day_prefix(day, RAW_PREFIX),
        raw_day_prefix(day, RESEARCH_PREFIX),
        f"{VIDEOS_PREFIX}dt={day.isoformat()}/",
        f"{COVERS_PREFIX}dt={day.isoformat()}/",
    ]


def _first_day(store: ObjectStore, prefix: str) -> date | None:
    from tiklive_assets.storage.keys import day_of_key

    for info in store.list(prefix):
        found = day_of_key(info.key)
        if found is not None:
            return found
    return None


def _local_days(store: LocalStore) -> Iterator[date]:
    root = str(store.root)
    for prefix in (RAW_PREFIX, RESEARCH_PREFIX):
        base = os.path.join(root, prefix)
        for year in _dirs(base):
            for month in _dirs(os.path.join(base, year)):
                for day in _dirs(os.path.join(base, year, month)):
                    found = _date(f"{year}-{month}-{day}")
                    if found is not None and any(_dirs(os.path.join(base, year, month, day))):
                        yield found
    for prefix in (VIDEOS_PREFIX, COVERS_PREFIX):
        base = os.path.join(root, prefix.rstrip("/"))
        for name in _dirs(base):
            found = _date(name.removeprefix("dt="))
            if name.startswith("dt=") and found is not None:
                yield found


def _dirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as scan:
            return [e.name for e in scan if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


__all__ = [
    "INDEX_PREFIX",
    "SCHEMA",
    "IndexHits",
    "archive_days",
    "day_part",
    "day_prefixes",
    "encode_part",
    "export_table",
    "lookup",
    "part_key",
    "prune_part",
    "read_part_bytes",
    "refs_of",
    "research_rows",
    "write_part",
]


def prune_part(data: bytes, refs: Iterable[str], keys: Iterable[str]) -> pa.Table | None:
    """The part without the rows of ``refs`` (an erased user, their posts) and of ``keys`` (objects erased), or
    None when it has none of them. Other users' rows of a redacted object stay: it still refers to them."""
    table = pq.read_table(io.BytesIO(data))
    drop = pc.or_(
        pc.is_in(table["ref"], value_set=pa.array(sorted(set(refs)), pa.string())),
        pc.is_in(table["key"], value_set=pa.array(sorted(set(keys)), pa.string())),
    )
    if not pc.any(drop).as_py():
        return None
    return table.filter(pc.invert(drop))

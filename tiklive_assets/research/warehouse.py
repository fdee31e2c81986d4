"""Research API tables, derived only from the ``research-raw/`` archive (so ``tiklive replay`` rebuilds them).

Knows nothing of the client: it lists archived objects, parses their keys and bodies, and replaces the research
tables (declared in :mod:`tiklive_assets.warehouse.schema` beside the others, loaded by the same backends) in the
main warehouse file (``TIKLIVE_HOME/warehouse.duckdb``) or a Postgres database given by URL:

- ``research_videos``: one row per video ``id`` (the fields the video query asks for), values of its latest capture;
- ``research_video_counters``: the counters (views, likes, comments, shares) per video per capture day
  (the ingest date of the archived page), the history re-collections build up (replaced generations' pages
  count as captures too; one row per video and day);
- ``research_users``: user info per username per capture day;
- ``research_follows``: follower / following edges per capture day;
- ``research_comments``: one row per comment ``id`` (``--with-comments``), values of its latest capture.

Ids (video, music, playlist, comment, parent) are TEXT from the JSON integer as parsed (``json.loads`` keeps
every digit) and never pass through a float: a float keeps 15-17 digits and TikTok ids have 19. NUL characters,
which Postgres rejects in TEXT, are stripped and counted (``nul_stripped``); a missing or unreadable per-item
field becomes NULL and is counted (``nulled``).

Window-level idempotency: pages are grouped by (query hash, window); the latest *complete* generation of a
window (one that reached ``has_more: false``) replaces every earlier generation, and a later incomplete one
(a restart still in progress) adds to it. A video is a row once, however many windows, queries, restarts or
re-fetches saw it. Conflict copies and error responses in the archive are skipped.
"""

from __future__ import annotations

import builtins
import gzip
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from tiklive_assets import settings
from tiklive_assets.research.endpoints import BY_ARCHIVE, USER_FOLLOWERS
from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.keys import (
    COMMENT_PAGE_SLUG,
    RESEARCH_PREFIX,
    USER_PAGE_SLUG,
    InvalidKeyPart,
    RawKey,
    check_handle,
    parse_raw_key,
    parse_video_slug,
)
from tiklive_assets.tolerant import Tally, epoch_seconds, post_id, strip_nul
from tiklive_assets.warehouse.backends import is_postgres, open_warehouse
from tiklive_assets.warehouse.schema import (
    RESEARCH_COMMENTS,
    RESEARCH_TABLES,
    RESEARCH_USERS,
    RESEARCH_VIDEO_COUNTERS,
    RESEARCH_VIDEOS,
    Table,
)

log = logging.getLogger(__name__)

COUNTERS = ("view_count", "like_count", "comment_count", "share_count")


@dataclass
class ResearchLoadReport:
    objects_read: int = 0
    objects_skipped: int = 0
    pages_used: int = 0
    pages_superseded: int = 0  # pages of generations a later complete generation replaced
    rows: dict[str, int] = field(default_factory=dict)
    nul_stripped: int = 0  # NUL characters removed from text (Postgres rejects them)
    nulled: dict[str, int] = field(default_factory=dict)  # per field: values present but unreadable, made NULL
    target: str = ""


@dataclass(frozen=True)
class _Page:
    key: str
    day: date
    generation: int
    cursor: int
    data: dict[str, Any]


def _read(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        body = json.loads(gzip.decompress(store.get_bytes(key)))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable archived object (%s); skipped", key, exc)
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error") or {}
    if (error.get("code", "ok") if isinstance(error, dict) else error) != "ok":
        return None
    data = body.get("data")
    return data if isinstance(data, dict) else None


class _Reader:
    """Tolerant field reads for one load: ids as text, NULs stripped and counted, unreadable values nulled."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.nul = 0

    def text(self, value: Any, name: str) -> str | None:
        text = self.tally.text(value, name)
        if text is None:
            return None
        text, n = strip_nul(text)
        self.nul += n
        return text

    def id(self, value: Any, name: str) -> str | None:
        return self.tally.id(value, name)

    def int(self, value: Any, name: str) -> int | None:
        return self.tally.int(value, name)

    def json_list(self, value: Any, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.tally.nulled[name] += 1
            return None
        return json.dumps([self.text(v, name) if isinstance(v, str) else v for v in value], ensure_ascii=False)

    def epoch(self, value: Any, name: str) -> builtins.int | None:  # builtins: the method above shadows int here
        result = epoch_seconds(value)
        if result is None and value is not None:
            self.tally.nulled[name] += 1
        return result

    def bool(self, value: Any, name: str) -> builtins.bool | None:
        return self.tally.bool(value, name)


def _handle(slug: str) -> str | None:
    try:
        return check_handle(slug)
    except InvalidKeyPart:
        return None


# how each research table's archive folder names its objects: the slug, parsed (None: not a data object)
_SLUGS: dict[str, Callable[[str], Any]] = {
    "research_videos": parse_video_slug,
    "research_users": _handle,
    "research_follows": USER_PAGE_SLUG.fullmatch,
    "research_comments": COMMENT_PAGE_SLUG.fullmatch,
}


class _Archive:
    """What one pass over ``research-raw/`` found, grouped the way the tables are built from it."""

    def __init__(self, reader: _Reader) -> None:
        self.r = reader
        self.windows: dict[tuple[str, str], dict[int, list[_Page]]] = defaultdict(lambda: defaultdict(list))
        self.users: dict[tuple[str, date], tuple[dict, str]] = {}
        self.follows: set[tuple] = set()
        self.comments: dict[str, tuple[tuple, dict, str, date]] = {}  # comment id -> (order, comment, key, day)

    def add(self, table: str, raw: RawKey, key: str, slug: Any, data: dict[str, Any]) -> None:
        if table == "research_videos":
            page = _Page(key, raw.day, slug.generation, slug.cursor, data)
            self.windows[(slug.qhash, slug.window.key)][slug.generation].append(page)
        elif table == "research_users":
            self.users[(slug, raw.day)] = (data, key)
        elif table == "research_follows":
            self._add_follows(raw, slug["username"], data)
        else:
            order: tuple = (raw.day, int(slug["cursor"]), key)
            for comment in data.get("comments") or []:
                cid = self.r.id(comment.get("id"), "comment.id") if isinstance(comment, dict) else None
                if cid is not None and (cid not in self.comments or order > self.comments[cid][0]):
                    self.comments[cid] = (order, comment, key, raw.day)

    def _add_follows(self, raw: RawKey, username: str, data: dict[str, Any]) -> None:
        endpoint = BY_ARCHIVE[raw.endpoint]
        direction = "follower" if endpoint is USER_FOLLOWERS else "following"
        for person in data.get(endpoint.items or "") or []:
            other = self.r.text(person.get("username"), "follow.username") if isinstance(person, dict) else None
            if other:
                display = self.r.text(person.get("display_name"), "follow.display_name")
                self.follows.add((username, direction, other, display, raw.day))


def _scan(store: ObjectStore, prefix: str, report: ResearchLoadReport, r: _Reader) -> _Archive:
    found = _Archive(r)
    for info in store.list(prefix + "/"):
        try:
            raw = parse_raw_key(info.key, prefix)
        except InvalidKeyPart:  # conflict copies and anything foreign
            report.objects_skipped += 1
            continue
        endpoint = BY_ARCHIVE.get(raw.endpoint)
        table = endpoint.parse if endpoint is not None else None
        parse_slug = _SLUGS.get(table or "")
        slug = parse_slug(raw.slug) if parse_slug is not None else None
        data = _read(store, info.key) if slug is not None else None  # an error response has no data slug
        if data is None:
            report.objects_skipped += 1
            continue
        found.add(str(table), raw, info.key, slug, data)
        report.objects_read += 1
    return found


def _videos(found: _Archive, report: ResearchLoadReport) -> tuple[dict, dict, dict]:
    """The latest capture of each current video, its first capture day, and the latest counters per capture day.

    Per (query, window), the latest complete generation (its first page there, and a page that ended the search)
    replaces the earlier ones; counters are observations, kept from every generation."""
    latest: dict[str, tuple[tuple, dict, str, date]] = {}  # id (text) -> (order, video, key, day)
    first_seen: dict[str, date] = {}
    counters: dict[tuple[str, date], tuple[tuple, dict, str]] = {}
    for generations in found.windows.values():
        complete = [
            g
            for g, pages in generations.items()
            if any(p.cursor == 0 for p in pages) and any(not p.data.get("has_more") for p in pages)
        ]
        floor = max(complete) if complete else min(generations)
        for generation, pages in generations.items():
            superseded = generation < floor
            report.pages_superseded += len(pages) if superseded else 0
            report.pages_used += 0 if superseded else len(pages)
            for page in pages:
                order = (page.day, page.generation, page.cursor, page.key)
                for video in page.data.get("videos") or []:
                    vid = post_id(video)  # "id" on the wire ("video_id" in TikTok's docs), as text
                    if vid is None:
                        continue
                    ck = (vid, page.day)
                    if ck not in counters or order > counters[ck][0]:
                        counters[ck] = (order, video, page.key)
                    first_seen[vid] = min(first_seen.get(vid, page.day), page.day)
                    if not superseded and (vid not in latest or order > latest[vid][0]):
                        latest[vid] = (order, video, page.key, page.day)
    return latest, first_seen, counters


def _by_id(item: tuple[Any, ...]) -> tuple[int, Any]:
    """Ids in numeric order without converting them: shorter first, then as text."""
    key = item[0]
    text = key[0] if isinstance(key, tuple) else key
    return (len(text), key)


# how each research table reads its wire fields (named as its columns); the other columns come from the archive
_READS: dict[str, dict[str, str]] = {
    "research_videos": {
        **dict.fromkeys(("username", "video_description", "region_code", "voice_to_text"), "text"),
        **dict.fromkeys(("music_id", "playlist_id"), "id"),
        **dict.fromkeys(("hashtag_names", "effect_ids"), "json_list"),
        **dict.fromkeys(COUNTERS, "int"),
    },
    "research_video_counters": dict.fromkeys(COUNTERS, "int"),
    "research_users": {
        **dict.fromkeys(("display_name", "bio_description", "avatar_url"), "text"),
        "is_verified": "bool",
        **dict.fromkeys(("follower_count", "following_count", "likes_count", "video_count"), "int"),
    },
    "research_comments": {
        **dict.fromkeys(("video_id", "parent_comment_id"), "id"),
        "text": "text",
        **dict.fromkeys(("like_count", "reply_count"), "int"),
        "create_time": "epoch",
    },
}
_SUBJECT = {
    "research_videos": "video",
    "research_video_counters": "video",
    "research_users": "user",
    "research_comments": "comment",
}


def _row(r: _Reader, table: Table, record: dict, known: dict[str, Any]) -> tuple:
    """``table``'s row: ``known`` columns as given, the others read from ``record`` (tolerantly, counted under
    ``<subject>.<column>``)."""
    reads, subject = _READS[table.name], _SUBJECT[table.name]
    return tuple(
        known[c] if c in known else getattr(r, reads[c])(record.get(c), f"{subject}.{c}") for c in table.column_names
    )


def _rows(found: _Archive, report: ResearchLoadReport) -> dict[str, list[tuple]]:
    r = found.r
    latest, first_seen, counters = _videos(found, report)
    rows: dict[str, list[tuple]] = {table.name: [] for table in RESEARCH_TABLES}
    for vid, (_order, v, key, day) in sorted(latest.items(), key=_by_id):
        ct = r.epoch(v.get("create_time"), "video.create_time")
        created = datetime.fromtimestamp(ct, UTC).date() if ct is not None else None
        known = {"id": vid, "create_time": ct, "create_date": created, "source_key": key}
        known |= {"first_captured_on": first_seen[vid], "last_captured_on": day}
        rows["research_videos"].append(_row(r, RESEARCH_VIDEOS, v, known))
    for (vid, day), (_order, v, key) in sorted(counters.items(), key=_by_id):
        if vid in latest:  # seen only in a replaced generation (e.g. deleted since): not a current video
            known = {"id": vid, "captured_on": day, "source_key": key}
            rows["research_video_counters"].append(_row(r, RESEARCH_VIDEO_COUNTERS, v, known))
    for (username, day), (d, key) in sorted(found.users.items()):
        known = {"username": username, "captured_on": day, "source_key": key}
        rows["research_users"].append(_row(r, RESEARCH_USERS, d, known))
    rows["research_follows"] = sorted(found.follows, key=lambda row: (row[0], row[1], row[2], row[4]))
    for cid, (_order, c, key, day) in sorted(found.comments.items(), key=_by_id):
        known = {"id": cid, "captured_on": day, "source_key": key}
        rows["research_comments"].append(_row(r, RESEARCH_COMMENTS, c, known))
    return rows


def build_rows(store: ObjectStore, prefix: str = RESEARCH_PREFIX) -> tuple[dict[str, list[tuple]], ResearchLoadReport]:
    """Every table's rows from the archive alone (pure: no database touched)."""
    report = ResearchLoadReport()
    r = _Reader()
    rows = _rows(_scan(store, prefix, report, r), report)
    report.rows = {name: len(rs) for name, rs in rows.items()}
    report.nul_stripped = r.nul
    report.nulled = dict(r.tally.nulled)
    if r.nul:
        log.info("research tables: %d NUL characters stripped from text (Postgres rejects them)", r.nul)
    return rows, report


def _arrow(table: Table, rows: list[tuple]) -> pa.Table:
    schema = table.arrow_schema
    if not rows:
        return schema.empty_table()
    columns = zip(*rows, strict=True)
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def load_research_warehouse(
    store: ObjectStore, target: str | Path | None = None, prefix: str = RESEARCH_PREFIX
) -> ResearchLoadReport:
    """Rebuild the research tables from the archive into DuckDB (a path) or Postgres (a ``postgresql://`` URL).

    Replaces the tables' contents in one transaction: running it twice, or after ``tiklive replay`` wiped the
    warehouse, gives the same rows. ``target`` defaults to the main warehouse (``TIKLIVE_WAREHOUSE_URL``, else
    ``TIKLIVE_HOME/warehouse.duckdb``)."""
    text = str(target) if target is not None else settings.warehouse_url()
    rows, report = build_rows(store, prefix)
    with open_warehouse(text) as warehouse:
        warehouse.replace_tables(RESEARCH_TABLES, {t.name: _arrow(t, rows[t.name]) for t in RESEARCH_TABLES})
    report.target = "postgresql" if is_postgres(text) else text
    return report


def videos_per_user(
    target: str | Path | None = None,
    start: date | None = None,
    end: date | None = None,
    usernames: list[str] | None = None,
) -> dict[str, int]:
    """Videos in ``research_videos`` per username, created from ``start`` to ``end`` (inclusive)."""
    sql = "SELECT username, COUNT(*) FROM research_videos WHERE 1=1"
    params: list[Any] = []
    for bound, op in ((start, ">="), (end, "<=")):
        if bound is not None:
            sql += f" AND create_date {op} ?"
            params.append(bound)
    with open_warehouse(str(target) if target is not None else settings.warehouse_url(), read_only=True) as wh:
        counts = {str(k): int(v) for k, v in wh.query(sql + " GROUP BY username ORDER BY username", params)}
    if usernames is not None:
        return {u: counts.get(u, 0) for u in usernames}
    return counts


__all__ = ["ResearchLoadReport", "build_rows", "load_research_warehouse", "videos_per_user"]

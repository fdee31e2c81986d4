"""Parsers: archived raw objects of one day -> the warehouse's Arrow tables. The archive is the only input.

``DayParser.add(info, gz_bytes)`` takes one object of ``tiklive-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz`` (and
``add_video(info)`` one ``videos/dt=…/author=…/<id>.mp4``); ``tables()`` returns one ``pyarrow.Table`` per
warehouse table with the schema of :mod:`tiklive_assets.warehouse.schema`, rows sorted by key, so the same
objects always give the same tables. Parsers merge (``merge``), so a day can be parsed in several processes.

Choices that make the result a pure function of the objects:

* ``captured_at`` is the fetch time the raw archive wrote into the gzip header (so it survives copies and
  restores of the archive); objects without one fall back to the object's ``last_modified``. ``dt`` is the day in
  the key.
* Within a day, an entity seen several times keeps the best-ranked sighting: /post-detail/ over a listing item,
  then the latest ``captured_at``, then the greatest key (a total order, whatever the reading order).
* Copies kept beside (``<key>.conflict-<sha>``: the same request captured again, with different bytes) are parsed
  as further captures at their own ``last_modified``, and counted in the credits ledger (each was a paid response).
* Responses archived with a non-200 status (slug ``…-http404``) are never parsed as data; a /post-detail/ 404
  is a dead letter whose reason is the API's error message.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from tiklive_assets.storage import ObjectInfo
from tiklive_assets.storage.keys import RAW_PREFIX, RAW_SUFFIX, parse_page_slug

from . import schema

CONFLICT_MARKER = ".conflict-"
LISTING_ENDPOINTS = frozenset({"user-posts", "challenge-posts", "search-video", "music-posts"})
PROFILE_ENDPOINTS = frozenset({"userinfo-by-id", "userinfo-by-username"})
FOLLOW_ENDPOINTS = {"user-followers": ("followers", "follower"), "user-following": ("followings", "following")}
COMMENT_ENDPOINTS = frozenset({"post-comments", "post-comment-replies"})
_STATUS_RE = re.compile(r"-http(\d{3})$")
_HASHTAG_RE = re.compile(r"#(\w+)", re.UNICODE)
_DETAIL, _LISTING = 2, 1


class UnreadableObject(ValueError):
    """An archived object that is not gzip JSON of the expected shape; the replay skips it and reports it."""


def raw_day_prefix(day: date, prefix: str = RAW_PREFIX) -> str:
    return f"{prefix}/{day:%Y/%m/%d}/"


def video_day_prefix(day: date) -> str:
    return f"videos/dt={day.isoformat()}/"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def fetched_micros(gz: bytes) -> int:
    """The fetch time the raw archive put in the gzip header (MTIME, whole seconds), or 0 when absent."""
    if len(gz) >= 8 and gz[:2] == b"\x1f\x8b":
        return int.from_bytes(gz[4:8], "little") * 1_000_000
    return 0


def micros(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch (how rows carry ``captured_at``)."""
    return (moment - _EPOCH) // _MICROSECOND


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def decode(gz: bytes) -> Any:
    """gzip JSON -> Python, through zlib directly (faster than gzip.decompress on many small objects)."""
    try:
        return json.loads(zlib.decompress(gz, 31))
    except zlib.error:
        try:
            return json.loads(gzip.decompress(gz))  # multi-member gzip, just in case
        except (OSError, EOFError, ValueError) as exc:
            raise UnreadableObject(f"not gzip: {exc}") from None
    except ValueError as exc:
        raise UnreadableObject(f"not JSON: {exc}") from None


@dataclass
class DayParser:
    """Accumulates one day's rows; see the module docstring for the ranking rules."""

    day: date
    prefix: str = RAW_PREFIX
    objects: int = 0
    errors: list[str] = field(default_factory=list)
    _posts: dict = field(default_factory=dict)
    _users: dict = field(default_factory=dict)
    _snapshots: dict = field(default_factory=dict)
    _metrics: dict = field(default_factory=dict)
    _comments: dict = field(default_factory=dict)
    _edges: dict = field(default_factory=dict)
    _music: dict = field(default_factory=dict)
    _dead: dict = field(default_factory=dict)
    _credits: dict = field(default_factory=dict)
    _videos: dict = field(default_factory=dict)

    # -- input --

    def add(self, info: ObjectInfo, gz: bytes) -> None:
        """Parse one archived response (the bytes of ``info.key``, still gzip-compressed)."""
        key = info.key
        self.objects += 1
        head = len(self.prefix) + 12  # "tiklive-raw/" + "YYYY/MM/DD/"
        endpoint, _, name = key[head:].partition("/")
        conflict = name.find(CONFLICT_MARKER)
        if conflict >= 0:
            name = name[:conflict]
        slug = name.removesuffix(RAW_SUFFIX)
        status = 200
        if slug[-8:-3] == "-http":
            match = _STATUS_RE.search(slug)
            if match:
                status = int(match[1])
                slug = slug[: match.start()]
        counted = self._credits.get((endpoint, status))
        self._credits[(endpoint, status)] = (counted[0] + 1, counted[1] + info.size) if counted else (1, info.size)
        # A copy kept beside (``.conflict-<sha>``) is the same request captured again with new bytes (a sensor poll,
        # a re-resolved expired URL): a real response, parsed as one more capture at its own last_modified.
        try:
            body = decode(gz)
            captured = fetched_micros(gz) or micros(info.last_modified)
            if status != 200:
                if status == 404 and endpoint == "post-detail":
                    self._dead_letter(slug, body, key, captured)
                return
            if endpoint == "post-detail":
                self._post(body, key, captured, _DETAIL, "post-detail")
            elif endpoint in LISTING_ENDPOINTS:
                for item in body.get("videos") or ():
                    self._post(item, key, captured, _LISTING, endpoint)
            elif endpoint in PROFILE_ENDPOINTS:
                self._profile(body, key, captured)
            elif endpoint in FOLLOW_ENDPOINTS:
                self._follow(endpoint, slug, body, key, captured)
            elif endpoint in COMMENT_ENDPOINTS:
                self._comment_page(slug, body, key, captured)
            elif endpoint == "userid":
                self._keep(self._users, str(body["id"]), (0, captured, key),
                           (str(body["id"]), slug, None, None, None, None, None, "userid", captured, self.day))
        except UnreadableObject as exc:
            self.errors.append(f"{key}: {exc}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.errors.append(f"{key}: unexpected shape ({type(exc).__name__}: {exc})")

    def add_video(self, info: ObjectInfo) -> None:
        """One archived MP4 (``videos/dt=DAY/author=HANDLE/<aweme_id>.mp4``): where the post's bytes are."""
        if not info.key.endswith(".mp4"):
            return
        aweme_id = info.key.rsplit("/", 1)[-1][:-4]
        self._keep(self._videos, aweme_id, info.key, (info.key, info.size, micros(info.last_modified)))

    def add_many(self, pairs: Iterable[tuple[ObjectInfo, bytes]]) -> None:
        for info, gz in pairs:
            self.add(info, gz)

    @staticmethod
    def _keep(target: dict, key: Any, rank: Any, row: tuple) -> None:
        current = target.get(key)
        if current is None or rank > current[0]:
            target[key] = (rank, row)

    def _post(self, item: dict, key: str, captured: int, priority: int, source: str) -> None:
        aweme_id = str(item["aweme_id"])
        author = item.get("author") or {}
        music = item.get("music_info") or {}
        author_id = _str(author.get("id"))
        music_id = _str(music.get("id"))
        play, digg = _int(item.get("play_count")), _int(item.get("digg_count"))
        comment, share = _int(item.get("comment_count")), _int(item.get("share_count"))
        rank = (priority, captured, key)
        current = self._posts.get(aweme_id)
        if current is None or rank > current[0]:
            self._posts[aweme_id] = (rank, (
                aweme_id, author_id, _str(author.get("unique_id")), item.get("title"), item.get("region"),
                _int(item.get("duration")), _int(item.get("create_time")), play, digg, comment, share, music_id,
            ))
        mkey = (aweme_id, captured)
        mrank = (priority, key)
        current = self._metrics.get(mkey)
        if current is None or mrank > current[0]:
            self._metrics[mkey] = (mrank, (
                aweme_id, captured, play, digg, comment, share, _int(item.get("download_count")),
                _int(item.get("collect_count")), source, key, self.day,
            ))
        if author_id is not None:
            current = self._users.get(author_id)
            if current is None or rank > current[0]:
                self._users[author_id] = (rank, (
                    author_id, _str(author.get("unique_id")), author.get("nickname"), None, None, None, None,
                    "author", captured, self.day,
                ))
        if music_id is not None:
            current = self._music.get(music_id)
            mrank = (captured, key)
            if current is None or mrank > current[0]:
                self._music[music_id] = (mrank, (music_id, music.get("title"), music.get("author"), self.day))

    def _profile(self, body: dict, key: str, captured: int) -> None:
        user, stats = body["user"], body.get("stats") or {}
        user_id = str(user["id"])
        handle = _str(user.get("uniqueId"))
        self._keep(self._users, user_id, (3, captured, key), (
            user_id, handle, user.get("nickname"), user.get("secUid"), user.get("verified"),
            user.get("privateAccount"), user.get("bioLink"), "profile", captured, self.day,
        ))
        self._keep(self._snapshots, (user_id, captured), key, (
            user_id, captured, handle, _int(stats.get("followerCount")), _int(stats.get("followingCount")),
            _int(stats.get("videoCount")), _int(stats.get("heartCount")), _int(stats.get("diggCount")), key, self.day,
        ))

    def _follow(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        items_key, direction = FOLLOW_ENDPOINTS[endpoint]
        page = parse_page_slug(slug)
        if page is None:
            raise ValueError(f"slug {slug!r} does not name a time page")
        for item in body.get(items_key) or ():
            other = str(item["id"])
            self._keep(self._edges, (page.entity, direction, other), (captured, key), (
                page.entity, direction, other, item.get("unique_id"), item.get("nickname"),
                _int(item.get("follower_count")), _int(item.get("aweme_count")), captured, self.day,
            ))

    def _comment_page(self, slug: str, body: dict, key: str, captured: int) -> None:
        page = parse_page_slug(slug)
        entity = page.entity if page else slug
        aweme_from_slug, _, parent_from_slug = entity.partition("-")
        for item in body.get("comments") or ():
            user = item.get("user") or {}
            parent = item.get("reply_to_id") or parent_from_slug or None
            self._keep(self._comments, str(item["id"]), (captured, key), (
                str(item["id"]), str(item.get("aweme_id") or aweme_from_slug), _str(parent), _str(user.get("id")),
                user.get("unique_id"), item.get("text"), _int(item.get("digg_count")), _int(item.get("reply_total")),
                _int(item.get("create_time")), captured, self.day,
            ))

    def _dead_letter(self, slug: str, body: Any, key: str, captured: int) -> None:
        reason = "not found"
        if isinstance(body, dict):
            for name in ("error", "message", "msg"):
                if isinstance(body.get(name), str):
                    reason = body[name]
                    break
        self._keep(self._dead, slug, (captured, key), (slug, reason, 404, key, captured, self.day))

    # -- merging and output --

    def merge(self, other: DayParser) -> None:
        """Fold another parser of the same day in (the ranking makes the result independent of the split)."""
        if other.day != self.day:
            raise ValueError(f"cannot merge a parser of {other.day} into one of {self.day}")
        self.objects += other.objects
        self.errors.extend(other.errors)
        for name in ("_posts", "_users", "_snapshots", "_metrics", "_comments", "_edges", "_music", "_dead", "_videos"):
            mine = getattr(self, name)
            for key, (rank, row) in getattr(other, name).items():
                self._keep(mine, key, rank, row)
        for key, (count, size) in other._credits.items():
            c, s = self._credits.get(key, (0, 0))
            self._credits[key] = (c + count, s + size)

    def tables(self) -> dict[str, pa.Table]:
        day = self.day
        posts = []
        tags = set()
        for aweme_id, (_rank, row) in self._posts.items():
            video = self._videos.get(aweme_id)
            storage = video[1] if video else (None, None, None)
            if row[1] is None or row[2] is None:  # an item without its author cannot satisfy posts' NOT NULLs
                self.errors.append(f"post {aweme_id}: no author in any capture of {day}")
                continue
            posts.append(row + storage + (day,))
            for tag in _HASHTAG_RE.findall(row[3] or ""):
                tags.add((tag.lower(), aweme_id, row[1], day))
        credits = [(day, endpoint, status, count, size) for (endpoint, status), (count, size) in self._credits.items()]
        rows = {
            "posts": posts,
            "users": _values(self._users),
            "user_snapshots": _values(self._snapshots),
            "post_metrics_history": _values(self._metrics),
            "comments": _values(self._comments),
            "follow_edges": _values(self._edges),
            "music": _values(self._music),
            "hashtags": list(tags),
            "dead_letters": _values(self._dead),
            "credits_ledger": credits,
        }
        return {name: to_arrow(schema.BY_NAME[name], table_rows) for name, table_rows in rows.items()}


def _values(target: dict) -> list[tuple]:
    return [row for _rank, row in target.values()]


def to_arrow(table: schema.Table, rows: list[tuple]) -> pa.Table:
    """Rows (tuples in column order) -> an Arrow table with the declared schema, sorted by the table's key."""
    arrow_schema = table.arrow_schema
    if not rows:
        return arrow_schema.empty_table()
    columns = list(zip(*rows))
    # timestamps travel as integer microseconds: converting ints then casting is ~100x faster than pa.array(type=ts)
    arrays = [pa.array(col, type=pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type) else pa.array(col, type=f.type)
              for col, f in zip(columns, arrow_schema)]
    result = pa.Table.from_arrays(arrays, schema=arrow_schema)
    return result.sort_by([(name, "ascending") for name in table.key])

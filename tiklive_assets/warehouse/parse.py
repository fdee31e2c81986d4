"""Parsers: archived raw objects of one day -> the warehouse's Arrow tables. The archive is the only input.

``DayParser.add(info, gz_bytes)`` takes one object of ``tiklive-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz`` (and
``add_video(info)`` one media file under ``videos/dt=…/author=…/``); ``tables()`` returns one ``pyarrow.Table`` per
warehouse table with the schema of :mod:`tiklive_assets.warehouse.schema`, rows sorted by key, so the same
objects always give the same tables. Parsers merge (``merge``), so a day can be parsed in several processes.

This module reads each object (:mod:`.raw`: decoding, error responses) and hands its body to the parser of its
endpoint's parse target (:data:`PARSERS`, derived from the endpoint declarations): posts and listings
(:mod:`.parse_posts`), users (:mod:`.parse_users`), follows (:mod:`.parse_follows`), comments
(:mod:`.parse_comments`). Each adds its rows to the day's ``DayParser`` through ``keep`` and the ``read_*``
scalars, which count what they had to null.

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
* Error objects are never data: a 200 response archived under ``<slug>-error-<reason>`` (``balance``,
  ``upstream``, ``notjson``), or a body that is an error envelope (a non-zero ``code``, a lone ``message``), is
  counted in the credits ledger (it was paid for) and in ``error_responses``, and not decoded further.

Tolerant reading (upstream APIs change shape without notice; see :mod:`tiklive_assets.tolerant`): a post's id may
be ``aweme_id``, ``video_id`` or ``id``; counters strings or null; flags ``1``/``0``; ``bioLink`` an object;
``create_time`` an ISO string; TikTok-web shapes (``stats``/``statsV2``, ``{user, stats}`` follower items,
camelCase names) are read where it is cheap. A value that cannot be coerced unambiguously is nulled and counted
per field (``values_nulled``); a list item without an id is counted (``items_without_id``) and skipped; an object
that still cannot be read is quarantined (the ``quarantine`` table, with its key and the error) and the rest of
the day loads. Every object's field signature (paths with JSON types) goes to ``schema_fields`` for drift reports.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from tiklive_assets.storage import ObjectInfo
from tiklive_assets.storage.keys import RAW_PREFIX, RAW_SUFFIX
from tiklive_assets.tikliveapi.endpoints import ENDPOINTS, endpoint_names
from tiklive_assets.tolerant import Tally

from . import schema
from .archive_index import (
    HANDLE_SUBJECTS,
    POST_SUBJECTS,
    UNACCOUNTED,
    USER_ID_SUBJECTS,
    USER_MARKERS,
    WALK_KEYS,
    body_rows,
    key_rows,
    mention_rows,
    node_rows,
)
from .arrow import to_arrow, to_arrow_after
from .parse_comments import comment_page
from .parse_follows import FOLLOW_ENDPOINTS, follow_page
from .parse_posts import listing, post_detail
from .parse_users import profile, user_id
from .raw import (
    CONFLICT_MARKER,
    ERROR_MARKER,
    INFLATE_ERRORS,
    JSON_TYPES,
    CorruptObject,
    ShapeError,
    UnreadableObject,
    body_error,
    captured_micros,
    decode,
    fast_inflate,
    fast_loads,
    inflate,
    json_type,
    loads,
    micros,
    raw_day_prefix,
    video_day_prefix,
)

__all__ = [
    "FOLLOW_ENDPOINTS",
    "PARSERS",
    "CorruptObject",
    "DayParser",
    "ShapeError",
    "UnreadableObject",
    "decode",
    "raw_day_prefix",
    "to_arrow",
    "video_day_prefix",
]

_DETAILS = endpoint_names(parse="post_detail")  # a 404 (or a 200 that says gone) of these is a dead letter
_STATUS_RE = re.compile(r"-http(\d{3})$")
_KEY_SUBJECT = {
    **{name: "user_id" for name in USER_ID_SUBJECTS},
    **{name: "handle" for name in HANDLE_SUBJECTS},
    **{name: "post" for name in POST_SUBJECTS},
}
_HASHTAG_RE = re.compile(r"#(\w+)", re.UNICODE)
_MEDIA = slice(12, 15)  # storage_key, bytes, archived_at in a posts row
# The tables a day's objects give, in this order. Where their rows gather while a day is read, key -> (rank, row),
# the best-ranked sighting kept (DayParser.keep): the tables the subject parsers write, and the media files found.
# tables() finishes posts from its store and builds the others from what the day's objects said.
DAY_TABLES = (
    "posts",
    "users",
    "user_snapshots",
    "post_metrics_history",
    "comments",
    "follow_edges",
    "music",
    "hashtags",
    "dead_letters",
    "credits_ledger",
    "quarantine",
    "schema_fields",
    "archive_index",
)
# from the posts' titles, the keys, the shapes; the archive index's rows are a set (DayParser.index)
_BUILT = ("hashtags", "credits_ledger", "schema_fields", "archive_index")
ROW_STORES = (*(table for table in DAY_TABLES if table not in _BUILT), "videos", "images", "sounds")


@dataclass
class DayParser:
    """Accumulates one day's rows; see the module docstring for the ranking and tolerance rules."""

    day: date
    prefix: str = RAW_PREFIX
    objects: int = 0
    errors: list[str] = field(default_factory=list)  # "<key>: <error>" of every quarantined object
    corrupt: list[str] = field(default_factory=list)  # keys whose bytes are not gzip (a damaged archive copy)
    sign_every: int = 1  # 1: every object's field signature; N: the objects whose key hashes to 0 mod N
    items_without_id: int = 0
    posts_without_author: int = 0
    tally: Tally = field(default_factory=Tally)
    error_responses: Counter = field(default_factory=Counter)  # (endpoint, reason) -> objects
    _shapes: dict = field(default_factory=dict)  # shape -> [objects, children to descend into]
    rows: dict[str, dict] = field(default_factory=lambda: {name: {} for name in ROW_STORES})
    _credits: dict = field(default_factory=dict)  # (endpoint, status) -> [objects, bytes, error responses]
    index_by_walk: bool = False  # index every body with the generic walk (the reference of the typed parsers' rows)
    walked: int = 0  # objects whose body the generic walk indexed
    # the archive index: (user_id, handle, key, role, aweme_id) rows, each once, in the order found (about the keys'
    # order, which Arrow converts and sorts several times faster than a set's order)
    index: dict = field(default_factory=dict)
    found: list = field(default_factory=list)  # the current object's index rows, from its typed parser
    dicts: int = 0  # the JSON objects of the current object the typed parser read (and found the rows of)

    @property
    def quarantined(self) -> int:
        return len(self.rows["quarantine"])

    # -- input --

    def add(self, info: ObjectInfo, gz: bytes) -> None:
        """Parse one archived response (the bytes of ``info.key``, still gzip-compressed)."""
        self.add_bytes(info.key, gz, info.size, info.last_modified)

    # the per-object hot path of every replay, kept inline: a call per branch costs measurable time there
    def add_bytes(self, key: str, gz: bytes, size: int, last_modified: datetime | None) -> None:  # noqa: C901
        """:meth:`add` without an ObjectInfo: ``last_modified`` is only read when the gzip header has no time."""
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
        credit = self._credits.get((endpoint, status))
        if credit is None:
            credit = self._credits[(endpoint, status)] = [0, 0, 0]
        credit[0] += 1
        credit[1] += size
        subject = _KEY_SUBJECT.get(endpoint)
        if subject == "post":  # the archive index: who or what the key names
            self.index.setdefault(("", "", key, "post", slug.partition("-")[0]))
        elif subject is not None:
            self._key_subject(key, subject, slug.partition("-")[0])
        marker = slug.rfind(ERROR_MARKER)
        if marker >= 0:  # archived as an error: paid for, never data (a notjson body would not even decode)
            self._index_error_body(key, endpoint, gz)
            credit[2] += 1
            reason = slug[marker + len(ERROR_MARKER) :]
            self.error_responses[(endpoint, reason)] += 1
            if reason == "gone" and endpoint in _DETAILS:  # deleted or private, said inside a 200: dead
                try:
                    body = decode(gz)
                except UnreadableObject:
                    body = None
                self._dead_letter(slug[:marker], body, key, captured_micros(gz, last_modified), status=200)
            return
        # A copy kept beside (``.conflict-<sha>``) is the same request captured again with new bytes (a sensor poll,
        # a re-resolved expired URL): a real response, parsed as one more capture at its own last_modified.
        # captured_micros, inflate, mention_rows and loads inline (their fast paths; the fallbacks are theirs)
        captured = int.from_bytes(gz[4:8], "little") * 1_000_000 if len(gz) >= 8 and gz[:2] == b"\x1f\x8b" else 0
        if not captured and last_modified is not None:
            captured = micros(last_modified)
        index = self.index.setdefault
        try:
            try:
                text = fast_inflate(gz, 31)
            except INFLATE_ERRORS:
                text = inflate(gz)
            if b"@" in text:
                mention_rows(key, text, index)
            try:
                body = fast_loads(text)
            except ValueError:
                body = loads(text)
        except UnreadableObject as exc:
            if isinstance(exc, CorruptObject):
                self.corrupt.append(key)
            self._quarantine_object(key, endpoint, str(exc), size, captured)
            return
        if status != 200:
            body_rows(key, endpoint, body, index)
            if status == 404 and endpoint in _DETAILS:
                self._dead_letter(slug, body, key, captured)
            return
        whole = body  # what the generic walk indexes when the typed parser cannot
        if type(body) is dict and ("code" in body or "message" in body or "msg" in body):  # noqa: E721
            error = body_error(body)
            if error is not None:
                body_rows(key, endpoint, body, index)
                credit[2] += 1
                self.error_responses[(endpoint, error)] += 1
                return
            if type(body.get("data")) is dict:  # noqa: E721 - a {code: 0, msg, data} envelope around the payload
                body = body["data"]
        parser = _PARSER_OF.get(endpoint)  # none: archived only (download URLs, regions, hashtag facts)
        # The archive index: the typed parser adds the rows of each dict it reads to self.found and counts the dict
        # in self.dicts; unless that accounts for every JSON object of the text, the generic walk indexes the body.
        self.dicts = 1 if parser is not None and body is whole and not self.index_by_walk else UNACCOUNTED
        found: list[tuple[str, str, str, str, str]] = []
        self.found = found
        try:
            if type(body) is not dict:  # noqa: E721
                raise ShapeError(f"the body is a JSON {json_type(body)}, not an object")
            if not body.keys().isdisjoint(WALK_KEYS):  # the body's own user-id fields; a body that is a user: walked
                if body.keys().isdisjoint(USER_MARKERS):
                    node_rows(body, key, "user", "", found.append)
                else:
                    self.dicts = UNACCOUNTED
            if self.sign_every == 1 or zlib.crc32(key.encode()) % self.sign_every == 0:
                self._signature(endpoint, body)
            if parser is not None:
                parser(self, endpoint, slug, body, key, captured)
        except (ShapeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.dicts = UNACCOUNTED
            kind = "" if isinstance(exc, ShapeError) else f"{type(exc).__name__}: "
            self._quarantine_object(key, endpoint, f"unexpected shape ({kind}{exc})", size, captured)
        if self.dicts == text.count(b"{"):  # each JSON object is one "{" (a string may hold more: then walked)
            self.index.update(dict.fromkeys(found))
        else:
            self.walked += 1
            body_rows(key, endpoint, whole, index)

    def add_video(self, info: ObjectInfo) -> None:
        """One archived media file under ``videos/dt=DAY/author=HANDLE/``: a video's ``<aweme_id>.mp4``, a photo
        post's images ``<aweme_id>-<n>.jpg`` (n = 1, 2, … in ``images`` order) and its sound ``<aweme_id>.mp3``."""
        key = info.key
        key_rows(key, self.index.setdefault)
        name = key.rsplit("/", 1)[-1]
        row = (key, info.size, micros(info.last_modified))
        if name.endswith(".mp4"):
            self.keep(self.rows["videos"], name[:-4], key, row)
        elif name.endswith(".jpg"):
            stem, _, number = name[:-4].rpartition("-")
            if stem and number.isdigit():
                self.keep(self.rows["images"], (stem, int(number)), key, row)
        elif name.endswith(".mp3"):
            self.keep(self.rows["sounds"], name[:-4], key, row)

    def add_many(self, pairs: Iterable[tuple[ObjectInfo, bytes]]) -> None:
        for info, gz in pairs:
            self.add(info, gz)

    @staticmethod
    def keep(target: dict, key: Any, rank: Any, row: tuple) -> None:
        """Keep ``row`` under ``key`` unless a row of a higher ``rank`` is there (the sighting rules above)."""
        current = target.get(key)
        if current is None or rank > current[0]:
            target[key] = (rank, row)

    # -- the archive index (see .archive_index) --

    def _key_subject(self, key: str, subject: str, entity: str) -> None:
        if subject == "user_id":
            self.index.setdefault((entity, "", key, "subject", ""))
        elif subject == "handle":
            self.index.setdefault(("", entity.lower(), key, "subject", ""))
        else:
            self.index.setdefault(("", "", key, "post", entity))

    def _index_error_body(self, key: str, endpoint: str, gz: bytes) -> None:
        """An error answer (or a body that is not JSON) is still indexed: what it says about users, if anything."""
        try:
            text = inflate(gz)
            mention_rows(key, text, self.index.setdefault)
            body_rows(key, endpoint, loads(text), self.index.setdefault)
        except UnreadableObject:
            return

    def _quarantine_object(self, key: str, endpoint: str, error: str, size: int, captured: int) -> None:
        self.errors.append(f"{key}: {error}")
        self.rows["quarantine"][key] = (key, (self.day, key, endpoint, error, size, captured))

    # -- tolerant scalars for the subject parsers (the common, well-typed case stays inline in the callers) --

    def read_int(self, value: Any, name: str) -> int | None:
        return self.tally.int(value, name)

    def read_text(self, value: Any, name: str) -> str | None:
        if type(value) is str:  # noqa: E721
            return value.replace("\x00", "") if "\x00" in value else value  # Postgres refuses NUL in TEXT
        return self.tally.text(value, name)

    def read_time(self, value: Any, name: str) -> int | None:
        if type(value) is int and 0 <= value < 10**11:  # noqa: E721
            return value
        return self.tally.time(value, name)

    def read_bool(self, value: Any, name: str) -> bool | None:
        return value if type(value) is bool else self.tally.bool(value, name)  # noqa: E721

    def _signature(self, endpoint: str, body: dict) -> None:
        """Count the object's shape (keys and value types, top level, one level into objects, items of lists).
        Shapes repeat, so this is a few tuple hashes per object; which children to descend into is remembered with
        each top-level shape, and the paths are expanded once, in :meth:`field_signature`."""
        shapes = self._shapes
        values = tuple(body.values())
        shape = (endpoint, "", tuple(body), tuple(map(type, values)))
        entry = shapes.get(shape)
        if entry is None:
            entry = shapes[shape] = [
                0,
                tuple(
                    (i, name + "." if kind is dict else name + "[].")
                    for i, (name, kind) in enumerate(zip(shape[2], shape[3], strict=True))
                    if kind is dict or kind is list
                ),
            ]
        entry[0] += 1
        for i, prefix in entry[1]:
            value = values[i]
            if type(value) is dict:  # noqa: E721
                value = (value,)
            for item in value:
                if type(item) is dict:  # noqa: E721
                    sub = (endpoint, prefix, tuple(item), tuple(map(type, item.values())))
                    child = shapes.get(sub)
                    if child is None:
                        child = shapes[sub] = [0, ()]
                    child[0] += 1

    def _dead_letter(self, slug: str, body: Any, key: str, captured: int, status: int = 404) -> None:
        slug = slug.partition("-")[0]  # the post's id: a refresh's slug is <aweme_id>-refresh<N>h
        reason = "not found"
        if isinstance(body, dict):
            for name in ("error", "message", "msg"):
                if isinstance(body.get(name), str):
                    reason = body[name]
                    break
        self.keep(self.rows["dead_letters"], slug, (captured, key), (slug, reason, status, key, captured, self.day))

    # -- merging and output --

    def merge(self, other: DayParser) -> None:
        """Fold another parser of the same day in (the ranking makes the result independent of the split)."""
        if other.day != self.day:
            raise ValueError(f"cannot merge a parser of {other.day} into one of {self.day}")
        self.objects += other.objects
        self.errors.extend(other.errors)
        self.corrupt.extend(other.corrupt)
        self.items_without_id += other.items_without_id
        self.walked += other.walked
        self.index.update(other.index)
        self.posts_without_author += other.posts_without_author
        self.tally.nulled.update(other.tally.nulled)
        self.error_responses.update(other.error_responses)
        for shape, (count, children) in other._shapes.items():
            entry = self._shapes.get(shape)
            if entry is None:
                self._shapes[shape] = [count, children]
            else:
                entry[0] += count
        for name, theirs in other.rows.items():
            store = self.rows[name]
            for key, (rank, row) in theirs.items():
                self.keep(store, key, rank, row)
        for key, counts in other._credits.items():
            mine = self._credits.get(key)
            self._credits[key] = [a + b for a, b in zip(mine, counts, strict=True)] if mine else list(counts)

    def _media(self) -> dict[str, tuple]:
        """(storage_key, bytes, archived_at) per post: its MP4, or for a photo post its first image, with bytes
        summing all its images and its sound."""
        media = {aweme_id: row for aweme_id, (_rank, row) in self.rows["videos"].items()}
        photos: dict[str, list] = {}
        for (aweme_id, number), (_rank, row) in self.rows["images"].items():
            photos.setdefault(aweme_id, []).append((number, row))
        for aweme_id, images in photos.items():
            if aweme_id in media:
                continue
            images.sort()
            parts = [row for _n, row in images]
            sound = self.rows["sounds"].get(aweme_id)
            if sound is not None:
                parts.append(sound[1])
            media[aweme_id] = (images[0][1][0], sum(p[1] for p in parts), max(p[2] for p in parts))
        return media

    def field_signature(self) -> list[tuple]:
        """(dt, endpoint, path, json_type, objects) rows from the counted shapes."""
        fields: Counter = Counter()
        for (endpoint, prefix, names, types), (count, _children) in self._shapes.items():
            for name, kind in zip(names, types, strict=True):
                fields[(endpoint, prefix + name, JSON_TYPES.get(kind, "other"))] += count
        return [(self.day, endpoint, path, kind, count) for (endpoint, path, kind), count in fields.items()]

    def tables(self) -> dict[str, pa.Table]:
        day = self.day
        posts: list[tuple] = []
        tags: list[tuple] = []
        media = self._media()
        without_author = 0
        tags_of: dict[str, tuple[str, ...]] = {}
        for _rank, row in self.rows["posts"].values():
            if row[1] is None or row[2] is None:  # an item without its author cannot satisfy posts' NOT NULLs
                without_author += 1
                continue
            if media:
                found = media.get(row[0])
                if found is not None:
                    row = row[: _MEDIA.start] + found + row[_MEDIA.stop :]
            posts.append(row)
            title = row[3]
            if title and "#" in title:  # each tag once per post (the key is hashtag, aweme_id, dt)
                found_tags = tags_of.get(title)
                if found_tags is None:  # titles repeat (templates, reposts): their tags are found once
                    found_tags = tags_of[title] = tuple({t.lower() for t in _HASHTAG_RE.findall(title)})
                for tag in found_tags:
                    tags.append((tag, row[0], row[1], day))
        self.posts_without_author = without_author
        credits = [
            (day, endpoint, status, count, size, errors)
            for (endpoint, status), (count, size, errors) in self._credits.items()
        ]
        derived = {"posts": posts, "hashtags": tags, "credits_ledger": credits, "schema_fields": self.field_signature()}
        self.errors.sort()
        self.corrupt.sort()
        tables = {
            name: to_arrow(
                schema.BY_NAME[name],
                derived[name] if name in derived else [row for _rank, row in self.rows[name].values()],
                self.tally,
            )
            for name in DAY_TABLES
            if name != "archive_index"
        }
        tables["archive_index"] = to_arrow_after(schema.ARCHIVE_INDEX, day, list(self.index))  # rows without dt
        return {name: tables[name] for name in DAY_TABLES}


# parse target (an endpoint declaration's ``parse``) -> the function that reads its answers into a DayParser
PARSERS: dict[str, Callable[[DayParser, str, str, dict, str, int], None]] = {
    "post_detail": post_detail,
    "post_listing": listing,
    "profile": profile,
    "follow_page": follow_page,
    "comment_page": comment_page,
    "user_id": user_id,
}
_PARSER_OF = {e.name: PARSERS[e.parse] for e in ENDPOINTS if e.parse is not None}

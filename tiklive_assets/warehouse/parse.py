"""Parsers: archived raw objects of one day -> the warehouse's Arrow tables. The archive is the only input.

``DayParser.add(info, gz_bytes)`` takes one object of ``tiklive-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz`` (and
``add_video(info)`` one media file under ``videos/dt=…/author=…/``); ``tables()`` returns one ``pyarrow.Table`` per
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

import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from tiklive_assets.storage import ObjectInfo
from tiklive_assets.storage.keys import RAW_PREFIX, RAW_SUFFIX, parse_page_slug
from tiklive_assets.tikliveapi.endpoints import ENDPOINTS, endpoint_names
from tiklive_assets.tolerant import (
    FOLLOWER_ITEM_KEYS,
    FOLLOWING_ITEM_KEYS,
    LISTING_ITEM_KEYS,
    Tally,
    as_id,
    as_int,
    bio_link,
    epoch_seconds,
    image_list,
    post_id,
)

from . import schema

CONFLICT_MARKER = ".conflict-"
ERROR_MARKER = "-error-"  # <slug>-error-<reason>: a 200 response that is not data (balance, upstream, notjson)
# which endpoints each parser reads comes from the endpoint declarations (their parse target; PARSERS below)
_DIRECTIONS = {"followers": "follower", "followings": "following"}  # a follow page's list -> the edges' direction
FOLLOW_ENDPOINTS = {e.name: (e.items, _DIRECTIONS[e.items]) for e in ENDPOINTS if e.parse == "follow_page"}
_DETAILS = endpoint_names(parse="post_detail")  # a 404 (or a 200 that says gone) of these is a dead letter
_OWNED_LISTINGS = endpoint_names(parse="post_listing", subject="user_id")  # the slug names the account the posts are by
LISTING_ITEMS = LISTING_ITEM_KEYS  # TikLiveAPI, then TikTok-web / app names
FOLLOW_ITEMS = {"followers": FOLLOWER_ITEM_KEYS[1:], "followings": FOLLOWING_ITEM_KEYS[1:]}  # after the endpoint's own
_STATUS_RE = re.compile(r"-http(\d{3})$")
_HASHTAG_RE = re.compile(r"#(\w+)", re.UNICODE)
_DETAIL, _LISTING = 2, 1
_MEDIA = slice(12, 15)  # storage_key, bytes, archived_at in a posts row
_ERROR_KEYS = frozenset({"message", "msg", "code", "error", "status_code", "status_msg", "log_id", "processed_time"})
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class UnreadableObject(ValueError):
    """An archived object that is not gzip JSON; it is quarantined with its key, and the day goes on."""


class CorruptObject(UnreadableObject):
    """Bytes that are not gzip at all: the archive copy itself is damaged (the capture always writes gzip)."""


class ShapeError(ValueError):
    """A JSON object no parser can read (no id where one is required, a list where an object belongs...)."""


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


try:  # orjson decodes these objects 3x faster than json, and caches key strings (cheap shape signatures)
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - optional accelerator; json gives the same values
    _fast_loads = json.loads
try:  # ISA-L inflates gzip about 1.4x faster than zlib, with the same bytes out
    from isal.isal_zlib import decompress as _gunzip
    from isal.isal_zlib import error as _GunzipError
except ImportError:  # pragma: no cover - optional accelerator; zlib gives the same bytes
    from zlib import decompress as _gunzip
    from zlib import error as _GunzipError


def decode(gz: bytes) -> Any:
    """gzip JSON -> Python, through zlib directly (faster than gzip.decompress on many small objects).

    The fast decoder refuses what the standard one accepts (integers beyond 64 bits, NaN, lone surrogates), so
    anything it refuses is decoded again by ``json``: the values are always those ``json.loads`` gives."""
    try:
        raw = _gunzip(gz, 31)
    except (_GunzipError, zlib.error):
        try:
            raw = gzip.decompress(gz)  # multi-member gzip, just in case
        except (OSError, EOFError, ValueError) as exc:
            raise CorruptObject(f"not gzip: {exc}") from None
    try:
        return _fast_loads(raw)
    except ValueError:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise UnreadableObject(f"not JSON: {exc}") from None


def _is_id(value: Any) -> bool:
    return type(value) is str and value.isdigit() and value.isascii()  # noqa: E721 - the fast path of as_id


def _body_error(body: dict) -> str | None:
    """The reason when a 200 body is an error, not data: a non-zero ``code``, or only error keys (a lone
    ``message``: an exhausted balance says so, ``{"message": "...balance..."}``)."""
    if "code" in body:
        code = as_int(body["code"])
        if code not in (0, None):
            return "upstream"
    if body.keys() <= _ERROR_KEYS and ("message" in body or "msg" in body or "error" in body):
        text = str(body.get("message") or body.get("msg") or body.get("error") or "")
        return "balance" if "balance" in text.lower() else "upstream"
    return None


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
    _posts: dict = field(default_factory=dict)
    _users: dict = field(default_factory=dict)
    _snapshots: dict = field(default_factory=dict)
    _metrics: dict = field(default_factory=dict)
    _comments: dict = field(default_factory=dict)
    _edges: dict = field(default_factory=dict)
    _music: dict = field(default_factory=dict)
    _dead: dict = field(default_factory=dict)
    _quarantine: dict = field(default_factory=dict)
    _credits: dict = field(default_factory=dict)
    _videos: dict = field(default_factory=dict)
    _images: dict = field(default_factory=dict)
    _sounds: dict = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        return len(self._quarantine)

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
        marker = slug.rfind(ERROR_MARKER)
        if marker >= 0:  # archived as an error: paid for, never data (a notjson body would not even decode)
            credit[2] += 1
            reason = slug[marker + len(ERROR_MARKER) :]
            self.error_responses[(endpoint, reason)] += 1
            if reason == "gone" and endpoint in _DETAILS:  # deleted or private, said inside a 200: dead
                try:
                    body = decode(gz)
                except UnreadableObject:
                    body = None
                captured = fetched_micros(gz) or (micros(last_modified) if last_modified is not None else 0)
                self._dead_letter(slug[:marker], body, key, captured, status=200)
            return
        # A copy kept beside (``.conflict-<sha>``) is the same request captured again with new bytes (a sensor poll,
        # a re-resolved expired URL): a real response, parsed as one more capture at its own last_modified.
        captured = fetched_micros(gz) or (micros(last_modified) if last_modified is not None else 0)
        try:
            body = decode(gz)
        except UnreadableObject as exc:
            if isinstance(exc, CorruptObject):
                self.corrupt.append(key)
            self._quarantine_object(key, endpoint, str(exc), size, captured)
            return
        if status != 200:
            if status == 404 and endpoint in _DETAILS:
                self._dead_letter(slug, body, key, captured)
            return
        if type(body) is dict and ("code" in body or "message" in body or "msg" in body):  # noqa: E721
            reason = _body_error(body)
            if reason is not None:
                credit[2] += 1
                self.error_responses[(endpoint, reason)] += 1
                return
            if type(body.get("data")) is dict:  # noqa: E721 - a {code: 0, msg, data} envelope around the payload
                body = body["data"]
        try:
            if type(body) is not dict:  # noqa: E721
                raise ShapeError(f"the body is a JSON {_JSON_TYPES.get(type(body), 'value')}, not an object")
            if self.sign_every == 1 or zlib.crc32(key.encode()) % self.sign_every == 0:
                self._signature(endpoint, body)
            parser = _PARSER_OF.get(endpoint)  # none: archived only (download URLs, regions, hashtag facts)
            if parser is not None:
                parser(self, endpoint, slug, body, key, captured)
        except (ShapeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            kind = "" if isinstance(exc, ShapeError) else f"{type(exc).__name__}: "
            self._quarantine_object(key, endpoint, f"unexpected shape ({kind}{exc})", size, captured)

    def add_video(self, info: ObjectInfo) -> None:
        """One archived media file under ``videos/dt=DAY/author=HANDLE/``: a video's ``<aweme_id>.mp4``, a photo
        post's images ``<aweme_id>-<n>.jpg`` (n = 1, 2, … in ``images`` order) and its sound ``<aweme_id>.mp3``."""
        key = info.key
        name = key.rsplit("/", 1)[-1]
        row = (key, info.size, micros(info.last_modified))
        if name.endswith(".mp4"):
            self._keep(self._videos, name[:-4], key, row)
        elif name.endswith(".jpg"):
            stem, _, number = name[:-4].rpartition("-")
            if stem and number.isdigit():
                self._keep(self._images, (stem, int(number)), key, row)
        elif name.endswith(".mp3"):
            self._keep(self._sounds, name[:-4], key, row)

    def add_many(self, pairs: Iterable[tuple[ObjectInfo, bytes]]) -> None:
        for info, gz in pairs:
            self.add(info, gz)

    @staticmethod
    def _keep(target: dict, key: Any, rank: Any, row: tuple) -> None:
        current = target.get(key)
        if current is None or rank > current[0]:
            target[key] = (rank, row)

    def _quarantine_object(self, key: str, endpoint: str, error: str, size: int, captured: int) -> None:
        self.errors.append(f"{key}: {error}")
        self._quarantine[key] = (key, (self.day, key, endpoint, error, size, captured))

    # -- tolerant scalars (the common, well-typed case stays inline in the callers) --

    def _int(self, value: Any, name: str) -> int | None:
        return self.tally.int(value, name)

    def _text(self, value: Any, name: str) -> str | None:
        if type(value) is str:  # noqa: E721
            return value.replace("\x00", "") if "\x00" in value else value  # Postgres refuses NUL in TEXT
        return self.tally.text(value, name)

    def _time(self, value: Any, name: str) -> int | None:
        if type(value) is int and 0 <= value < 10**11:  # noqa: E721
            return value
        result = epoch_seconds(value)
        if result is None and value is not None and value != "":
            self.tally.nulled[name] += 1
        return result

    def _bool(self, value: Any, name: str) -> bool | None:
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

    # -- endpoints: one parser per parse target, all called as (endpoint, slug, body, key, captured) --

    def _post_detail(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        if not self._post(body, key, captured, _DETAIL, endpoint, None):
            raise ShapeError("no post id (aweme_id, video_id or id)")

    def _user_id(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        user_id = as_id(body.get("id")) or as_id(body.get("user_id"))
        if user_id is None:
            raise ShapeError("no user id")
        self._keep(
            self._users,
            user_id,
            (0, captured, key),
            (user_id, slug, None, None, None, None, None, "userid", captured, self.day),
        )

    def _listing(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        items = None
        for name in LISTING_ITEMS:
            items = body.get(name)
            if items is not None:
                break
        if items is None:
            return  # an empty page
        if type(items) is not list:  # noqa: E721
            raise ShapeError(f"the items are a JSON {_JSON_TYPES.get(type(items), 'value')}, not a list")
        owner = None
        if endpoint in _OWNED_LISTINGS:  # the slug names the account: the author of items that carry no author id
            page = parse_page_slug(slug)
            owner = page.entity if page and page.entity.isdigit() else None
        for item in items:
            if type(item) is not dict or not self._post(item, key, captured, _LISTING, endpoint, owner):  # noqa: E721
                self.items_without_id += 1

    # the per-post hot path of every replay (every wire variant of a post in one pass), kept inline for speed
    def _post(  # noqa: C901
        self,
        item: dict,
        key: str,
        captured: int,
        priority: int,
        source: str,
        owner: str | None,
    ) -> bool:
        aweme_id = item.get("aweme_id")
        if not (type(aweme_id) is str and aweme_id.isdigit() and aweme_id.isascii()):  # noqa: E721
            aweme_id = post_id(item)
            if aweme_id is None:
                return False
        author = item.get("author")
        nickname = None
        if type(author) is dict:  # noqa: E721
            author_id = author.get("id")
            if not (type(author_id) is str and author_id.isdigit() and author_id.isascii()):  # noqa: E721
                author_id = self.tally.id(author_id, "author.id")
            handle = author.get("unique_id")
            if handle is None:
                handle = author.get("uniqueId")
            handle = handle if type(handle) is str else self._text(handle, "author.unique_id")  # noqa: E721
            nickname = author.get("nickname")
            if type(nickname) is not str:  # noqa: E721
                nickname = self._text(nickname, "author.nickname")
        else:
            author_id = None
            handle = author if type(author) is str else self._text(author, "author")  # noqa: E721 - web: the handle
        if author_id is None:
            author_id = as_id(item.get("author_id")) or owner
        play, digg, comment, share = (
            item.get("play_count"),
            item.get("digg_count"),
            item.get("comment_count"),
            item.get("share_count"),
        )
        download, collect = item.get("download_count"), item.get("collect_count")
        if play is None and digg is None and comment is None and share is None:
            stats = item.get("stats")
            if type(stats) is not dict:  # noqa: E721
                stats = item.get("statsV2")
            if type(stats) is dict:  # noqa: E721 - TikTok web: counters in stats (ints) or statsV2 (strings)
                play, digg, comment = stats.get("playCount"), stats.get("diggCount"), stats.get("commentCount")
                share, collect = stats.get("shareCount"), stats.get("collectCount")
        if type(play) is not int:  # noqa: E721
            play = self._int(play, "play_count")
        if type(digg) is not int:  # noqa: E721
            digg = self._int(digg, "digg_count")
        if type(comment) is not int:  # noqa: E721
            comment = self._int(comment, "comment_count")
        if type(share) is not int:  # noqa: E721
            share = self._int(share, "share_count")
        if type(download) is not int:  # noqa: E721
            download = self._int(download, "download_count")
        if type(collect) is not int:  # noqa: E721
            collect = self._int(collect, "collect_count")
        rank = (priority, captured, key)
        current = self._posts.get(aweme_id)
        if current is None or rank > current[0]:
            title = item.get("title")
            if type(title) is not str:  # noqa: E721
                title = self._text(title if title is not None else item.get("desc"), "title")
            elif "\x00" in title:
                title = title.replace("\x00", "")
            region = item.get("region")
            if type(region) is not str:  # noqa: E721
                region = self._text(region, "region")
            duration = item.get("duration")
            if type(duration) is not int:  # noqa: E721
                if duration is None and type(item.get("video")) is dict:  # noqa: E721
                    duration = item["video"].get("duration")
                duration = duration if type(duration) is int else self._int(duration, "duration")  # noqa: E721
            created = item.get("create_time")
            if type(created) is not int or created >= 10**11:  # noqa: E721
                created = self._time(created if created is not None else item.get("createTime"), "create_time")
            music = item.get("music_info")
            if type(music) is not dict:  # noqa: E721
                music = item.get("music")  # TikTok web: an object; TikLiveAPI: the sound's URL (or "")
                music = music if type(music) is dict else None  # noqa: E721
            music_id = None
            if music is not None:
                music_id = music.get("id")
                if not (type(music_id) is str and music_id.isdigit() and music_id.isascii()):  # noqa: E721
                    music_id = self.tally.id(music_id, "music_info.id")
            images = image_list(item)
            photo = images is not None
            # already in the posts table's column order: storage_key, bytes and archived_at (_MEDIA) are filled
            # in by tables() for the few posts whose media the day archived
            self._posts[aweme_id] = (
                rank,
                (
                    aweme_id,
                    author_id,
                    handle,
                    title,
                    region,
                    duration,
                    created,
                    play,
                    digg,
                    comment,
                    share,
                    music_id,
                    None,
                    None,
                    None,
                    self.day,
                    "photo" if photo else "video",
                    len(images) if photo else 0,
                ),
            )
            if music_id is not None:
                mrank = (captured, key)
                current = self._music.get(music_id)
                if current is None or mrank > current[0]:
                    self._music[music_id] = (
                        mrank,
                        (
                            music_id,
                            self._text(music.get("title"), "music_info.title"),
                            self._text(
                                music.get("author") if "author" in music else music.get("authorName"),
                                "music_info.author",
                            ),
                            self.day,
                        ),
                    )
        mkey = (aweme_id, captured)
        mrank = (priority, key)
        current = self._metrics.get(mkey)
        if current is None or mrank > current[0]:
            self._metrics[mkey] = (
                mrank,
                (
                    aweme_id,
                    captured,
                    play,
                    digg,
                    comment,
                    share,
                    download,
                    collect,
                    source,
                    key,
                    self.day,
                ),
            )
        if author_id is not None:
            current = self._users.get(author_id)
            if current is None or rank > current[0]:
                self._users[author_id] = (
                    rank,
                    (
                        author_id,
                        handle,
                        nickname,
                        None,
                        None,
                        None,
                        None,
                        "author",
                        captured,
                        self.day,
                    ),
                )
        return True

    def _profile(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        user = body.get("user")
        if type(user) is not dict and type(body.get("userInfo")) is dict:  # noqa: E721 - TikTok web nests it
            body = body["userInfo"]
            user = body.get("user")
        if type(user) is not dict:  # noqa: E721
            raise ShapeError("no user object")
        user_id = user.get("id")
        if not _is_id(user_id):
            user_id = as_id(user_id)
            if user_id is None:
                raise ShapeError("no user id")
        stats = body.get("stats")
        if type(stats) is not dict:  # noqa: E721
            stats = body.get("statsV2")
            if type(stats) is not dict:  # noqa: E721
                stats = {}
        handle = user.get("uniqueId")
        if handle is None:
            handle = user.get("unique_id")
        handle = self._text(handle, "user.uniqueId")
        raw_bio = user.get("bioLink")
        bio = bio_link(raw_bio)
        if bio is None and raw_bio not in (None, "", {}):
            self.tally.nulled["user.bioLink"] += 1
        if bio is not None and "\x00" in bio:
            bio = bio.replace("\x00", "")
        sec_uid = user.get("secUid")
        if sec_uid is None:
            sec_uid = user.get("sec_uid")
        self._keep(
            self._users,
            user_id,
            (3, captured, key),
            (
                user_id,
                handle,
                self._text(user.get("nickname"), "user.nickname"),
                self._text(sec_uid, "user.secUid"),
                self._bool(user.get("verified"), "user.verified"),
                self._bool(user.get("privateAccount"), "user.privateAccount"),
                bio,
                "profile",
                captured,
                self.day,
            ),
        )
        counters = []
        for name in ("followerCount", "followingCount", "videoCount", "heartCount", "diggCount"):
            value = stats.get(name)
            counters.append(value if type(value) is int else self._int(value, f"stats.{name}"))  # noqa: E721
        self._keep(self._snapshots, (user_id, captured), key, (user_id, captured, handle, *counters, key, self.day))

    def _follow(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        items_key, direction = FOLLOW_ENDPOINTS[endpoint]
        page = parse_page_slug(slug)
        if page is None:
            raise ShapeError(f"slug {slug!r} does not name a time page")
        items = body.get(items_key)
        for name in FOLLOW_ITEMS[items_key]:
            if items is not None:
                break
            items = body.get(name)
        if items is None:
            return
        if type(items) is not list:  # noqa: E721
            raise ShapeError(f"{items_key} is a JSON {_JSON_TYPES.get(type(items), 'value')}, not a list")
        for item in items:
            if type(item) is not dict:  # noqa: E721
                self.items_without_id += 1
                continue
            user, stats = item, item
            if type(item.get("user")) is dict:  # noqa: E721 - TikTok web: {user: {...}, stats: {...}}
                user = item["user"]
                stats = item.get("stats") if type(item.get("stats")) is dict else item.get("statsV2")  # noqa: E721
                stats = stats if type(stats) is dict else {}  # noqa: E721
            other = user.get("id")
            if not _is_id(other):
                other = as_id(other)
                if other is None:
                    self.items_without_id += 1
                    continue
            handle = user.get("unique_id")
            if handle is None:
                handle = user.get("uniqueId")
            followers = stats.get("follower_count") if stats is item else stats.get("followerCount")
            posts = stats.get("aweme_count") if stats is item else stats.get("videoCount")
            self._keep(
                self._edges,
                (page.entity, direction, other),
                (captured, key),
                (
                    page.entity,
                    direction,
                    other,
                    self._text(handle, "follow.unique_id"),
                    self._text(user.get("nickname"), "follow.nickname"),
                    followers if type(followers) is int else self._int(followers, "follow.follower_count"),  # noqa: E721
                    posts if type(posts) is int else self._int(posts, "follow.aweme_count"),  # noqa: E721
                    captured,
                    self.day,
                ),
            )

    def _comment_page(self, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
        page = parse_page_slug(slug)
        entity = page.entity if page else slug
        aweme_from_slug, _, parent_from_slug = entity.partition("-")
        items = body.get("comments")
        if items is None:
            return
        if type(items) is not list:  # noqa: E721
            raise ShapeError(f"comments is a JSON {_JSON_TYPES.get(type(items), 'value')}, not a list")
        for item in items:
            comment_id = as_id(item.get("id")) or as_id(item.get("cid")) if type(item) is dict else None  # noqa: E721
            if comment_id is None:
                self.items_without_id += 1
                continue
            user = item.get("user")
            user = user if type(user) is dict else {}  # noqa: E721
            parent = as_id(item.get("reply_to_id")) or parent_from_slug or None
            handle = user.get("unique_id")
            if handle is None:
                handle = user.get("uniqueId")
            self._keep(
                self._comments,
                comment_id,
                (captured, key),
                (
                    comment_id,
                    as_id(item.get("aweme_id")) or aweme_from_slug,
                    parent,
                    self.tally.id(user.get("id") if user.get("id") is not None else user.get("uid"), "comment.user.id"),
                    self._text(handle, "comment.user.unique_id"),
                    self._text(item.get("text"), "comment.text"),
                    self._int(item.get("digg_count"), "comment.digg_count"),
                    self._int(item.get("reply_total"), "comment.reply_total"),
                    self._time(item.get("create_time"), "comment.create_time"),
                    captured,
                    self.day,
                ),
            )

    def _dead_letter(self, slug: str, body: Any, key: str, captured: int, status: int = 404) -> None:
        reason = "not found"
        if isinstance(body, dict):
            for name in ("error", "message", "msg"):
                if isinstance(body.get(name), str):
                    reason = body[name]
                    break
        self._keep(self._dead, slug, (captured, key), (slug, reason, status, key, captured, self.day))

    # -- merging and output --

    def merge(self, other: DayParser) -> None:
        """Fold another parser of the same day in (the ranking makes the result independent of the split)."""
        if other.day != self.day:
            raise ValueError(f"cannot merge a parser of {other.day} into one of {self.day}")
        self.objects += other.objects
        self.errors.extend(other.errors)
        self.corrupt.extend(other.corrupt)
        self.items_without_id += other.items_without_id
        self.posts_without_author += other.posts_without_author
        self.tally.nulled.update(other.tally.nulled)
        self.error_responses.update(other.error_responses)
        for shape, (count, children) in other._shapes.items():
            entry = self._shapes.get(shape)
            if entry is None:
                self._shapes[shape] = [count, children]
            else:
                entry[0] += count
        for name in (
            "_posts",
            "_users",
            "_snapshots",
            "_metrics",
            "_comments",
            "_edges",
            "_music",
            "_dead",
            "_quarantine",
            "_videos",
            "_images",
            "_sounds",
        ):
            mine = getattr(self, name)
            for key, (rank, row) in getattr(other, name).items():
                self._keep(mine, key, rank, row)
        for key, counts in other._credits.items():
            mine = self._credits.get(key)
            self._credits[key] = [a + b for a, b in zip(mine, counts, strict=True)] if mine else list(counts)

    def _media(self) -> dict[str, tuple]:
        """(storage_key, bytes, archived_at) per post: its MP4, or for a photo post its first image, with bytes
        summing all its images and its sound."""
        media = {aweme_id: row for aweme_id, (_rank, row) in self._videos.items()}
        photos: dict[str, list] = {}
        for (aweme_id, number), (_rank, row) in self._images.items():
            photos.setdefault(aweme_id, []).append((number, row))
        for aweme_id, images in photos.items():
            if aweme_id in media:
                continue
            images.sort()
            parts = [row for _n, row in images]
            sound = self._sounds.get(aweme_id)
            if sound is not None:
                parts.append(sound[1])
            media[aweme_id] = (images[0][1][0], sum(p[1] for p in parts), max(p[2] for p in parts))
        return media

    def field_signature(self) -> list[tuple]:
        """(dt, endpoint, path, json_type, objects) rows from the counted shapes."""
        fields: Counter = Counter()
        for (endpoint, prefix, names, types), (count, _children) in self._shapes.items():
            for name, kind in zip(names, types, strict=True):
                fields[(endpoint, prefix + name, _JSON_TYPES.get(kind, "other"))] += count
        return [(self.day, endpoint, path, kind, count) for (endpoint, path, kind), count in fields.items()]

    def tables(self) -> dict[str, pa.Table]:
        day = self.day
        posts = []
        tags = []
        media = self._media()
        without_author = 0
        for _rank, row in self._posts.values():
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
                tags.extend((tag, row[0], row[1], day) for tag in {t.lower() for t in _HASHTAG_RE.findall(title)})
        self.posts_without_author = without_author
        credits = [
            (day, endpoint, status, count, size, errors)
            for (endpoint, status), (count, size, errors) in self._credits.items()
        ]
        rows = {
            "posts": posts,
            "users": _values(self._users),
            "user_snapshots": _values(self._snapshots),
            "post_metrics_history": _values(self._metrics),
            "comments": _values(self._comments),
            "follow_edges": _values(self._edges),
            "music": _values(self._music),
            "hashtags": tags,
            "dead_letters": _values(self._dead),
            "credits_ledger": credits,
            "quarantine": _values(self._quarantine),
            "schema_fields": self.field_signature(),
        }
        self.errors.sort()
        self.corrupt.sort()
        return {name: to_arrow(schema.BY_NAME[name], table_rows, self.tally) for name, table_rows in rows.items()}


# parse target (an endpoint declaration's ``parse``) -> the parser that reads its answers
PARSERS: dict[str, Callable[[DayParser, str, str, dict, str, int], None]] = {
    "post_detail": DayParser._post_detail,
    "post_listing": DayParser._listing,
    "profile": DayParser._profile,
    "follow_page": DayParser._follow,
    "comment_page": DayParser._comment_page,
    "user_id": DayParser._user_id,
}
_PARSER_OF = {e.name: PARSERS[e.parse] for e in ENDPOINTS if e.parse is not None}


def _values(target: dict) -> list[tuple]:
    return [row for _rank, row in target.values()]


def to_arrow(table: schema.Table, rows: list[tuple], tally: Tally | None = None) -> pa.Table:
    """Rows (tuples in column order) -> an Arrow table with the declared schema, sorted by the table's key.

    The tuples are converted in one pass as Arrow struct values (pyarrow reads a tuple's items by position), which
    is faster than transposing them in Python (``zip(*rows)``) and converting column by column; timestamps arrive
    as integer microseconds, which Arrow takes as they are for ``timestamp[us]``. Sorting stays in Arrow: it is a
    few milliseconds even for 100,000 rows, less than checking the order in Python."""
    arrow_schema = table.arrow_schema
    if not rows:
        return arrow_schema.empty_table()
    struct = pa.struct(list(arrow_schema))
    try:
        array = pa.array(rows, type=struct)
    except (OverflowError, pa.ArrowInvalid):  # a number beyond 64 bits: null it rather than lose the whole day
        array = pa.array(_fit_integers(rows, arrow_schema, tally), type=struct)
    return pa.Table.from_struct_array(array).sort_by([(name, "ascending") for name in table.key])


_INT_RANGES = {pa.int64(): (-(2**63), 2**63 - 1), pa.int32(): (-(2**31), 2**31 - 1)}


def _fit_integers(rows: list[tuple], arrow_schema: pa.Schema, tally: Tally | None) -> list[tuple]:
    """``rows`` with every integer too large for its column's type replaced by None (and counted as nulled):
    the slow path, taken only when a day holds such a number (a counter of 20 digits, a time in yoctoseconds)."""
    bounds = [(i, f.name, _INT_RANGES[f.type]) for i, f in enumerate(arrow_schema) if f.type in _INT_RANGES]
    fitted = []
    for row in rows:
        bad = [i for i, _, (lo, hi) in bounds if type(row[i]) is int and not lo <= row[i] <= hi]  # noqa: E721
        if bad:
            row = tuple(None if i in bad else v for i, v in enumerate(row))
            if tally is not None:
                for i in bad:
                    tally.nulled[arrow_schema.field(i).name] += 1
        fitted.append(row)
    return fitted

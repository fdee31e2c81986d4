"""GDPR Article 17 erasure (the right to be forgotten covers the raw archive too): find and remove every archived object
and every warehouse row that refers to one TikTok user, the same in the raw archive and in the warehouse.

What counts as the user's data, and what happens to it:

* **deleted whole** - objects *about* the user: ``userinfo-by-id/<id>``, ``user-posts/<id>-…``,
  ``user-followers/<id>-…``, ``user-following/<id>-…``, ``userid/<handle>``, ``userinfo-by-username/<handle>``,
  ``search-user/<handle>-…``, the Research API's ``user-info|user-followers|user-following/<handle>…``; every
  object of the user's posts (``post-detail|download-video/<aweme_id>``, ``post-comments/<aweme_id>-…``,
  ``post-comment-replies/<aweme_id>-…``, ``videos/dt=…/author=<handle>/…``, ``covers/dt=…/<aweme_id>.jpg``); any
  other object whose top-level entity is the user (a /post-detail/ whose author is the user), or that still
  mentions the user after redaction.
* **redacted** - objects where the user is one item among many (a follower list page of someone else, a
  hashtag / music / search listing, a comment page, a Research video query page): the user's items are removed,
  nested references to the user (``reply_to_user``…) become ``null``, ``@handle`` mentions in text become
  ``@[erased]``; the object is deleted and the redacted version put at the same key (stores never overwrite).
* **warehouse** - the user's rows in every table: ``posts`` by author, ``users``, ``user_snapshots``,
  ``comments`` by the user and on the user's posts, ``follow_edges`` on either side, ``post_metrics_history``,
  ``hashtags`` and ``dead_letters`` of the user's posts, and the Research tables when present.

Finding objects: key-level hits come from listings alone (no GET); every other raw object is streamed through
gzip in bounded chunks and checked for the user id (digit-bounded) and the handles (``"handle"`` or
``@handle``); only hits are parsed. Memory is bounded by one API page per worker.

The erasure log (state DB kv ``erasure-log:<utc time>-<request id>``) records who ran it, when, how many objects
and rows, and the keys with the user's id and handles masked as ``<subject>``: never the personal data itself.
A legal hold covering any object the erasure would delete or rewrite makes it refuse before changing anything.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from tiklive_assets.concurrency import bounded_map
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.storage import NotFound, ObjectInfo, ObjectStore
from tiklive_assets.storage.keys import (
    COVERS_PREFIX,
    RAW_PREFIX,
    RESEARCH_PREFIX,
    VIDEOS_PREFIX,
    check_handle,
    check_id,
    day_of_key,
    split_cover_key,
    split_raw_key,
    split_video_key,
)
from tiklive_assets.tikliveapi.endpoints import endpoint_names
from tiklive_assets.tolerant import as_id, post_id

from .legal_hold import (
    HoldSet,
    LegalHoldError,
    LegalHolds,
    as_holdset,
    current_operator,
    kv_items,
)

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB

logger = logging.getLogger(__name__)

RAW_PREFIXES: tuple[str, ...] = (f"{RAW_PREFIX}/", f"{RESEARCH_PREFIX}/")
PENDING_REWRITES = "_erasure/pending/"  # redacted copies staged before an object is replaced (crash safety)
ERASURE_LOG_PREFIX = "erasure-log:"
SUBJECT_MASK = "<subject>"

# raw endpoints whose slug entity is the subject user: by id, by handle (from the endpoint declarations' subject)
_USER_ID_ENDPOINTS = endpoint_names(subject="user_id")
_HANDLE_ENDPOINTS = endpoint_names(subject="handle")
_RESEARCH_HANDLE_ENDPOINTS = frozenset({"user-info", "user-followers", "user-following"})
# raw endpoints whose slug entity is an aweme id
_AWEME_ENDPOINTS = endpoint_names(subject="post") | {"video-comments"}  # Research API comment pages, by video id
# raw endpoints that never carry user data (no GET needed)
_NO_USER_DATA = endpoint_names(personal_data=False)
# dict keys that make a dict a user object, and where its id / handle live
_USER_MARKERS = ("unique_id", "uniqueId", "username", "sec_uid", "secUid", "nickname")
_ID_KEYS = ("id", "uid", "user_id", "userId")
_HANDLE_KEYS = ("unique_id", "uniqueId", "username")
_OWNER_KEYS = ("author", "user", "owner")
_READ_CHUNK = 64 * 1024
_MAX_OUT = 1 << 20
_ERASED = "[erased]"
_SUFFIX_RE = re.compile(r"(?:\.json\.gz|\.json|\.mp4|\.mp3|\.jpg)?(?:\.conflict-[0-9a-f]{16})?$")

Action = Literal["delete", "redact"]


class ErasureError(RuntimeError):
    """The erasure cannot run as asked; the message says why. Nothing was changed."""


# ------------------------------------------------------------------------------------------------
# matching
# ------------------------------------------------------------------------------------------------
class UserMatcher:
    """Recognises one user (id and any of their handles) in keys, byte streams and parsed JSON."""

    def __init__(self, user_id: str | None, handles: Iterable[str]) -> None:
        self.user_id = check_id(str(user_id), "user_id") if user_id not in (None, "") else None
        self.handles = frozenset(check_handle(h.strip().lstrip("@")).lower() for h in handles if h and h.strip())
        if self.user_id is None and not self.handles:
            raise ErasureError("give the user's TikTok user id, handle, or both")
        parts: list[bytes] = []
        if self.user_id:
            parts.append(rb"(?<![0-9])" + self.user_id.encode() + rb"(?![0-9])")
        for h in sorted(self.handles):
            esc = re.escape(h).encode()
            parts.append(b'"' + esc + b'"')
            parts.append(b"@" + esc + rb"(?![A-Za-z0-9._])")
        self.pattern = re.compile(b"|".join(parts), re.IGNORECASE)
        self.overlap = max(len(p) for p in [self.user_id or ""] + sorted(self.handles)) + 4
        mention = [f"@{re.escape(h)}(?![A-Za-z0-9._])" for h in sorted(self.handles)]
        self._mention = re.compile("|".join(mention), re.IGNORECASE) if mention else None
        self._id_text = re.compile(rf"(?<![0-9]){self.user_id}(?![0-9])") if self.user_id else None

    # -- keys --
    def is_handle(self, text: str) -> bool:
        return text.lower() in self.handles

    def is_id(self, text: str) -> bool:
        return self.user_id is not None and text == self.user_id

    def mask(self, key: str, aweme_ids: Iterable[str] = ()) -> str:
        """``key`` with the user's id and handles replaced by ``<subject>`` and the ids of the user's posts by
        ``<post>``, for the erasure log (which must not hold the personal data it erased)."""
        posts = set(aweme_ids)

        def token(match: re.Match) -> str:
            text = match.group(0)
            if self.is_id(text) or self.is_handle(text):
                return SUBJECT_MASK
            if text in posts:
                return "<post>"
            return text

        out = []
        for segment in key.split("/"):
            found = _SUFFIX_RE.search(segment)
            stem, suffix = segment[: found.start()], segment[found.start() :]
            out.append(re.sub(r"[A-Za-z0-9._]+", token, stem) + suffix)
        return "/".join(out)

    # -- bytes --
    def stream_mentions(self, stream) -> bool:
        """True when the gzip (or plain) byte stream may mention the user; reads in bounded chunks."""
        decomp = zlib.decompressobj(31)
        tail = b""
        plain = False
        while True:
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                break
            pieces: list[bytes] = []
            if plain:
                pieces.append(chunk)
            else:
                try:
                    data = chunk
                    while data:
                        out = decomp.decompress(data, _MAX_OUT)
                        pieces.append(out)
                        if decomp.eof:  # a further gzip member, or trailing bytes
                            data = decomp.unused_data
                            decomp = zlib.decompressobj(31)
                            if data and not data.startswith(b"\x1f\x8b"):
                                break
                        else:
                            data = decomp.unconsumed_tail
                except zlib.error:  # not gzip: scan the bytes as they are
                    plain = True
                    pieces = [chunk]
            for piece in pieces:
                if not piece:
                    continue
                window = tail + piece
                if self.pattern.search(window):
                    return True
                tail = window[-self.overlap :]
        return False

    def bytes_mention(self, data: bytes) -> bool:
        return self.pattern.search(data) is not None

    # -- parsed JSON --
    def matches_user(self, d: dict) -> bool:
        if not any(k in d for k in _USER_MARKERS):
            return False
        if self.user_id is not None:
            for k in _ID_KEYS:
                v = d.get(k)
                if v is not None and not isinstance(v, (dict, list)) and str(v) == self.user_id:
                    return True
        for k in _HANDLE_KEYS:
            v = d.get(k)
            if isinstance(v, str) and v.lstrip("@").lower() in self.handles:
                return True
        return False

    def belongs(self, d: dict) -> bool:
        """The dict is the user, or an item (post, comment) owned by the user."""
        if self.matches_user(d):
            return True
        return any(isinstance(d.get(k), dict) and self.matches_user(d[k]) for k in _OWNER_KEYS)

    def scrub_text(self, text: str, key: str | None = None) -> str:
        """``@handle`` mentions and the user id removed from free text; a handle field holding the handle emptied.

        A string that merely equals the handle elsewhere (a nickname "bob", a comment "bob") is not a reference to
        the account and is kept: handles are often ordinary words."""
        if key in _HANDLE_KEYS and text.lstrip("@").lower() in self.handles:
            return _ERASED
        if self._mention is not None:
            text = self._mention.sub("@" + _ERASED, text)
        if self._id_text is not None:
            text = self._id_text.sub(_ERASED, text)
        return text

    def scrub(self, node: Any, key: str | None = None) -> tuple[Any, int]:
        """(node without the user's items and references, how many items / references were removed)."""
        if isinstance(node, list):
            out, removed = [], 0
            for item in node:
                if isinstance(item, dict) and self.belongs(item):
                    removed += 1
                    continue
                new, n = self.scrub(item, key)
                out.append(new)
                removed += n
            return out, removed
        if isinstance(node, dict):
            result, removed = {}, 0
            for k, v in node.items():
                if isinstance(v, dict) and self.belongs(v):
                    result[k] = None
                    removed += 1
                    continue
                new, n = self.scrub(v, k)
                result[k] = new
                removed += n
            return result, removed
        if isinstance(node, str):
            new = self.scrub_text(node, key)
            return new, int(new != node)
        if (
            isinstance(node, int)
            and not isinstance(node, bool)
            and self.user_id is not None
            and str(node) == self.user_id
        ):
            return None, 1
        return node, 0

    def references(self, node: Any, key: str | None = None) -> bool:
        """True when ``node`` still refers to the user: a dict key naming them, the user id as a value or inside
        text, a handle field holding the handle, or an ``@handle`` mention. What :meth:`scrub` leaves never does,
        except dict keys: objects keyed by the user are deleted whole."""
        if isinstance(node, dict):
            return any(
                self.is_id(str(k)) or self.is_handle(str(k).lstrip("@")) or self.references(v, k)
                for k, v in node.items()
            )
        if isinstance(node, list):
            return any(self.references(v, key) for v in node)
        if isinstance(node, str):
            return self.scrub_text(node, key) != node
        if isinstance(node, int) and not isinstance(node, bool):
            return self.user_id is not None and str(node) == self.user_id
        return False


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------
@dataclass
class PlannedObject:
    key: str
    action: Action
    reason: str  # key:<endpoint> | key:video | key:cover | key:post | body:subject | body:items | body:residual
    size: int = 0
    removed_items: int = 0


@dataclass
class ErasurePlan:
    matcher: UserMatcher
    objects: dict[str, PlannedObject] = field(default_factory=dict)
    aweme_ids: set[str] = field(default_factory=set)
    scanned_objects: int = 0
    scanned_bytes: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add(self, obj: PlannedObject) -> None:
        current = self.objects.get(obj.key)
        if current is None or (current.action == "redact" and obj.action == "delete"):
            self.objects[obj.key] = obj

    @property
    def keys(self) -> list[str]:
        return sorted(self.objects)


def _owned_awemes(body: Any, matcher: UserMatcher) -> set[str]:
    """ids of posts in ``body`` whose author is the user: a post-detail or listing items (the id under
    ``aweme_id``, ``video_id`` or ``id``), and Research API videos (``id`` beside the author's ``username``)."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("author"), dict) and matcher.matches_user(node["author"]):
                if (aweme_id := post_id(node)) is not None:
                    found.add(aweme_id)
            elif (
                isinstance(node.get("username"), str)
                and matcher.is_handle(node["username"])
                and (video_id := as_id(node.get("id"))) is not None
            ):
                found.add(video_id)
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(body)
    return found


def _load_json(data: bytes) -> Any:
    try:
        text = zlib.decompress(data, 31)
    except zlib.error:
        try:
            text = gzip.decompress(data)
        except (OSError, EOFError):
            text = data
    return json.loads(text)


def _examine_body(
    store: ObjectStore, info: ObjectInfo, matcher: UserMatcher
) -> tuple[ObjectInfo, PlannedObject | None, set[str], str | None]:
    """Stream one object; on a hit parse it and decide: delete, redact, or (a false alarm) nothing."""
    try:
        with store.open_read(info.key) as stream:
            if not matcher.stream_mentions(stream):
                return info, None, set(), None
        data = store.get_bytes(info.key)
    except NotFound:  # deleted meanwhile
        return info, None, set(), None
    try:
        body = _load_json(data)
    except ValueError as exc:
        # unparseable and mentions the user: it cannot be redacted, so it goes
        return info, PlannedObject(info.key, "delete", "body:unparseable", info.size), set(), f"{info.key}: {exc}"
    owned = _owned_awemes(body, matcher)
    if isinstance(body, dict) and matcher.belongs(body):
        return info, PlannedObject(info.key, "delete", "body:subject", info.size), owned, None
    redacted, removed = matcher.scrub(body)
    if matcher.references(redacted):
        return info, PlannedObject(info.key, "delete", "body:residual", info.size), owned, None
    if removed == 0:
        return info, None, owned, None
    return info, PlannedObject(info.key, "redact", "body:items", info.size, removed), owned, None


# the numbered passes over the archive stay together: their order is what makes the plan complete
def plan_erasure(  # noqa: C901
    store: ObjectStore,
    matcher: UserMatcher,
    *,
    aweme_ids: Iterable[str] = (),
    raw_prefixes: Iterable[str] = RAW_PREFIXES,
    workers: int = 8,
) -> ErasurePlan:
    """Every object referring to the user, with what to do to it (see the module docstring). Reads only."""
    plan = ErasurePlan(matcher, aweme_ids={str(a) for a in aweme_ids})
    raw_prefixes = tuple(raw_prefixes)

    # 1. videos and sidecars by author handle (listing only); they also name the user's posts
    for info in store.list(VIDEOS_PREFIX):
        parts = split_video_key(info.key)
        if parts and (matcher.is_handle(parts[0]) or parts[1] in plan.aweme_ids):
            plan.add(PlannedObject(info.key, "delete", "key:video", info.size))
            plan.aweme_ids.add(parts[1])
    known_before_bodies = set(plan.aweme_ids)

    # 2. raw archives: key-level hits, then bodies of everything else that may carry user data
    def key_hit(info: ObjectInfo, prefix: str) -> PlannedObject | None | bool:
        parts = split_raw_key(info.key, prefix)
        if parts is None:
            return False  # not a raw key layout: scan its body anyway
        ep, entity = parts.endpoint, parts.entity
        if prefix == f"{RESEARCH_PREFIX}/":
            if ep in _RESEARCH_HANDLE_ENDPOINTS and matcher.is_handle(entity):
                return PlannedObject(info.key, "delete", f"key:{ep}", info.size)
            return False
        if ep in _USER_ID_ENDPOINTS and matcher.is_id(entity):
            return PlannedObject(info.key, "delete", f"key:{ep}", info.size)
        if ep in _HANDLE_ENDPOINTS and matcher.is_handle(entity):
            return PlannedObject(info.key, "delete", f"key:{ep}", info.size)
        if ep in _AWEME_ENDPOINTS and entity in plan.aweme_ids:
            return PlannedObject(info.key, "delete", "key:post", info.size)
        if ep in _NO_USER_DATA:
            return None
        return False

    def candidates(prefix: str) -> Iterator[ObjectInfo]:
        for info in store.list(prefix):
            hit = key_hit(info, prefix)
            if hit is None:
                continue
            if hit is not False:
                plan.add(hit)
                continue
            yield info

    for prefix in raw_prefixes:
        for info, obj, owned, error in bounded_map(
            lambda i: _examine_body(store, i, matcher),
            candidates(prefix),
            workers=workers,
            thread_name_prefix="erasure-scan",
        ):
            plan.scanned_objects += 1
            plan.scanned_bytes += info.size
            if obj is not None:
                plan.add(obj)
            plan.aweme_ids |= owned
            if error:
                plan.unreadable.append(error)

    # 3. posts discovered only in bodies: their per-post objects (listing only)
    discovered = plan.aweme_ids - known_before_bodies
    if discovered:
        for prefix in raw_prefixes:  # TikLiveAPI's per-post pages, and the Research API's comment pages
            for info in store.list(prefix):
                parts = split_raw_key(info.key, prefix)
                if parts and parts.endpoint in _AWEME_ENDPOINTS and parts.entity in discovered:
                    plan.add(PlannedObject(info.key, "delete", "key:post", info.size))
        for info in store.list(VIDEOS_PREFIX):
            parts = split_video_key(info.key)
            if parts and parts[1] in discovered:
                plan.add(PlannedObject(info.key, "delete", "key:video", info.size))

    # 4. covers of the user's posts (listing only)
    for info in store.list(COVERS_PREFIX):
        aweme = split_cover_key(info.key)
        if aweme is not None and aweme in plan.aweme_ids:
            plan.add(PlannedObject(info.key, "delete", "key:cover", info.size))
    return plan


def find_objects_for_user(
    store: ObjectStore,
    *,
    user_id: str | int | None = None,
    handle: str | None = None,
    handles: Iterable[str] = (),
    aweme_ids: Iterable[str] = (),
    workers: int = 8,
) -> list[str]:
    """Every key (sorted) that refers to the user: the objects :func:`erase_user` deletes or redacts."""
    matcher = UserMatcher(None if user_id is None else str(user_id), [*([handle] if handle else []), *handles])
    return plan_erasure(store, matcher, aweme_ids=aweme_ids, workers=workers).keys


# ------------------------------------------------------------------------------------------------
# warehouse
# ------------------------------------------------------------------------------------------------
_IN_BATCH = 1000


def _in(column: str, values: list[str]) -> tuple[str, list[Any]]:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def _table_exists(warehouse: Any, name: str) -> bool:
    rows = warehouse.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()",
        [name],
    )
    return bool(rows and rows[0][0])


def _or(conditions: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]] | None:
    conditions = [c for c in conditions if c is not None]
    if not conditions:
        return None
    return " OR ".join(f"({sql})" for sql, _ in conditions), [p for _, params in conditions for p in params]


def _warehouse_statements(
    warehouse: Any, user_id: str | None, handles: list[str], aweme_ids: list[str]
) -> list[tuple[str, str, list[Any]]]:
    """(table, WHERE, params) in execution order; batches of aweme ids never overlap earlier statements."""
    uid = (lambda col: (f"{col} = ?", [user_id])) if user_id else (lambda col: None)
    hnd = (lambda col: _in(f"lower({col})", handles)) if handles else (lambda col: None)
    plan: list[tuple[str, list | None, str | None]] = [
        # table, base conditions, column holding aweme ids of the user's posts
        ("post_metrics_history", [], "aweme_id"),
        ("hashtags", [uid("author_id")], "aweme_id"),
        ("dead_letters", [], "aweme_id"),
        ("comments", [uid("user_id"), hnd("user_handle")], "aweme_id"),
        ("posts", [uid("author_id"), hnd("author_handle")], "aweme_id"),
        ("user_snapshots", [uid("user_id"), hnd("handle")], None),
        ("users", [uid("user_id"), hnd("handle")], None),
        ("follow_edges", [uid("user_id"), uid("other_id"), hnd("other_handle")], None),
    ]
    if handles:
        videos_of = f"id IN (SELECT id FROM research_videos WHERE {_in('lower(username)', handles)[0]})"
        research = [
            ("research_video_counters", [(videos_of, list(handles))], None),
            # comments on the user's videos (the Research API names no commenter, so the video is the link)
            ("research_comments", [(videos_of.replace("id IN", "video_id IN", 1), list(handles))], None),
            ("research_videos", [hnd("username")], None),
            ("research_users", [hnd("username")], None),
            ("research_follows", [hnd("username"), hnd("other_username")], None),
        ]
        plan += [r for r in research if _table_exists(warehouse, r[0])]
    statements = []
    for table, base_conditions, aweme_col in plan:
        base = _or(base_conditions or [])
        batches = [aweme_ids[i : i + _IN_BATCH] for i in range(0, len(aweme_ids), _IN_BATCH)] if aweme_col else []
        if not batches:
            if base:
                statements.append((table, base[0], base[1]))
            continue
        for n, batch in enumerate(batches):
            in_sql, in_params = _in(aweme_col, batch)
            if n == 0:
                merged = _or([base, (in_sql, in_params)] if base else [(in_sql, in_params)])
                statements.append((table, merged[0], merged[1]))
            elif base:
                statements.append((table, f"NOT COALESCE(({base[0]}), FALSE) AND {in_sql}", base[1] + in_params))
            else:
                statements.append((table, in_sql, in_params))
    return statements


def resolve_user(
    warehouse: Any | None, user_id: str | None, handles: Iterable[str], state: StateDB | None = None
) -> tuple[str | None, set[str], set[str]]:
    """(user id, every handle known for them, aweme ids of their posts) from what was given plus the warehouse
    (past handles of a renamed account) and the state DB's handle -> id cache."""
    handles = {h.strip().lstrip("@").lower() for h in handles if h and h.strip()}
    uid = str(user_id) if user_id not in (None, "") else None
    if warehouse is not None and uid is None and handles:
        found: set[str] = set()
        for h in handles:
            found |= {r[0] for r in warehouse.query("SELECT user_id FROM users WHERE lower(handle) = ?", [h])}
            found |= {
                r[0]
                for r in warehouse.query("SELECT DISTINCT author_id FROM posts WHERE lower(author_handle) = ?", [h])
            }
        if len(found) > 1:
            raise ErasureError(
                f"the handle matches {len(found)} different user ids in the warehouse (a reused "
                "handle): give the user id explicitly"
            )
        uid = next(iter(found), None)
    if uid is None and state is not None:
        ids = {state.cached_user_id(h) for h in handles} - {None}
        if len(ids) == 1:
            uid = ids.pop()
    aweme: set[str] = set()
    if warehouse is not None:
        if uid is not None:
            for sql in (
                "SELECT DISTINCT lower(handle) FROM users WHERE user_id = ? AND handle IS NOT NULL",
                "SELECT DISTINCT lower(handle) FROM user_snapshots WHERE user_id = ? AND handle IS NOT NULL",
                "SELECT DISTINCT lower(author_handle) FROM posts WHERE author_id = ?",
                "SELECT DISTINCT lower(user_handle) FROM comments WHERE user_id = ? AND user_handle IS NOT NULL",
                "SELECT DISTINCT lower(other_handle) FROM follow_edges WHERE other_id = ? AND other_handle IS NOT NULL",
            ):
                handles |= {r[0] for r in warehouse.query(sql, [uid])}
            aweme |= {r[0] for r in warehouse.query("SELECT aweme_id FROM posts WHERE author_id = ?", [uid])}
            aweme |= {
                r[0] for r in warehouse.query("SELECT DISTINCT aweme_id FROM hashtags WHERE author_id = ?", [uid])
            }
        for h in handles:
            aweme |= {r[0] for r in warehouse.query("SELECT aweme_id FROM posts WHERE lower(author_handle) = ?", [h])}
    return uid, handles, aweme


# ------------------------------------------------------------------------------------------------
# erase
# ------------------------------------------------------------------------------------------------
@dataclass
class ErasureReport:
    request_id: str
    dry_run: bool
    subject_ref: str  # sha256 of "tiklive-erasure:<user id or handle>": lets the log prove an erasure, not who
    operator: str
    started_at: str
    user_id: str | None = None
    handles: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    redacted: dict[str, int] = field(default_factory=dict)  # key -> items removed
    reasons: dict[str, int] = field(default_factory=dict)  # why objects were picked, counted
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    warehouse_checked: bool = False
    held: dict[str, int] = field(default_factory=dict)  # hold prefix -> objects it covers (dry run reports them)
    affected_days: list[date] = field(default_factory=list)  # re-export / re-mart these days afterwards
    aweme_ids: int = 0
    scanned_objects: int = 0
    scanned_bytes: int = 0
    unreadable: list[str] = field(default_factory=list)
    rewrite_conflicts: list[str] = field(default_factory=list)  # redacted keys rewritten concurrently: run again
    seconds: float = 0.0

    @property
    def keys(self) -> list[str]:
        return sorted([*self.deleted, *self.redacted])

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        rverb = "would redact" if self.dry_run else "redacted"
        rows = sum(self.warehouse_rows.values())
        text = (
            f"erasure {self.request_id}: {verb} {len(self.deleted)} object(s), {rverb} {len(self.redacted)} "
            f"({sum(self.redacted.values())} item(s)), {verb} {rows} warehouse row(s) in "
            f"{sum(1 for n in self.warehouse_rows.values() if n)} table(s); scanned {self.scanned_objects} "
            f"object bodies in {self.seconds:.1f}s"
        )
        if self.held:
            text += f"; BLOCKED by legal hold(s) on {sorted(self.held)}"
        return text


def subject_ref(user_id: str | None, handles: Iterable[str]) -> str:
    ident = user_id if user_id else min(handles)
    return hashlib.sha256(f"tiklive-erasure:{ident}".encode()).hexdigest()


# the erasure's steps in their safe order (plan, holds, archive, warehouse, log) read top to bottom on purpose
def erase_user(  # noqa: C901
    store: ObjectStore,
    warehouse: Any | None,
    user_id: str | int | None = None,
    handle: str | None = None,
    *,
    dry_run: bool = True,
    holds: LegalHolds | HoldSet | None = None,
    state: StateDB | None = None,
    operator: str | None = None,
    workers: int = 8,
) -> ErasureReport:
    """Erase one user from the archive (``store``) and the warehouse (an open Warehouse, or None to skip it).

    ``dry_run`` (the default) only reports what would go, and reports covering legal holds instead of refusing.
    A real run needs the state DB (``state``, or the one behind ``holds``) for the holds and the erasure log; it
    raises :class:`LegalHoldError` before changing anything when a hold covers an object it would touch, and is
    idempotent: running it again after an interruption finishes the job.
    """
    started = time.monotonic()
    if state is None and isinstance(holds, LegalHolds):
        state = holds.state
    if holds is None and state is not None:
        holds = LegalHolds(state)
    if not dry_run and state is None:
        raise ErasureError("a real erasure needs the state DB (for legal holds and the erasure log): pass state=")
    uid, handles, aweme = resolve_user(
        warehouse, None if user_id is None else str(user_id), [handle] if handle else [], state
    )
    matcher = UserMatcher(uid, handles)
    report = ErasureReport(
        request_id=uuid.uuid4().hex[:12],
        dry_run=dry_run,
        subject_ref=subject_ref(matcher.user_id, matcher.handles),
        operator=current_operator(operator),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        user_id=matcher.user_id,
        handles=sorted(matcher.handles),
    )
    if not dry_run:  # first put back what an interrupted erasure left half rewritten, so this plan sees it
        for key in finish_pending_rewrites(store):
            logger.warning(
                "erasure %s: finished the redacted rewrite of %s that an interrupted erasure left half done",
                report.request_id,
                key,
            )
    plan = plan_erasure(store, matcher, aweme_ids=aweme, workers=workers)
    report.scanned_objects, report.scanned_bytes = plan.scanned_objects, plan.scanned_bytes
    report.unreadable = plan.unreadable
    report.aweme_ids = len(plan.aweme_ids)
    for obj in plan.objects.values():
        report.reasons[obj.reason] = report.reasons.get(obj.reason, 0) + 1
        if obj.action == "delete":
            report.deleted.append(obj.key)
        else:
            report.redacted[obj.key] = obj.removed_items
    report.deleted.sort()
    report.affected_days = sorted({d for d in map(day_of_key, plan.objects) if d is not None})

    holdset = as_holdset(holds)
    held_by: dict[str, Any] = {}
    for key in plan.objects:
        hold = holdset.covers(key)
        if hold is not None:
            report.held[hold.prefix] = report.held.get(hold.prefix, 0) + 1
            held_by[hold.prefix] = hold

    statements = []
    if warehouse is not None:
        statements = _warehouse_statements(warehouse, matcher.user_id, sorted(matcher.handles), sorted(plan.aweme_ids))
        report.warehouse_checked = True

    if dry_run:
        for table, where, params in statements:
            n = int(warehouse.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0])
            report.warehouse_rows[table] = report.warehouse_rows.get(table, 0) + n
        report.seconds = time.monotonic() - started
        return report

    if report.held:
        raise LegalHoldError(f"erase a user ({len(plan.objects)} object(s))", report.held, list(held_by.values()))

    log_key = f"{ERASURE_LOG_PREFIX}{report.started_at}-{report.request_id}"
    _write_log(state, log_key, report, matcher, "started", plan.aweme_ids)
    for key in sorted(plan.objects):
        obj = plan.objects[key]
        if obj.action == "delete":
            store.delete(key)
        else:
            _rewrite_redacted(store, obj, matcher, report)
        crashpoint("erasure.object.done")
    for table, where, params in statements:
        n = int(warehouse.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0])
        if n:
            warehouse.query(f"DELETE FROM {table} WHERE {where}", params)
        report.warehouse_rows[table] = report.warehouse_rows.get(table, 0) + n
    report.seconds = time.monotonic() - started
    _write_log(
        state, log_key, report, matcher, "completed" if not report.rewrite_conflicts else "incomplete", plan.aweme_ids
    )
    logger.info(report.summary())
    return report


def _rewrite_redacted(store: ObjectStore, obj: PlannedObject, matcher: UserMatcher, report: ErasureReport) -> None:
    try:
        data = store.get_bytes(obj.key)
    except NotFound:
        return
    body = _load_json(data)
    if isinstance(body, dict) and matcher.belongs(body):
        store.delete(obj.key)
        return
    redacted, removed = matcher.scrub(body)
    payload = json.dumps(redacted, ensure_ascii=False).encode()
    if matcher.references(redacted):  # changed since planning: it goes whole
        store.delete(obj.key)
        return
    report.redacted[obj.key] = removed
    if removed == 0:
        return  # already redacted (a re-run)
    fetched = int.from_bytes(data[4:8], "little") if data[:2] == b"\x1f\x8b" else 0  # keep the capture time
    compressed = gzip.compress(payload, compresslevel=6, mtime=fetched)
    # The redacted copy is staged first: a process killed between the delete and the put below loses nothing (the
    # other users' data in this object); the next erasure run finishes the rewrite from the staged copy.
    staged = f"{PENDING_REWRITES}{obj.key}"
    store.delete(staged)
    store.put_bytes(staged, compressed, content_type="application/json", content_encoding="gzip")
    store.delete(obj.key)
    crashpoint("erasure.rewrite.deleted")
    result = store.put_bytes(obj.key, compressed, content_type="application/json", content_encoding="gzip")
    store.delete(staged)
    if result.status == "conflict":  # something wrote the key between our delete and put
        report.rewrite_conflicts.append(obj.key)
        logger.warning(
            "erasure %s: %s was written concurrently; the redacted copy is at %s: run the erasure again",
            report.request_id,
            obj.key,
            result.conflict_key,
        )


def finish_pending_rewrites(store: ObjectStore) -> list[str]:
    """Complete redacted rewrites a killed erasure left half done: the staged copy goes where the object was
    deleted (unless something is there again), then the staged copy is removed. Returns the keys restored."""
    restored = []
    for info in list(store.list(PENDING_REWRITES)):
        key = info.key[len(PENDING_REWRITES) :]
        if not store.exists(key):
            store.put_bytes(key, store.get_bytes(info.key), content_type="application/json", content_encoding="gzip")
            restored.append(key)
        store.delete(info.key)
    return restored


def _write_log(
    state: StateDB,
    log_key: str,
    report: ErasureReport,
    matcher: UserMatcher,
    status: str,
    aweme_ids: Iterable[str] = (),
) -> None:
    entry = {
        "request_id": report.request_id,
        "status": status,
        "operator": report.operator,
        "started_at": report.started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds") if status != "started" else None,
        "subject_ref": report.subject_ref,
        "deleted_objects": len(report.deleted),
        "redacted_objects": len(report.redacted),
        "redacted_items": sum(report.redacted.values()),
        "warehouse_rows": report.warehouse_rows,
        "warehouse_checked": report.warehouse_checked,
        "affected_days": [d.isoformat() for d in report.affected_days],
        "deleted_keys": sorted({matcher.mask(k, aweme_ids) for k in report.deleted}),
        "redacted_keys": sorted({matcher.mask(k, aweme_ids) for k in report.redacted}),
        "rewrite_conflicts": [matcher.mask(k, aweme_ids) for k in report.rewrite_conflicts],
    }
    state.set_value(log_key, json.dumps(entry, sort_keys=True))


def erasure_log(state: StateDB) -> list[dict[str, Any]]:
    """Every erasure log entry, oldest first."""
    out = []
    for _key, value in kv_items(state, ERASURE_LOG_PREFIX):
        if value:
            out.append(json.loads(value))
    return out

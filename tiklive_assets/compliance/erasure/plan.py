"""The erasure plan: every archived object that refers to the user, and whether it is deleted or redacted.

Key-level hits come from listings alone (no GET); every other raw object is streamed through gzip in bounded
chunks and checked for the user (:meth:`UserMatcher.stream_mentions`); only hits are parsed.

A compacted day's raw objects are members of bundles (one per endpoint and day): their keys come from the bundle's
index (no body read), and the bodies the plan must see are read from the bundle, one read per bundle. The plan
records which bundle holds each planned key (:attr:`ErasurePlan.bundled`), so the erasure rewrites that bundle.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from tiklive_assets.concurrency import bounded_map
from tiklive_assets.research.endpoints import archive_names as research_names
from tiklive_assets.storage import NotFound, ObjectInfo, ObjectStore
from tiklive_assets.storage.bundles import Bundle, read_bundle, read_member
from tiklive_assets.storage.keys import (
    COVERS_PREFIX,
    RAW_PREFIX,
    RESEARCH_PREFIX,
    VIDEOS_PREFIX,
    split_cover_key,
    split_raw_key,
    split_video_key,
)
from tiklive_assets.tikliveapi.endpoints import endpoint_names
from tiklive_assets.tolerant import as_id, post_id

from ..bundled import live_bundles
from .matcher import UserMatcher

RAW_PREFIXES: tuple[str, ...] = (f"{RAW_PREFIX}/", f"{RESEARCH_PREFIX}/")

# raw endpoints whose slug entity is the subject user: by id, by handle (from the endpoint declarations' subject)
_USER_ID_ENDPOINTS = endpoint_names(subject="user_id")
_HANDLE_ENDPOINTS = endpoint_names(subject="handle")
_RESEARCH_HANDLE_ENDPOINTS = research_names(subject="handle")
# raw endpoints whose slug entity is an aweme id
_AWEME_ENDPOINTS = endpoint_names(subject="post") | research_names(subject="post")  # research comment pages too
# raw endpoints that never carry user data (no GET needed)
_NO_USER_DATA = endpoint_names(personal_data=False)

Action = Literal["delete", "redact"]


@dataclass(frozen=True)
class BundledInfo(ObjectInfo):
    """A raw object stored as a member of a bundle: its key, size and capture time from the bundle's index, the
    bundle that holds it, and its body when the bundle was already read."""

    bundle: str = ""
    body: bytes | None = field(default=None, compare=False, repr=False)


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
    bundled: dict[str, str] = field(default_factory=dict)  # planned raw key -> the live bundle holding it

    def add(self, obj: PlannedObject, where: ObjectInfo | None = None) -> None:
        """Plan ``obj`` (a delete wins over a redaction); ``where``, the object as listed, says if a bundle holds it."""
        current = self.objects.get(obj.key)
        if current is None or (current.action == "redact" and obj.action == "delete"):
            self.objects[obj.key] = obj
        if isinstance(where, BundledInfo):
            self.bundled[obj.key] = where.bundle

    def examined(self, info: ObjectInfo, obj: PlannedObject | None, owned: set[str], error: str | None) -> None:
        """Count one body read, and keep what it showed: the object's action, the user's posts it names, an error."""
        self.scanned_objects += 1
        self.scanned_bytes += info.size
        if obj is not None:
            self.add(obj, info)
        self.aweme_ids |= owned
        if error:
            self.unreadable.append(error)

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


def load_json(data: bytes) -> Any:
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
        if isinstance(info, BundledInfo):
            data = info.body if info.body is not None else read_member(store, info.bundle, info.key)
            if not matcher.stream_mentions(io.BytesIO(data)):
                return info, None, set(), None
        else:
            with store.open_read(info.key) as stream:
                if not matcher.stream_mentions(stream):
                    return info, None, set(), None
            data = store.get_bytes(info.key)
    except (NotFound, KeyError):  # deleted (or rewritten without it) meanwhile
        return info, None, set(), None
    try:
        body = load_json(data)
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


def api_root(prefix: str) -> str:
    """The archive root (``tiklive-raw/`` or ``research-raw/``) of a listing prefix, which may name a day in it."""
    return next((root for root in RAW_PREFIXES if prefix.startswith(root)), prefix)


def key_decision(
    info: ObjectInfo, prefix: str, matcher: UserMatcher, aweme_ids: set[str]
) -> PlannedObject | None | Literal[False]:
    """What the key of a raw object (under ``prefix``) alone says: delete it (the key names the user or one of
    ``aweme_ids``), None (its endpoint never carries user data), or False (its body must be read)."""
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
    if ep in _AWEME_ENDPOINTS and entity in aweme_ids:
        return PlannedObject(info.key, "delete", "key:post", info.size)
    if ep in _NO_USER_DATA:
        return None
    return False


# the numbered passes over the archive stay together: their order is what makes the plan complete
def plan_erasure(  # noqa: C901
    store: ObjectStore,
    matcher: UserMatcher,
    *,
    aweme_ids: Iterable[str] = (),
    raw_prefixes: Iterable[str] = RAW_PREFIXES,
    media_prefixes: tuple[Iterable[str], Iterable[str]] = ((VIDEOS_PREFIX,), (COVERS_PREFIX,)),
    workers: int = 8,
) -> ErasurePlan:
    """Every object referring to the user, with what to do to it (see the module docstring). Reads only.

    ``raw_prefixes`` and ``media_prefixes`` (videos, covers) narrow the scan to some days (the days the archive
    index does not cover yet); by default it is the whole archive."""
    plan = ErasurePlan(matcher, aweme_ids={str(a) for a in aweme_ids})
    raw_prefixes = tuple(raw_prefixes)
    video_prefixes, cover_prefixes = tuple(media_prefixes[0]), tuple(media_prefixes[1])

    # 1. videos and sidecars by author handle (listing only); they also name the user's posts
    for info in _listing(store, video_prefixes):
        parts = split_video_key(info.key)
        if parts and (matcher.is_handle(parts[0]) or parts[1] in plan.aweme_ids):
            plan.add(PlannedObject(info.key, "delete", "key:video", info.size))
            plan.aweme_ids.add(parts[1])
    known_before_bodies = set(plan.aweme_ids)

    # 2. raw archives: key-level hits, then bodies of everything else that may carry user data
    def key_hit(info: ObjectInfo, prefix: str) -> PlannedObject | None | Literal[False]:
        return key_decision(info, api_root(prefix), matcher, plan.aweme_ids)

    def candidates(prefix: str) -> Iterator[ObjectInfo]:
        for info in store.list(prefix):
            hit = key_hit(info, prefix)
            if hit is None:
                continue
            if hit is not False:
                plan.add(hit)
                continue
            yield info
        for bundle, members in bundled_members(store, prefix):
            bodies = []
            for info in members:
                hit = key_hit(info, prefix)
                if hit is None:
                    continue
                if hit is not False:
                    plan.add(hit, info)
                    continue
                bodies.append(info)
            if bodies:  # one read of the bundle for every body it must show
                yield from with_bodies(bundle, bodies)

    for prefix in raw_prefixes:
        for info, obj, owned, error in bounded_map(
            lambda i: _examine_body(store, i, matcher),
            candidates(prefix),
            workers=workers,
            thread_name_prefix="erasure-scan",
        ):
            plan.examined(info, obj, owned, error)

    # 3. posts discovered only in bodies: their per-post objects (listing only)
    discovered = plan.aweme_ids - known_before_bodies
    if discovered:
        for prefix in raw_prefixes:  # TikLiveAPI's per-post pages, and the Research API's comment pages
            for info in raw_listing(store, prefix):
                raw = split_raw_key(info.key, api_root(prefix))
                if raw and raw.endpoint in _AWEME_ENDPOINTS and raw.entity in discovered:
                    plan.add(PlannedObject(info.key, "delete", "key:post", info.size), info)
        for info in _listing(store, video_prefixes):
            parts = split_video_key(info.key)
            if parts and parts[1] in discovered:
                plan.add(PlannedObject(info.key, "delete", "key:video", info.size))

    # 4. covers of the user's posts (listing only)
    for info in _listing(store, cover_prefixes):
        aweme = split_cover_key(info.key)
        if aweme is not None and aweme in plan.aweme_ids:
            plan.add(PlannedObject(info.key, "delete", "key:cover", info.size))
    return plan


def bundled_members(store: ObjectStore, prefix: str) -> Iterator[tuple[Bundle, list[BundledInfo]]]:
    """(bundle, its members under ``prefix``) of every live bundle under a raw ``prefix``: the bundle is opened
    (footer and index columns), its bodies are read only when asked for."""
    for live in live_bundles(store, prefix):
        try:
            bundle = read_bundle(store, live.key)
        except NotFound:  # rewritten since the listing
            continue
        members = [
            BundledInfo(m.key, m.size, m.fetched_at, bundle=live.key)
            for m in bundle.members
            if m.key.startswith(prefix)
        ]
        if members:
            yield bundle, members


def with_bodies(bundle: Bundle, infos: list[BundledInfo]) -> Iterator[BundledInfo]:
    """``infos`` with their bodies, read from ``bundle`` a row group at a time."""
    for info in infos:
        yield BundledInfo(info.key, info.size, info.last_modified, bundle=bundle.key, body=bundle.body(info.key))


def raw_listing(store: ObjectStore, prefix: str) -> Iterator[ObjectInfo]:
    """Every raw object under ``prefix``: the loose ones, then the members of live bundles (their keys only)."""
    yield from store.list(prefix)
    for _bundle, members in bundled_members(store, prefix):
        yield from members


def _listing(store: ObjectStore, prefixes: tuple[str, ...]) -> Iterator[ObjectInfo]:
    for prefix in prefixes:
        yield from store.list(prefix)


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

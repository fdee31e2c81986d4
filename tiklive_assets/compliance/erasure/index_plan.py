"""The erasure plan through the archive index: read only the objects the index names.

The index (exported beside the archive, one part per day: :mod:`tiklive_assets.warehouse.archive_index_store`)
says which objects refer to which users and which objects belong to which posts. The plan looks the user up
(their id and every handle), takes the posts they authored from it, looks those posts up, and then decides each
named object exactly as the full scan does (:func:`.plan.key_decision` on its key, :func:`.plan._examine_body`
on its body): the same objects are deleted or redacted, and only they are read. A post found in a body that the
index did not attribute to the user is looked up too, until nothing new turns up.

A key the index names that is no longer loose is looked up in the bundles (compaction packed its day): it is
decided by its key as before, and its body, when needed, is one ranged read of the bundle.

A day without an index part yet (captured but not loaded, or loaded before the index existed) is scanned whole,
bundles included, and the plan says which days those were. ``verify_scan`` runs the full scan as well: what it finds and
the index missed is reported, and erased too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from tiklive_assets.concurrency import bounded_map
from tiklive_assets.storage import ObjectInfo, ObjectStore
from tiklive_assets.storage.bundles import live_bundles_of_day, read_index
from tiklive_assets.storage.keys import (
    COVERS_PREFIX,
    RAW_PREFIX,
    RESEARCH_PREFIX,
    VIDEOS_PREFIX,
    cover_key,
    day_of_key,
    split_raw_key,
    split_video_key,
)
from tiklive_assets.warehouse.archive_index_store import (
    IndexHits,
    archive_days,
    day_prefixes,
    lookup,
    read_part_bytes,
    refs_of,
)

from ..bundled import bundled_days
from .matcher import UserMatcher
from .plan import (
    _AWEME_ENDPOINTS,
    BundledInfo,
    ErasurePlan,
    PlannedObject,
    _examine_body,
    key_decision,
    plan_erasure,
    raw_listing,
)

_RAW_HEADS = (f"{RAW_PREFIX}/", f"{RESEARCH_PREFIX}/")


@dataclass
class IndexUse:
    """How the plan used the index: days it covered, days scanned whole, what was read."""

    indexed_days: list[date] = field(default_factory=list)
    scanned_days: list[date] = field(default_factory=list)  # no index part yet: scanned whole
    parts_read: int = 0
    index_bytes: int = 0
    objects_named: int = 0  # distinct objects the index named for the user and their posts
    bodies_read: int = 0  # of those, objects whose bytes were read (the others are decided by their key)
    verify_scanned: int = 0  # --verify-scan: bodies the full scan read
    missed: list[str] = field(default_factory=list)  # --verify-scan: objects the scan found and the index did not


def read_parts(store: ObjectStore, days: Iterable[date]) -> dict[date, bytes]:
    parts = {}
    for day in days:
        data = read_part_bytes(store, day)
        if data is not None:
            parts[day] = data
    return parts


def plan_with_index(
    store: ObjectStore,
    matcher: UserMatcher,
    *,
    aweme_ids: Iterable[str] = (),
    workers: int = 8,
    verify_scan: bool = False,
) -> tuple[ErasurePlan, IndexUse] | None:
    """The plan through the index, or None when no day of the archive has an index part (scan everything)."""
    days = sorted(set(archive_days(store)) | bundled_days(store))  # a compacted day may have no loose object left
    parts = read_parts(store, days)
    if not parts:
        return None
    use = IndexUse(indexed_days=sorted(parts), scanned_days=[d for d in days if d not in parts])
    use.parts_read, use.index_bytes = len(parts), sum(len(p) for p in parts.values())
    plan = ErasurePlan(matcher, aweme_ids={str(a) for a in aweme_ids})
    hits = lookup(parts, refs_of(matcher.user_id, matcher.handles))
    for rows in hits.rows.values():
        plan.aweme_ids |= {aweme for _key, role, aweme in rows if role == "author" and aweme}
    if use.scanned_days:
        _merge(plan, _scan_days(store, matcher, plan.aweme_ids, use.scanned_days, workers))
    looked_up: set[str] = set()
    infos: dict[str, ObjectInfo | None] = {}
    members: dict[str, dict[str, BundledInfo]] = {}  # "<api root><day>/<endpoint>" -> its bundled members
    while True:
        new_posts = plan.aweme_ids - looked_up
        looked_up |= new_posts
        lookup(parts, refs_of(None, (), new_posts), hits)
        named = hits.keys() | _covers(store, hits, plan.aweme_ids)
        _decide(store, plan, matcher, named, infos, use, workers, members)
        if plan.aweme_ids <= looked_up:
            break
        if use.scanned_days:  # posts found now: their per-post objects on the scanned days (listing only)
            _merge(plan, _listing_pass(store, matcher, plan.aweme_ids, use.scanned_days))
    use.objects_named = len(infos)
    if verify_scan:
        full = plan_erasure(store, matcher, aweme_ids=aweme_ids, workers=workers)
        use.verify_scanned = full.scanned_objects
        use.missed = sorted(set(full.objects) - set(plan.objects))
        _merge(plan, full, counts=False)
    return plan, use


def _decide(
    store: ObjectStore,
    plan: ErasurePlan,
    matcher: UserMatcher,
    keys: set[str],
    infos: dict[str, ObjectInfo | None],
    use: IndexUse,
    workers: int,
    members: dict[str, dict[str, BundledInfo]],
) -> None:
    """Each named object decided as the full scan decides it: by its key (again on every round, as the user's posts
    grow), else by its body (read once; ``infos`` holds the objects already met)."""
    bodies: list[ObjectInfo] = []
    for key in sorted(keys):
        seen = key in infos
        info = infos[key] if seen else infos.setdefault(key, store.stat(key) or _bundled_info(store, key, members))
        if info is None:  # gone since it was indexed
            continue
        if key.startswith(VIDEOS_PREFIX):
            parts = split_video_key(key)
            if parts and (matcher.is_handle(parts[0]) or parts[1] in plan.aweme_ids):
                plan.add(PlannedObject(key, "delete", "key:video", info.size))
                plan.aweme_ids.add(parts[1])
            continue
        if key.startswith(COVERS_PREFIX):
            plan.add(PlannedObject(key, "delete", "key:cover", info.size))
            continue
        prefix = next((head for head in _RAW_HEADS if key.startswith(head)), None)
        if prefix is None:
            continue
        hit = key_decision(info, prefix, matcher, plan.aweme_ids)
        if hit is False:
            hit = _post_object(info, prefix, plan.aweme_ids)
        if hit is None:
            continue
        if hit is not False:
            plan.add(hit, info)
        elif not seen:
            bodies.append(info)
    for info, obj, owned, error in bounded_map(
        lambda i: _examine_body(store, i, matcher), bodies, workers=workers, thread_name_prefix="erasure-index"
    ):
        use.bodies_read += 1
        plan.examined(info, obj, owned, error)


def _bundled_info(store: ObjectStore, key: str, members: dict[str, dict[str, BundledInfo]]) -> BundledInfo | None:
    """The bundled member stored under raw ``key`` (compacted since it was indexed), or None: gone. ``members``
    keeps each day and endpoint's live bundle index once read (one listing and one index read each)."""
    prefix = next((head for head in _RAW_HEADS if key.startswith(head)), None)
    parts = split_raw_key(key, prefix) if prefix is not None else None
    if prefix is None or parts is None or parts.day is None:
        return None
    where = f"{prefix}{parts.day}/{parts.endpoint}"
    if where not in members:
        holder = live_bundles_of_day(store, parts.day, prefix.rstrip("/")).get(parts.endpoint)
        members[where] = (
            {}
            if holder is None
            else {m.key: BundledInfo(m.key, m.size, m.fetched_at, bundle=holder) for m in read_index(store, holder)}
        )
    return members[where].get(key)


def _post_object(info: ObjectInfo, prefix: str, aweme_ids: set[str]) -> PlannedObject | Literal[False]:
    """A per-post object (either API's) of one of the user's posts: deleted by its key, as the full scan's pass
    over the posts it found in bodies does."""
    parts = split_raw_key(info.key, prefix)
    if parts is not None and parts.endpoint in _AWEME_ENDPOINTS and parts.entity in aweme_ids:
        return PlannedObject(info.key, "delete", "key:post", info.size)
    return False


def _covers(store: ObjectStore, hits: IndexHits, aweme_ids: set[str]) -> set[str]:
    """Covers of the user's posts: a cover is stored the day its post is resolved, beside its detail and media,
    so each post's cover is looked for on the days the index has that post's own objects."""
    found = set()
    for aweme in aweme_ids:
        for key, role, _aweme in hits.rows.get(f"post:{aweme}", ()):
            day = day_of_key(key)
            if day is None or not (role == "post" or key.startswith(VIDEOS_PREFIX)):
                continue
            cover = cover_key(day, aweme) if aweme.isdigit() else None
            if cover is not None and cover not in found and store.exists(cover):
                found.add(cover)
    return found


def _scan_days(
    store: ObjectStore, matcher: UserMatcher, aweme_ids: set[str], days: list[date], workers: int
) -> ErasurePlan:
    """The full scan of some days only (they have no index part)."""
    prefixes = [day_prefixes(day) for day in days]
    return plan_erasure(
        store,
        matcher,
        aweme_ids=aweme_ids,
        raw_prefixes=[p for day in prefixes for p in day[:2]],
        media_prefixes=([day[2] for day in prefixes], [day[3] for day in prefixes]),
        workers=workers,
    )


def _listing_pass(store: ObjectStore, matcher: UserMatcher, aweme_ids: set[str], days: list[date]) -> ErasurePlan:
    """The per-post objects of ``aweme_ids`` on scanned days, by their keys alone (no GET)."""
    plan = ErasurePlan(matcher, aweme_ids=set(aweme_ids))
    for day in map(day_prefixes, days):
        for head, prefix in zip(_RAW_HEADS, day[:2], strict=True):
            for info in raw_listing(store, prefix):
                hit = _post_object(info, head, plan.aweme_ids)
                if hit:
                    plan.add(hit, info)
        for info in store.list(day[2]):
            parts = split_video_key(info.key)
            if parts and parts[1] in aweme_ids:
                plan.add(PlannedObject(info.key, "delete", "key:video", info.size))
        for info in store.list(day[3]):
            if info.key.rsplit("/", 1)[-1].split(".", 1)[0] in aweme_ids:
                plan.add(PlannedObject(info.key, "delete", "key:cover", info.size))
    return plan


def _merge(plan: ErasurePlan, other: ErasurePlan, counts: bool = True) -> None:
    for obj in other.objects.values():
        plan.add(obj)
    plan.bundled.update(other.bundled)
    plan.aweme_ids |= other.aweme_ids
    if counts:
        plan.scanned_objects += other.scanned_objects
        plan.scanned_bytes += other.scanned_bytes
        plan.unreadable.extend(other.unreadable)

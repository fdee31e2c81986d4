"""The raw archive's bundles as erasure, legal holds and retention see them.

Once a day leaves the hot period, compaction packs its raw objects into one bundle per endpoint and day
(:mod:`tiklive_assets.storage.bundles`), byte for byte, and deletes the loose objects. Holds, the archive index and
erasure requests still name the original raw keys, so this module answers, for such a key or prefix, which bundle
holds it, and rewrites a bundle without some members.

A bundle is **held** when a legal hold covers the bundle's own key or any of its members: deleting it (retention)
or replacing it by a new generation (erasure) deletes the stored copy of the held member, so it is refused exactly
as it is for a held loose key. Readers use only the highest generation of each (day, endpoint); a lower one left
by an interrupted rewrite is a stale copy, removed by :func:`settle_generations` once the highest one reads back
intact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.storage import NotFound, ObjectStore
from tiklive_assets.storage.base import ObjectLocked
from tiklive_assets.storage.bundles import (
    BUNDLE_PREFIX,
    BundleError,
    Member,
    bundle_key,
    bundles_of_day,
    parse_bundle_key,
    read_bundle,
    read_index,
    write_bundle,
)
from tiklive_assets.storage.keys import RAW_PREFIX, RESEARCH_PREFIX

from .legal_hold import Hold, HoldSet

logger = logging.getLogger(__name__)

_DAY_SEGMENTS = 4
RAW_HEADS = (f"{RAW_PREFIX}/", f"{RESEARCH_PREFIX}/")  # "<archive prefix>/YYYY/MM/DD" of a raw key


@dataclass(frozen=True)
class LiveBundle:
    """The live (highest) generation of one (archive prefix, day, endpoint), and the stale ones beside it."""

    key: str
    member_dir: str  # "<archive prefix>/YYYY/MM/DD/<endpoint>/": where its members' keys live
    stale: tuple[str, ...] = ()


def _listing_head(raw_prefix: str) -> str:
    """The bundle listing prefix that can hold members under ``raw_prefix`` (cut at the day: the endpoint is a
    file name in the bundle layout, not a directory)."""
    parts = raw_prefix.split("/")
    if len(parts) > _DAY_SEGMENTS:
        raw_prefix = "/".join(parts[:_DAY_SEGMENTS]) + "/"
    return f"{BUNDLE_PREFIX}/{raw_prefix}"


def live_bundles(store: ObjectStore, raw_prefix: str = "") -> list[LiveBundle]:
    """Every live bundle whose members may start with ``raw_prefix`` (a raw key prefix such as
    ``tiklive-raw/2026/05/28/`` or ``tiklive-raw/``), in key order of their member directories."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for info in store.list(_listing_head(raw_prefix)):
        parsed = parse_bundle_key(info.key)
        if parsed is None:
            continue
        member_dir = f"{parsed.archive_prefix}/{parsed.day:%Y/%m/%d}/{parsed.endpoint}/"
        if member_dir.startswith(raw_prefix) or raw_prefix.startswith(member_dir):
            groups.setdefault(member_dir, []).append((parsed.generation, info.key))
    out = []
    for member_dir in sorted(groups):
        ordered = sorted(groups[member_dir])
        out.append(LiveBundle(ordered[-1][1], member_dir, tuple(k for _g, k in ordered[:-1])))
    return out


def member_dir_of(raw_key: str) -> str:
    """``<archive prefix>/YYYY/MM/DD/<endpoint>/`` of a raw key."""
    return "/".join(raw_key.split("/")[: _DAY_SEGMENTS + 1]) + "/"


def bundle_hold(holds: HoldSet, store: ObjectStore, bundle: LiveBundle | str) -> Hold | None:
    """The hold that keeps ``bundle`` as it is (one covering the bundle's key or a member), or None. The members
    are read from the bundle's index only when some hold can reach its day and endpoint."""
    key = bundle.key if isinstance(bundle, LiveBundle) else bundle
    if not holds:
        return None
    hold = holds.covers(key)
    if hold is not None:
        return hold
    member_dir = bundle.member_dir if isinstance(bundle, LiveBundle) else _member_dir(key)
    if member_dir is None or not holds.overlapping(member_dir):
        return None
    for member in read_index(store, key):
        if (hold := holds.covers(member.key)) is not None:
            return hold
    return None


def _member_dir(key: str) -> str | None:
    parsed = parse_bundle_key(key)
    return None if parsed is None else f"{parsed.archive_prefix}/{parsed.day:%Y/%m/%d}/{parsed.endpoint}/"


def bundles_of_keys(store: ObjectStore, keys: Iterable[str]) -> dict[str, set[str]]:
    """The live bundles holding any of ``keys`` (raw keys), with the keys each holds; loose or absent keys are
    not in it. One bundle listing per day, one index read per day and endpoint met."""
    wanted: dict[str, dict[str, set[str]]] = {}  # day head -> member dir -> keys
    for key in keys:
        if not key.startswith(RAW_HEADS):
            continue  # media and covers are never bundled
        head = "/".join(key.split("/")[:_DAY_SEGMENTS]) + "/"
        wanted.setdefault(head, {}).setdefault(member_dir_of(key), set()).add(key)
    out: dict[str, set[str]] = {}
    for head, dirs in sorted(wanted.items()):
        for bundle in live_bundles(store, head):
            in_dir = dirs.get(bundle.member_dir)
            if in_dir and (found := {m.key for m in read_index(store, bundle.key)} & in_dir):
                out[bundle.key] = found
    return out


def bundles_under(store: ObjectStore, prefix: str) -> list[str]:
    """The live bundles a prefix hold on ``prefix`` reaches: those with a member under it (a hold finer than an
    endpoint's day reads that bundle's index), and bundles whose own key starts with it."""
    if prefix.startswith(f"{BUNDLE_PREFIX}/"):
        return [info.key for info in store.list(prefix)]
    found = []
    for bundle in live_bundles(store, prefix):
        if bundle.member_dir.startswith(prefix) or any(m.key.startswith(prefix) for m in read_index(store, bundle.key)):
            found.append(bundle.key)
    return found


@dataclass
class Rewrite:
    """One bundle rewritten without some members: the generation written (None: no member was left) and what
    changed."""

    old: str
    new: str | None
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    conflict: bool = False


class RewriteFailed(RuntimeError):
    """The new generation did not read back as written; it was removed and the old one kept (nothing lost)."""


def rewrite_bundle(
    store: ObjectStore,
    key: str,
    transform: Callable[[Member, bytes], bytes | None],
    *,
    crash_name: str = "bundle.rewrite.written",
) -> Rewrite:
    """Write the next generation of bundle ``key`` with each member's body replaced by ``transform(member, body)``
    (None: the member is left out; the same bytes: kept as it is), verify it byte for byte, then delete ``key``
    (and any older generation). Nothing is written when no member changes.

    The store never overwrites: the new generation is a new key, and until the old one is deleted readers already
    use the new one (the highest generation). A process killed between the two leaves a stale old generation that
    :func:`settle_generations` removes. With no member left, the old generation is only deleted."""
    parsed = parse_bundle_key(key)
    if parsed is None:
        raise ValueError(f"{key!r} is not a bundle key")
    result = Rewrite(key, None)
    items: list[tuple[Member, bytes]] = []
    for member, body in read_bundle(store, key):
        new_body = transform(member, body)
        if new_body is None:
            result.removed.append(member.key)
            continue
        if new_body != body:
            member = Member(member.key, hashlib.sha256(new_body).hexdigest(), len(new_body), member.fetched_at)
            result.replaced.append(member.key)
        items.append((member, new_body))
    if not result.removed and not result.replaced:
        return Rewrite(key, key)
    if items:
        new = bundle_key(parsed.archive_prefix, parsed.day, parsed.endpoint, parsed.generation + 1)
        try:
            write_bundle(store, new, items)
        except BundleError:  # something else wrote that generation meanwhile: leave both, say so
            result.conflict = True
            return result
        if not _reads_back(store, new, items):
            store.delete(new)
            raise RewriteFailed(f"{new} did not read back as written; {key} is kept")
        result.new = new
    crashpoint(crash_name)
    for older in [key, *_older_generations(store, key)]:
        store.delete(older)
    return result


def _reads_back(store: ObjectStore, key: str, items: list[tuple[Member, bytes]]) -> bool:
    try:
        got = [(member.key, member.sha256, body) for member, body in read_bundle(store, key)]
    except (NotFound, ValueError, OSError):
        return False
    want = sorted((member.key, member.sha256, body) for member, body in items)
    return sorted(got) == want and all(hashlib.sha256(body).hexdigest() == sha for _k, sha, body in got)


def _older_generations(store: ObjectStore, key: str) -> list[str]:
    parsed = parse_bundle_key(key)
    if parsed is None:
        return []
    out = []
    for other in bundles_of_day(store, parsed.day, parsed.archive_prefix):
        found = parse_bundle_key(other)
        if found is not None and found.endpoint == parsed.endpoint and found.generation < parsed.generation:
            out.append(other)
    return out


def intact(store: ObjectStore, key: str) -> bool:
    """True when every member of bundle ``key`` reads back with the sha256 and size its index records."""
    try:
        return all(
            hashlib.sha256(body).hexdigest() == member.sha256 and len(body) == member.size
            for member, body in read_bundle(store, key)
        )
    except (NotFound, ValueError, OSError, KeyError):
        return False


def settle_generations(
    store: ObjectStore, raw_prefix: str = "", *, holds: HoldSet | None = None, kept: list[str] | None = None
) -> list[str]:
    """Delete the stale generations an interrupted rewrite left beside a live bundle that reads back intact
    (a live one that does not is left alone and logged: its predecessor is then the only good copy). A stale
    generation a legal hold covers, or the store refuses to delete (its own hold or retention), is kept, logged and
    added to ``kept``. Returns the keys deleted."""
    deleted = []
    for bundle in live_bundles(store, raw_prefix):
        if not bundle.stale:
            continue
        if not intact(store, bundle.key):
            logger.warning("%s does not read back intact: kept its older generation(s) %s", bundle.key, bundle.stale)
            continue
        for key in bundle.stale:
            if holds is not None and holds.covers(key):
                logger.warning("%s: a stale bundle generation kept, as a legal hold covers it", key)
            else:
                try:
                    store.delete(key)
                    deleted.append(key)
                    continue
                except ObjectLocked:
                    logger.warning("%s: a stale bundle generation kept, as the store locks it", key)
            if kept is not None:
                kept.append(key)
    return deleted


def iter_members(store: ObjectStore, raw_prefix: str) -> Iterator[tuple[LiveBundle, Member]]:
    """Every member under ``raw_prefix`` of the live bundles (their indexes only: no body is read)."""
    for bundle in live_bundles(store, raw_prefix):
        for member in read_index(store, bundle.key):
            if member.key.startswith(raw_prefix):
                yield bundle, member


def bundled_days(store: ObjectStore) -> set[date]:
    """Every day that has a live bundle (either API's archive)."""
    days = set()
    for bundle in live_bundles(store):
        parsed = parse_bundle_key(bundle.key)
        if parsed is not None:
            days.add(parsed.day)
    return days

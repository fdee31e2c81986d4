"""Compaction: once a day is past the hot period, its raw objects become one bundle per endpoint.

Why: a raw response is a 2-5 KB gzip object, while the cold storage classes bill every object as at least
128 KiB (or add 40 KiB of index to each) and charge one request per object for every lifecycle transition, so
tiering loose objects multiplies the bill. A bundle (:mod:`tiklive_assets.storage.bundles`) keeps every member's
exact bytes and is read a member at a time by ranged reads, so replay and erasure work on it as on loose objects.

Rules, per (day, endpoint):

* the bundle holds the complete set: when the endpoint already has a bundle, a new generation holds its members
  plus the newly packed loose objects; the store never overwrites an object, so a rewrite is a new key;
* the new bundle is read back and every member is checked against the loose object's sha256 and bytes before
  anything is deleted; then older generations, then the packed loose objects are deleted;
* keys under a legal hold are never packed: they stay loose, since deleting them is what a hold forbids; a live
  bundle covered by a hold (its key or a member) is never replaced either, so late objects of that endpoint stay
  loose too, and the result says so;
* a loose object whose key a bundle already holds with other bytes (written again after compaction deleted the
  first) is packed at ``<key>.conflict-<sha256[:16]>``, as the store itself keeps different bytes for a key.

Every step can be interrupted and rerun: a bundle written but not verified is verified on the next run (its
members are the loose objects still there), and a loose object is only deleted once a live bundle holds its bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.pricing import GB, ProviderPrices
from tiklive_assets.storage import NotFound, ObjectInfo, ObjectStore
from tiklive_assets.storage.base import ObjectLocked
from tiklive_assets.storage.bundles import (
    ENDPOINT_BUNDLE_RULE,
    Bundle,
    Member,
    bundle_key,
    bundles_of_day,
    parse_bundle_key,
    read_bundle,
    write_bundle,
)
from tiklive_assets.storage.keys import (
    RAW_PREFIX,
    RAW_SUFFIX,
    InvalidKeyPart,
    conflict_key,
    is_conflict_key,
    split_raw_key,
)

from .legal_hold import Hold, HoldSet, LegalHolds, as_holdset

logger = logging.getLogger(__name__)

Progress = Callable[[str, int], None]  # (endpoint, loose objects of it handled)
DELETE_BATCH = 500  # loose objects deleted at a time (one directory sync per batch on local disk)


class CompactionError(RuntimeError):
    """A bundle did not read back as the loose objects it packs: nothing was deleted."""


@dataclass
class EndpointCompaction:
    endpoint: str
    packed: int = 0  # loose objects now in the live bundle (newly, or found there on a rerun)
    packed_bytes: int = 0
    bundle: str | None = None  # the live bundle after this run
    bundle_bytes: int = 0
    written: bool = False  # a new generation was written by this run
    deleted: int = 0  # loose objects deleted
    generations_deleted: int = 0
    generations_kept: list[str] = field(default_factory=list)  # stale generations a legal hold or store lock kept
    vanished: list[str] = field(default_factory=list)  # loose keys deleted (an erasure) while this run packed them
    held: list[str] = field(default_factory=list)  # loose keys left loose because a legal hold covers them
    held_bundle: str | None = None  # the hold that kept the live bundle from being replaced


@dataclass
class CompactionResult:
    day: date
    archive_prefix: str
    dry_run: bool
    endpoints: dict[str, EndpointCompaction] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # loose keys compaction cannot name a bundle for
    skipped_sizes: list[int] = field(default_factory=list, repr=False)
    objects_before: int = 0  # raw objects stored for the day (loose + bundles), before
    objects_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    sizes_before: list[int] = field(default_factory=list, repr=False)  # object sizes, for the cost figures
    sizes_after: list[int] = field(default_factory=list, repr=False)

    @property
    def objects_packed(self) -> int:
        return sum(e.packed for e in self.endpoints.values())

    @property
    def bytes_packed(self) -> int:
        return sum(e.packed_bytes for e in self.endpoints.values())

    @property
    def bundles_written(self) -> list[str]:
        return [e.bundle for e in self.endpoints.values() if e.written and e.bundle]

    @property
    def held_left_loose(self) -> list[str]:
        return sorted(key for e in self.endpoints.values() for key in e.held)

    @property
    def loose_deleted(self) -> int:
        return sum(e.deleted for e in self.endpoints.values())

    def summary(self) -> str:
        verb = "would pack" if self.dry_run else "packed"
        text = (
            f"{self.archive_prefix} {self.day}: {verb} {self.objects_packed:,} object(s) "
            f"({self.bytes_packed:,} bytes) into {len(self.endpoints) - len(self._untouched())} bundle(s); "
            f"objects {self.objects_before:,} -> {self.objects_after:,}"
        )
        if self.held_left_loose:
            text += f"; {len(self.held_left_loose):,} held key(s) left loose (a legal hold forbids deleting them)"
        kept = sum(len(e.generations_kept) for e in self.endpoints.values())
        if kept:
            text += f"; {kept:,} stale bundle generation(s) kept (a legal hold or store lock forbids deleting them)"
        vanished = sum(len(e.vanished) for e in self.endpoints.values())
        if vanished:
            text += f"; {vanished:,} object(s) deleted meanwhile (an erasure) were left out of the bundle"
        if self.skipped:
            text += f"; {len(self.skipped):,} key(s) outside the raw layout left loose"
        return text

    def _untouched(self) -> list[str]:
        return [name for name, e in self.endpoints.items() if e.bundle is None]


def raw_day_prefix(day: date, archive_prefix: str = RAW_PREFIX) -> str:
    return f"{archive_prefix}/{day:%Y/%m/%d}/"


def _endpoint_of(info: ObjectInfo, day: date, archive_prefix: str, valid: dict[str, bool]) -> str | None:
    """The endpoint a loose key is bundled under, or None when no bundle key can name it (``valid`` caches the
    answer per endpoint name)."""
    parts = split_raw_key(info.key, archive_prefix)
    if parts is None or parts.day != day:
        return None
    if parts.endpoint not in valid:
        try:
            bundle_key(archive_prefix, day, parts.endpoint)
            valid[parts.endpoint] = True
        except InvalidKeyPart:
            valid[parts.endpoint] = False
    return parts.endpoint if valid[parts.endpoint] else None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compact_day(
    store: ObjectStore,
    day: date,
    *,
    holds: LegalHolds | HoldSet | Iterable[Hold] | None = None,
    archive_prefix: str = RAW_PREFIX,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CompactionResult:
    """Pack the day's loose raw objects into one bundle per endpoint (see the module docstring for the rules)."""
    held = as_holdset(holds)
    result = CompactionResult(day, archive_prefix, dry_run)
    loose: dict[str, list[ObjectInfo]] = {}
    valid: dict[str, bool] = {}
    for info in store.list(raw_day_prefix(day, archive_prefix)):
        if RAW_SUFFIX not in info.key:
            continue
        result.sizes_before.append(info.size)
        endpoint = _endpoint_of(info, day, archive_prefix, valid)
        if endpoint is None:
            logger.warning("%s: not in the raw layout of %s (%s); left loose", info.key, day, ENDPOINT_BUNDLE_RULE)
            result.skipped.append(info.key)
            result.skipped_sizes.append(info.size)
            continue
        loose.setdefault(endpoint, []).append(info)
    generations: dict[str, list[tuple[int, str]]] = {}
    for key in bundles_of_day(store, day, archive_prefix):
        parsed = parse_bundle_key(key)
        assert parsed is not None
        generations.setdefault(parsed.endpoint, []).append((parsed.generation, key))
        result.sizes_before.append(_size(store, key))
    for endpoint in sorted(set(loose) | set(generations)):
        outcome = EndpointCompaction(endpoint)
        result.endpoints[endpoint] = outcome
        _compact_endpoint(store, day, archive_prefix, endpoint, loose.get(endpoint, []),
                          generations.get(endpoint, []), held, outcome, dry_run)  # fmt: skip
        if progress:
            progress(endpoint, len(loose.get(endpoint, [])))
    _tally(store, result, loose, generations)
    return result


def _tally(
    store: ObjectStore,
    result: CompactionResult,
    loose: dict[str, list[ObjectInfo]],
    generations: dict[str, list[tuple[int, str]]],
) -> None:
    result.objects_before = len(result.sizes_before)
    result.bytes_before = sum(result.sizes_before)
    if result.dry_run:  # what the store would hold: the held and skipped loose objects, and one bundle each
        kept = {key for e in result.endpoints.values() for key in e.held}
        result.sizes_after = [i.size for infos in loose.values() for i in infos if i.key in kept]
        result.sizes_after += result.skipped_sizes
        result.sizes_after += [e.bundle_bytes for e in result.endpoints.values() if e.bundle]
    else:
        prefix = raw_day_prefix(result.day, result.archive_prefix)
        result.sizes_after = [i.size for i in store.list(prefix) if RAW_SUFFIX in i.key]
        for key in bundles_of_day(store, result.day, result.archive_prefix):
            result.sizes_after.append(_size(store, key))
    result.objects_after = len(result.sizes_after)
    result.bytes_after = sum(result.sizes_after)


def _bundle_hold(held: HoldSet, key: str, bundle: Bundle) -> Hold | None:
    return held.covers(key) or next((h for m in bundle.members if (h := held.covers(m.key))), None)


def _compact_endpoint(  # noqa: C901 - the steps of one (day, endpoint), in the order that keeps them crash-safe
    store: ObjectStore,
    day: date,
    archive_prefix: str,
    endpoint: str,
    loose: list[ObjectInfo],
    generations: list[tuple[int, str]],
    held: HoldSet,
    outcome: EndpointCompaction,
    dry_run: bool,
) -> None:
    generations.sort()
    live = read_bundle(store, generations[-1][1]) if generations else None
    covered = {info.key for info in loose if held.covers(info.key)} if held else set()
    candidates = [info for info in loose if info.key not in covered]
    outcome.held = sorted(covered)
    if live is not None:
        outcome.bundle, outcome.bundle_bytes = live.key, _size(store, live.key)
        hold = _bundle_hold(held, live.key, live)
        late = [i.key for i in candidates if i.key not in live]
        if hold is not None and late:
            outcome.held_bundle = hold.prefix
            outcome.held += late  # packing them would replace a bundle a hold covers
            candidates = [i for i in candidates if i.key in live]
    members = {m.key: m for m in live.members} if live is not None else {}
    targets: dict[str, str] = {}  # loose key -> the member key its bytes are (or go) under
    bodies: dict[str, bytes] = {}
    fresh: list[tuple[Member, bytes]] = []  # loose objects not yet in the live bundle
    for info in candidates:
        try:
            data = store.get_bytes(info.key)
        except NotFound:  # deleted since the listing (an erasure, or another compaction run)
            continue
        digest = _sha(data)
        target = info.key
        if target in members and members[target].sha256 != digest and not is_conflict_key(target):
            target = conflict_key(info.key, digest)  # written again after the first bytes were packed
        if target in members and members[target].sha256 != digest:
            raise CompactionError(
                f"{info.key} is loose with sha256 {digest} but {members[target].key} in {outcome.bundle} holds "
                "other bytes: inspect both by hand; nothing was deleted"
            )
        targets[info.key], bodies[info.key] = target, data
        if target not in members:
            fresh.append((Member(target, digest, len(data), info.last_modified), data))
    outcome.packed = len(targets)
    outcome.packed_bytes = sum(len(b) for b in bodies.values())
    if dry_run:
        if fresh:
            outcome.bundle = outcome.bundle or bundle_key(archive_prefix, day, endpoint)
            outcome.bundle_bytes += sum(m.size for m, _ in fresh)
        return
    loose_bytes = {targets[k]: (_sha(b), b) for k, b in bodies.items()}
    superseded = [key for _, key in generations]
    if fresh:
        generation = generations[-1][0] + 1 if generations else 1
        base = list(live) if live is not None else []
        new_key, holding = _write_verified(store, bundle_key(archive_prefix, day, endpoint, generation),
                                           [*base, *fresh], loose_bytes)  # fmt: skip
        # A loose key deleted while this run read and wrote it (an erasure, which found no bundle holding it yet)
        # must not come back inside the bundle: the next generation is written without it, then this one goes.
        while gone := _vanished(store, targets):
            outcome.vanished += gone
            dropped = {targets.pop(key) for key in gone}
            for key in gone:
                del bodies[key]
            loose_bytes = {k: v for k, v in loose_bytes.items() if k not in dropped}
            fresh = [(m, b) for m, b in fresh if m.key not in dropped]
            tainted = new_key
            if fresh:
                generation += 1
                new_key, holding = _write_verified(store, bundle_key(archive_prefix, day, endpoint, generation),
                                                   [*base, *fresh], loose_bytes)  # fmt: skip
            store.delete(tainted)  # it holds the deleted objects' bytes
            crashpoint("compaction.tainted.deleted")
            if not fresh:
                break
        outcome.packed = len(targets)
        outcome.packed_bytes = sum(len(b) for b in bodies.values())
        if fresh:
            outcome.bundle, outcome.bundle_bytes, outcome.written = new_key, _size(store, new_key), True
    if not fresh:  # nothing new to pack (or all of it deleted meanwhile): the live bundle, if any, stays
        if live is None:
            return
        superseded = superseded[:-1]
        holding = _verify(store, live.key, loose_bytes, complete=False) if loose_bytes else set(members)
    for key in superseded:  # older generations: deleted only when the live one holds all of their members
        if all(m.key in holding for m in read_bundle(store, key).members):
            if held.covers(key):  # a hold on the bundle's key forbids deleting it, stale or not
                outcome.generations_kept.append(key)
                continue
            try:
                store.delete(key)
            except ObjectLocked:  # the store's own legal hold or retention on it
                outcome.generations_kept.append(key)
                continue
            outcome.generations_deleted += 1
            crashpoint("compaction.generation.deleted")
    keys = list(targets)
    for start in range(0, len(keys), DELETE_BATCH):
        chunk = keys[start : start + DELETE_BATCH]
        try:
            store.delete_many(chunk)
            outcome.deleted += len(chunk)
        except ObjectLocked:  # the store's own legal hold on some of them: those are kept, as a hold requires
            for key in chunk:
                try:
                    store.delete(key)
                    outcome.deleted += 1
                except ObjectLocked:
                    outcome.held.append(key)
        crashpoint("compaction.loose.deleted")  # some loose objects of the endpoint deleted, others not yet


def _write_verified(
    store: ObjectStore, key: str, items: list[tuple[Member, bytes]], loose_bytes: dict[str, tuple[str, bytes]]
) -> tuple[str, set[str]]:
    """Write bundle ``key`` of ``items`` and read it back against them and the loose objects' bytes."""
    write_bundle(store, key, items)
    crashpoint("compaction.bundle.written")  # written, not yet verified; nothing deleted
    expected = {m.key: (m.sha256, b) for m, b in items} | loose_bytes
    return key, _verify(store, key, expected, complete=True)


def _vanished(store: ObjectStore, targets: dict[str, str]) -> list[str]:
    """The packed loose keys no longer in the store (one listing of their common prefix, not a request each)."""
    if not targets:
        return []
    prefix = os.path.commonprefix(list(targets))
    present = {info.key for info in store.list(prefix)}
    return sorted(key for key in targets if key not in present)


def _size(store: ObjectStore, key: str) -> int:
    info = store.stat(key)
    return info.size if info else 0


def _verify(store: ObjectStore, key: str, expected: dict[str, tuple[str, bytes]], *, complete: bool) -> set[str]:
    """Read ``key`` back from the store and check every expected member's sha256 and bytes (and, when
    ``complete``, that it holds nothing else); returns its member keys, or raises CompactionError."""
    found: dict[str, bytes] = {}
    for member, body in read_bundle(store, key):
        if member.key in expected:
            found[member.key] = body
        elif complete:
            raise CompactionError(f"{key} holds {member.key!r}, which was not packed: nothing was deleted")
        if len(body) != member.size or _sha(body) != member.sha256:
            raise CompactionError(f"{key}: member {member.key!r} does not match its recorded sha256: nothing deleted")
        found.setdefault(member.key, b"")
    for raw, (digest, data) in expected.items():
        got = found.get(raw)
        if got is None or _sha(got) != digest or got != data:
            raise CompactionError(f"{key} does not hold the exact bytes of {raw!r}: nothing was deleted")
    return set(found)


@dataclass(frozen=True)
class StorageCosts:
    """What a set of objects costs a month in each tier of one provider, every object billed by its class's rules
    (minimum billed size, per-object overhead), and the one-time lifecycle transitions that move them (one request
    per object into the warm class, and again into the cold one)."""

    objects: int
    monthly: dict[str, float]  # tier (hot, warm, cold) -> USD a month
    transitions: float  # USD, once: hot -> warm -> cold


def storage_costs(sizes: list[int], prices: ProviderPrices) -> StorageCosts:
    monthly = {}
    for tier in ("hot", "warm", "cold"):
        price = prices.tier(tier)
        monthly[tier] = sum(price.billed_bytes(size) for size in sizes) / GB * price.gb_month
    transitions = 0.0
    for before, after in (("hot", "warm"), ("warm", "cold")):
        if getattr(prices, before) != getattr(prices, after):  # no lifecycle move when the class stays the same
            transitions += len(sizes) * prices.tier(after).transition_per_1000 / 1000  # type: ignore[arg-type]
    return StorageCosts(len(sizes), monthly, transitions)

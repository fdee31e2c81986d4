"""Tiered retention of the raw archive (hot 30 days, warm 12 months, cold thereafter), honouring legal holds.

Tiering moves bundles only. Once a day leaves the hot period, compaction packs its raw objects into one bundle per
endpoint and day under ``tiklive-bundles/<prefix>`` (:mod:`tiklive_assets.storage.bundles`); the loose objects under
``tiklive-raw/`` (the hot days, and keys a legal hold keeps loose) stay in the standard class. Tiering tiny objects
costs more than it saves: a raw response is a 2-5 KB gzip object, while the warm and cold classes bill every
object as at least 128 KiB (plus per-object metadata overhead in the cold ones) and charge a request per object for
each transition; one bundle of a few MB pays those once.

Two ways to apply one :class:`RetentionPolicy`:

* on S3 (AWS; other S3-compatible stores support subsets of lifecycle), :func:`lifecycle_rules` emits the
  ``LifecycleConfiguration`` for ``put_bucket_lifecycle_configuration``: one tiering rule per bundle prefix
  (transitions to the warm and cold storage classes; transitions never destroy data, so they ignore holds), a
  housekeeping rule per loose prefix (aborting stale multipart uploads, no transition) and, only when the policy
  deletes (``delete_after_days``), expiration rules for both that leave held prefixes out (a bundle's day is held
  when a hold reaches any of its members' days). S3 filters cannot say
  "prefix except X", so the expiration is split into the complement of the held prefixes over the
  ``YYYY/MM/DD/`` part of the key (a hold finer than a day keeps its whole day). :func:`apply_lifecycle` puts it.
* on local disk or a store without lifecycle, :func:`apply_retention` deletes the raw days older than
  ``delete_after_days`` itself, loose objects and bundles alike, skipping every held key and every bundle holding
  one, and optionally the matching warehouse rows so that "the policy is the same in the warehouse and in the raw
  archive".

By default nothing is ever deleted (``delete_after_days=None``: cold forever, the default policy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from tiklive_assets.storage import MirroredStore, ObjectStore, S3Store
from tiklive_assets.storage.base import ObjectLocked
from tiklive_assets.storage.bundles import BUNDLE_PREFIX, parse_bundle_key, read_index
from tiklive_assets.storage.keys import RAW_PREFIX, raw_key_day

from .bundled import bundle_hold
from .legal_hold import Hold, HoldSet, LegalHolds, as_holdset

logger = logging.getLogger(__name__)

STORE_LOCK = "(store object lock)"  # what held_prefixes counts deletes the store refused under
MAX_LIFECYCLE_RULES = 1000  # AWS S3's limit per bucket
_IA_CLASSES = {"STANDARD_IA", "ONEZONE_IA"}
_STORAGE_CLASSES = {"STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}
# the alphabet of each character of "YYYY/MM/DD/" in a raw key (after the prefix)
_DAY_ALPHABET = ("0123456789",) * 4 + ("/", "01", "0123456789", "/", "0123", "0123456789", "/")
_DAY_PART = len(_DAY_ALPHABET)


class LifecycleTooLarge(ValueError):
    """Excluding the held prefixes would need more lifecycle rules than S3 allows."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Hot for ``warm_after_days``, warm until ``cold_after_days``, cold after; deleted after ``delete_after_days``
    when set (never, by default). Ages count from the archive day in the key (on S3: from object creation, and a
    bundle is created when its day leaves the hot period, so S3 tiers and expires a compacted day that much later
    than its age says: never sooner). ``prefixes`` are the loose archive prefixes; their bundles live under
    ``tiklive-bundles/<prefix>`` (:meth:`bundle_prefix`), and only those are tiered."""

    warm_after_days: int = 30
    cold_after_days: int = 365
    delete_after_days: int | None = None
    prefixes: tuple[str, ...] = (f"{RAW_PREFIX}/",)
    warm_storage_class: str | None = "STANDARD_IA"
    cold_storage_class: str | None = "GLACIER"
    abort_multipart_after_days: int | None = 7
    noncurrent_expire_days: int | None = None  # versioned buckets: drop deleted/overwritten versions after N days

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        problems = []
        if not self.prefixes:
            problems.append("at least one prefix is needed")
        for prefix in self.prefixes:
            if not prefix or not prefix.endswith("/") or prefix.startswith("/"):
                problems.append(f"prefix {prefix!r} must be a key prefix ending in '/' (like 'tiklive-raw/')")
        if self.warm_after_days < 0 or self.cold_after_days < 0:
            problems.append("ages must not be negative")
        for name in ("warm_storage_class", "cold_storage_class"):
            value = getattr(self, name)
            if value is not None and value not in _STORAGE_CLASSES:
                problems.append(f"{name}={value!r} is not one of {sorted(_STORAGE_CLASSES)}")
        if self.warm_storage_class in _IA_CLASSES and self.warm_after_days < 30:
            problems.append(f"S3 moves objects to {self.warm_storage_class} no sooner than 30 days")
        if self.warm_storage_class and self.cold_storage_class and self.cold_after_days <= self.warm_after_days:
            problems.append("cold_after_days must be greater than warm_after_days")
        if self.delete_after_days is not None:
            if self.delete_after_days < 1:
                problems.append("delete_after_days must be at least 1 (or None: keep forever)")
            last = max([0] + [d for d, c in self.transitions()])
            if self.delete_after_days <= last:
                problems.append(
                    f"delete_after_days ({self.delete_after_days}) must come after the last tier "
                    f"transition ({last} days)"
                )
        for name in ("abort_multipart_after_days", "noncurrent_expire_days"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1 or None")
        if problems:
            raise ValueError("invalid retention policy: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RetentionPolicy:
        """From a config mapping (e.g. a ``retention:`` section of tiklive.yaml); unknown keys are an error."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown retention setting(s) {unknown}; known: {sorted(known)}")
        if "prefixes" in data:
            data["prefixes"] = tuple(data["prefixes"])
        return cls(**data)

    @staticmethod
    def bundle_prefix(prefix: str) -> str:
        """Where the bundles of loose ``prefix`` live: ``tiklive-raw/`` -> ``tiklive-bundles/tiklive-raw/``."""
        return f"{BUNDLE_PREFIX}/{prefix}"

    def transitions(self) -> list[tuple[int, str]]:
        out = []
        if self.warm_storage_class:
            out.append((self.warm_after_days, self.warm_storage_class))
        if self.cold_storage_class:
            out.append((self.cold_after_days, self.cold_storage_class))
        return out

    def tier(self, age_days: int) -> str:
        """'hot', 'warm', 'cold' or 'expired' for an object ``age_days`` old."""
        if self.delete_after_days is not None and age_days > self.delete_after_days:
            return "expired"
        if age_days >= self.cold_after_days:
            return "cold"
        if age_days >= self.warm_after_days:
            return "warm"
        return "hot"

    def cutoff(self, today: date) -> date | None:
        """Raw days strictly before this date are past ``delete_after_days``; None when nothing expires."""
        if self.delete_after_days is None:
            return None
        return today - timedelta(days=self.delete_after_days)


# ------------------------------------------------------------------------------------------------
# S3 Lifecycle
# ------------------------------------------------------------------------------------------------
def _rule_id(prefix: str, what: str) -> str:
    return f"tiklive-{what}-{prefix.strip('/').replace('/', '-') or 'root'}"[:255]


def _join(bucket_prefix: str, key_prefix: str) -> str:
    bucket_prefix = bucket_prefix.strip("/")
    return f"{bucket_prefix}/{key_prefix}" if bucket_prefix else key_prefix


def unheld_day_prefixes(prefix: str, holds: Iterable[Hold]) -> list[str] | None:
    """Prefixes that together cover every dated key ``<prefix>YYYY/MM/DD/…`` not under a hold, or None when no
    hold touches ``prefix`` (then ``[prefix]`` itself is the answer). ``[]`` means everything is held.

    A hold finer than a day (``<prefix>2025/03/14/user-posts/``) is widened to its day: retention keeps more than
    the policy asks, never less than the hold."""
    held: set[str] = set()
    for hold in holds:
        if prefix.startswith(hold.prefix):
            return []
        if hold.prefix.startswith(prefix):
            held.add(hold.prefix[len(prefix) :][:_DAY_PART])
    if not held:
        return None
    out: list[str] = []

    def walk(path: str, candidates: list[str]) -> None:
        for char in _DAY_ALPHABET[len(path)]:
            child = path + char
            below = [h for h in candidates if h.startswith(child)]
            if not below:
                out.append(prefix + child)
            elif child not in below:
                walk(child, below)
            # else: child itself is held

    walk("", sorted(held))
    return out


def _as_bundle_hold(hold: Hold, prefix: str) -> Hold:
    """A prefix hold under loose ``prefix`` as the hold of the bundles of the same days."""
    return Hold(RetentionPolicy.bundle_prefix(prefix) + hold.prefix[len(prefix) :], hold.reason, "", "")


def _prefix_rules(
    policy: RetentionPolicy, prefix: str, tiered: bool, holds: list[Hold], bucket_prefix: str
) -> list[dict[str, Any]]:
    """The rules of one prefix: tiering (bundles) or housekeeping only (loose objects), then the expiration."""
    rules: list[dict[str, Any]] = []
    tiering: dict[str, Any] = {
        "ID": _rule_id(prefix, "tiering" if tiered else "housekeeping"),
        "Filter": {"Prefix": _join(bucket_prefix, prefix)},
        "Status": "Enabled",
    }
    transitions = [{"Days": days, "StorageClass": cls} for days, cls in policy.transitions()]
    if transitions and tiered:
        tiering["Transitions"] = transitions
    if policy.abort_multipart_after_days:
        tiering["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": policy.abort_multipart_after_days}
    if len(tiering) > 3:
        rules.append(tiering)
    if policy.delete_after_days is None and policy.noncurrent_expire_days is None:
        return rules
    expire: dict[str, Any] = {}
    if policy.delete_after_days is not None:
        expire["Expiration"] = {"Days": policy.delete_after_days}
    if policy.noncurrent_expire_days is not None:
        expire["NoncurrentVersionExpiration"] = {"NoncurrentDays": policy.noncurrent_expire_days}
    targets = unheld_day_prefixes(prefix, holds)
    if targets is None:
        targets = [prefix]
    for target in targets:  # distinct leaves of a trie: their IDs are distinct too
        rule_id = _rule_id(prefix, "expire")
        if target != prefix:
            rule_id += "-" + target[len(prefix) :].rstrip("/").replace("/", "-")
        rules.append(
            {"ID": rule_id[:255], "Filter": {"Prefix": _join(bucket_prefix, target)}, "Status": "Enabled", **expire}
        )
    return rules


def lifecycle_rules(
    policy: RetentionPolicy,
    holds: LegalHolds | HoldSet | Iterable[Hold] | None = None,
    *,
    bucket_prefix: str = "",
) -> dict[str, Any]:
    """The ``LifecycleConfiguration`` dict for ``client.put_bucket_lifecycle_configuration(Bucket=…,
    LifecycleConfiguration=lifecycle_rules(policy, holds))``.

    ``bucket_prefix`` is the store's own prefix inside the bucket (``S3Store.prefix``), prepended to every filter
    and hold comparison happens on store keys. Raises :class:`LifecycleTooLarge` when the held prefixes would need
    more than 1000 rules (then rely on :func:`apply_retention`, or S3 Object Lock legal holds, for expiration).
    Regenerate and put it again whenever a hold is placed or released (it replaces the bucket's whole lifecycle
    configuration).
    """
    holdset = as_holdset(holds)
    prefix_holds = holdset.as_prefixes()  # a tag or user hold keeps the day of each of its keys
    rules: list[dict[str, Any]] = []
    for prefix in policy.prefixes:
        bundles = policy.bundle_prefix(prefix)
        # a hold on loose keys of a day keeps that day's bundles too (the bundle layout repeats YYYY/MM/DD/)
        moved = [_as_bundle_hold(h, prefix) for h in prefix_holds if h.prefix.startswith(prefix)]
        bundle_holds = [*prefix_holds, *moved]
        for target, tiered, held in ((bundles, True, bundle_holds), (prefix, False, prefix_holds)):
            rules += _prefix_rules(policy, target, tiered, held, bucket_prefix)
    if len(rules) > MAX_LIFECYCLE_RULES:
        raise LifecycleTooLarge(
            f"excluding {len(list(holdset))} held prefix(es) from expiration needs {len(rules)} lifecycle rules, over "
            f"S3's {MAX_LIFECYCLE_RULES}: hold whole months or years instead of single days, leave delete_after_days "
            "unset on the bucket and run `tiklive retention apply` (which skips held keys), or use S3 Object Lock "
            "legal holds on the held objects"
        )
    return {"Rules": rules}


def _s3_parts(store: ObjectStore) -> list[S3Store]:
    if isinstance(store, S3Store):
        return [store]
    if isinstance(store, MirroredStore):
        return _s3_parts(store.primary) + _s3_parts(store.secondary)
    return []


def apply_lifecycle(
    store: ObjectStore, policy: RetentionPolicy, holds: LegalHolds | HoldSet | Iterable[Hold] | None = None
) -> list[dict[str, Any]]:
    """Put the lifecycle configuration on every S3 bucket behind ``store`` (both sides of a mirror); returns the
    configurations put. Raises ValueError when no part of ``store`` is on S3 (use :func:`apply_retention`)."""
    parts = _s3_parts(store)
    if not parts:
        raise ValueError(f"{store.describe()} has no S3 bucket to configure: run apply_retention() instead")
    holdset = as_holdset(holds)
    applied = []
    for part in parts:
        config = lifecycle_rules(policy, holdset, bucket_prefix=part.prefix)
        part.client.put_bucket_lifecycle_configuration(Bucket=part.bucket, LifecycleConfiguration=config)
        applied.append(config)
    return applied


# ------------------------------------------------------------------------------------------------
# applying retention directly (local disk, stores without lifecycle)
# ------------------------------------------------------------------------------------------------
@dataclass
class RetentionReport:
    cutoff: date | None
    dry_run: bool
    deleted_objects: int = 0
    deleted_bytes: int = 0
    deleted_days: list[date] = field(default_factory=list)
    held_objects: int = 0
    held_days: list[date] = field(default_factory=list)
    held_prefixes: dict[str, int] = field(default_factory=dict)  # hold prefix (or name) -> objects it kept
    store_locked: list[str] = field(default_factory=list)  # keys the store refused to delete (S3 Object Lock)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        if self.cutoff is None:
            return "retention: the policy keeps everything (no delete_after_days); nothing to delete"
        verb = "would delete" if self.dry_run else "deleted"
        rows = sum(self.warehouse_rows.values())
        return (
            f"retention: {verb} {self.deleted_objects} object(s) ({self.deleted_bytes} bytes) of "
            f"{len(self.deleted_days)} day(s) before {self.cutoff}; kept {self.held_objects} held object(s) "
            f"in {len(self.held_days)} day(s)"
            + (f" ({len(self.store_locked)} refused by the store's Object Lock)" if self.store_locked else "")
            + f"; {verb} {rows} warehouse row(s)"
        )


def apply_retention(
    store: ObjectStore,
    policy: RetentionPolicy,
    today: date,
    holds: LegalHolds | HoldSet | Iterable[Hold] | None = None,
    *,
    warehouse: Any | None = None,
    dry_run: bool = False,
) -> RetentionReport:
    """Delete raw objects of days before ``policy.cutoff(today)``, loose and bundled, except those a legal hold
    covers. A bundle holding a held key (or under a hold itself) is kept whole: all of its members count as held.

    Listing stops at the first key of a day inside the policy (keys list in ascending order, and the date comes
    first in them), so a daily run lists only the expired days. With ``warehouse`` (an open Warehouse), rows with
    ``dt`` before the cutoff are deleted from every table too, except on days that kept held objects.

    A delete the store itself refuses because of its S3 Object Lock (a legal hold set there, by a hold here or by
    another tool) keeps the object as a hold would: it counts as held (under ``STORE_LOCK``, its key in
    ``store_locked``), not as an error, and its day keeps its warehouse rows.
    """
    started = time.monotonic()
    cutoff = policy.cutoff(today)
    report = RetentionReport(cutoff=cutoff, dry_run=dry_run)
    if cutoff is None:
        return report
    holdset = as_holdset(holds)
    deleted_days: set[date] = set()
    held_days: set[date] = set()
    for prefix in policy.prefixes:
        for info in store.list(prefix):
            day = raw_key_day(info.key, prefix)
            if day is None:
                continue  # not a dated raw key: never touched
            if day >= cutoff:
                break
            hold = holdset.covers(info.key)
            held_by = hold.prefix if hold is not None else None
            if held_by is None and not dry_run:
                try:
                    store.delete(info.key)
                except ObjectLocked:  # the store's own legal hold (placed here or by another tool): kept, not failed
                    held_by = STORE_LOCK
                    report.store_locked.append(info.key)
            if held_by is not None:
                report.held_objects += 1
                report.held_prefixes[held_by] = report.held_prefixes.get(held_by, 0) + 1
                held_days.add(day)
                continue
            report.deleted_objects += 1
            report.deleted_bytes += info.size
            deleted_days.add(day)
        _expire_bundles(store, policy.bundle_prefix(prefix), cutoff, holdset, report, deleted_days, held_days)
    report.deleted_days = sorted(deleted_days)
    report.held_days = sorted(held_days)
    if warehouse is not None and f"{RAW_PREFIX}/" in policy.prefixes:
        report.warehouse_rows = _expire_warehouse(warehouse, cutoff, held_days, dry_run)
    report.seconds = time.monotonic() - started
    logger.info(report.summary())
    return report


def _expire_bundles(
    store: ObjectStore,
    bundles: str,
    cutoff: date,
    holdset: HoldSet,
    report: RetentionReport,
    deleted_days: set[date],
    held_days: set[date],
) -> None:
    """Delete the bundles (every generation) of days before ``cutoff`` under ``bundles``, keeping held ones; the
    listing stops at the first bundle of a day inside the policy, as the loose listing does. A stale generation
    beside the live one holds the same objects: they are counted once."""
    counted: set[tuple[date, str]] = set()
    for info in store.list(bundles):
        parsed = parse_bundle_key(info.key)
        if parsed is None:
            continue  # not a bundle: never touched
        if parsed.day >= cutoff:
            break
        first = (parsed.day, parsed.endpoint) not in counted
        counted.add((parsed.day, parsed.endpoint))
        members = len(read_index(store, info.key)) if first else 0
        hold = bundle_hold(holdset, store, info.key)
        held_by = hold.prefix if hold is not None else None
        if held_by is None and not report.dry_run:
            try:
                store.delete(info.key)
            except ObjectLocked:  # the store's own legal hold: kept, not failed
                held_by = STORE_LOCK
                report.store_locked.append(info.key)
        if held_by is not None:
            report.held_objects += members
            report.held_prefixes[held_by] = report.held_prefixes.get(held_by, 0) + members
            held_days.add(parsed.day)
            continue
        report.deleted_objects += members
        report.deleted_bytes += info.size
        deleted_days.add(parsed.day)


def _expire_warehouse(warehouse: Any, cutoff: date, held_days: set[date], dry_run: bool) -> dict[str, int]:
    from tiklive_assets.warehouse import schema

    where = "dt < ?"
    params: list[Any] = [cutoff]
    if held_days:
        where += f" AND dt NOT IN ({', '.join('?' for _ in held_days)})"
        params += sorted(held_days)
    counts = {}
    for table in schema.TABLES:
        n = int(warehouse.query(f"SELECT count(*) FROM {table.name} WHERE {where}", params)[0][0])
        counts[table.name] = n
        if n and not dry_run:
            warehouse.query(f"DELETE FROM {table.name} WHERE {where}", params)
    return counts

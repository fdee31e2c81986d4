"""What the archive costs this month: API credits from the ledger, and the storage bill of the store as it stands.

**Credits** come from the state database's credit ledger (every metered request, per UTC day and endpoint): the
month so far by day, endpoint and source (the kind of tracked source an endpoint serves: accounts, hashtags,
keywords, music; videos for the per-post endpoints), a trend (the mean of the last 7 complete days, and the change
against the 7 before them) and the projected month: what the month has spent, plus the trend for each day left
after today, plus today's shortfall against the trend while today is under it (a day's capture runs once).

**Storage** is one listing of the store. Tiering moves compacted bundles only (``tiklive-bundles/<prefix>/``,
one per endpoint and day once a day leaves the hot period), as the retention policy tiers them: warm from
``warm_after_days`` (30), cold from ``cold_after_days`` (365); loose objects (responses of the hot period, media,
covers, snapshots, indexes) stay hot. Where a bundle's age starts depends on who tiers it. On an S3-compatible
store (S3, R2, B2, or a mirror with an S3 side) the bucket's lifecycle rules count from object creation, the
object's ``last_modified``: a bundle is created when compaction packs its day (about ``warm_after_days`` after the
day) and again whenever an erasure rewrites it, so it tiers that much later than its day's age. On local disk
tiklive applies retention itself and counts from the archive day the key names. A provider bills a lifecycle
transition only when the tier's storage class changes (R2's warm and cold are both Infrequent Access, B2 has one
class), as compaction's estimate does.
Each provider's bill applies its classes' rules per object
(:meth:`~tiklive_assets.pricing.StorageClassPrice.billed_bytes`: the 128 KiB minimum of S3 Standard-IA and Glacier
Instant Retrieval, the 40 KiB index of Glacier), so a tier of small objects costs what it really costs. The
projected monthly bill is the store at today's size for a whole month, plus the month's writes (PUT requests so
far, scaled to the whole month) and the lifecycle transitions the month's ages bring.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal, Protocol

from tiklive_assets.compliance.retention import RetentionPolicy
from tiklive_assets.pricing import GB, PROVIDERS, Provider, StoragePrices
from tiklive_assets.storage import MirroredStore, ObjectStore, S3Store
from tiklive_assets.storage.base import ObjectInfo
from tiklive_assets.storage.bundles import parse_bundle_key

Tier = Literal["hot", "warm", "cold"]
TIERS: tuple[Tier, ...] = ("hot", "warm", "cold")
STEPS: tuple[tuple[Tier, Tier], ...] = (("hot", "warm"), ("warm", "cold"))  # lifecycle transitions, in order
TREND_DAYS = 7
# the kind of tracked source each endpoint's credits serve
SOURCES = {
    "accounts": ("userid", "userinfo-by-username", "userinfo-by-id", "user-posts", "user-followers", "user-following"),
    "hashtags": ("challenge-posts", "challenge-info-id", "challenge-info-name"),
    "keywords": ("search-video", "search-user"),
    "music": ("music-posts",),
    "videos": ("post-detail", "download-video", "post-comments", "post-comment-replies"),
}
SOURCE_OF = {endpoint: source for source, endpoints in SOURCES.items() for endpoint in endpoints}


def source_of(endpoint: str) -> str:
    return SOURCE_OF.get(endpoint.strip("/"), "other")


class Ledger(Protocol):
    def credits_spent(self, day: date) -> dict[str, int]: ...


def month_days(day: date) -> list[date]:
    """Every day of ``day``'s month, the 1st first."""
    return [day.replace(day=n) for n in range(1, calendar.monthrange(day.year, day.month)[1] + 1)]


@dataclass(frozen=True)
class CreditsForecast:
    """The month of ``today`` in credits: spent per day and endpoint (days up to today), the trend, the projection."""

    today: date
    by_day: dict[date, dict[str, int]]  # the month's days up to today -> endpoint -> credits
    trend: dict[date, int]  # the 2 x TREND_DAYS complete days before today -> credits

    @property
    def spent(self) -> int:
        return sum(sum(endpoints.values()) for endpoints in self.by_day.values())

    @property
    def by_endpoint(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for endpoints in self.by_day.values():
            total.update(endpoints)
        return dict(total.most_common())

    @property
    def by_source(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for endpoint, credits in self.by_endpoint.items():
            total[source_of(endpoint)] += credits
        return dict(total.most_common())

    @property
    def per_day(self) -> float:
        """Mean credits a day over the last TREND_DAYS complete days."""
        recent = sorted(self.trend)[-TREND_DAYS:]
        return sum(self.trend[d] for d in recent) / TREND_DAYS

    @property
    def previous_per_day(self) -> float:
        """Mean credits a day over the TREND_DAYS days before those."""
        earlier = sorted(self.trend)[:-TREND_DAYS]
        return sum(self.trend[d] for d in earlier) / TREND_DAYS

    @property
    def change(self) -> float | None:
        """per_day against previous_per_day (0.1: 10 % more), None when the earlier week spent nothing."""
        return self.per_day / self.previous_per_day - 1 if self.previous_per_day else None

    @property
    def projected(self) -> int:
        days_left = month_days(self.today)[-1].day - self.today.day
        today = sum(self.by_day.get(self.today, {}).values())
        return round(self.spent + self.per_day * days_left + max(self.per_day - today, 0))

    def as_json(self) -> dict:
        return {
            "month": f"{self.today:%Y-%m}",
            "spent": self.spent,
            "per_day_last_7_days": round(self.per_day, 1),
            "change_against_previous_7_days": None if self.change is None else round(self.change, 3),
            "projected_month": self.projected,
            "by_source": self.by_source,
            "by_endpoint": self.by_endpoint,
            "by_day": {str(d): sum(e.values()) for d, e in sorted(self.by_day.items())},
            "by_day_source_endpoint": {
                str(d): {f"{source_of(endpoint)} {endpoint.strip('/')}": n for endpoint, n in sorted(e.items())}
                for d, e in sorted(self.by_day.items())
            },
        }


def credits_forecast(ledger: Ledger, today: date) -> CreditsForecast:
    """The month of ``today`` from ``ledger`` (the state database's credits)."""
    by_day = {d: ledger.credits_spent(d) for d in month_days(today) if d <= today}
    trend_days = [today - timedelta(days=n) for n in range(2 * TREND_DAYS, 0, -1)]
    trend = {d: sum((by_day[d] if d in by_day else ledger.credits_spent(d)).values()) for d in trend_days}
    return CreditsForecast(today, {d: e for d, e in by_day.items() if e}, trend)


@dataclass
class TierUsage:
    objects: int = 0
    bytes: int = 0
    billed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROVIDERS, 0))  # provider -> bytes


@dataclass
class StorageUsage:
    """One listing of the store: each tier's objects, bytes and billed bytes per provider, the month's writes and
    the lifecycle transitions its ages bring."""

    today: date
    tiers: dict[str, TierUsage] = field(default_factory=lambda: {tier: TierUsage() for tier in TIERS})
    writes: int = 0  # objects written this month so far
    written_bytes: int = 0
    transitions: dict[Tier, int] = field(default_factory=lambda: {"warm": 0, "cold": 0})  # this month, into tier

    @property
    def objects(self) -> int:
        return sum(t.objects for t in self.tiers.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tiers.values())


def tier_of(age_days: int, policy: RetentionPolicy) -> Tier:
    if age_days >= policy.cold_after_days:
        return "cold"
    return "warm" if age_days >= policy.warm_after_days else "hot"


def from_creation(store: ObjectStore) -> bool:
    """True when ``store``'s bundles are tiered by bucket lifecycle rules, which count from object creation (any
    part of it is S3-compatible); False on local disk, where retention counts from the key's archive day."""
    if isinstance(store, S3Store):
        return True
    if isinstance(store, MirroredStore):
        return from_creation(store.primary) or from_creation(store.secondary)
    return False


def store_usage(
    store: ObjectStore, prices: StoragePrices, today: date, policy: RetentionPolicy | None = None
) -> StorageUsage:
    """:func:`storage_usage` of one listing of ``store``, ages counted as ``store``'s tiering counts them."""
    return storage_usage(store.list(""), prices, today, policy, by_creation=from_creation(store))


def storage_usage(
    objects: Iterable[ObjectInfo],
    prices: StoragePrices,
    today: date,
    policy: RetentionPolicy | None = None,
    *,
    by_creation: bool = False,
) -> StorageUsage:
    """Sum a store's listing by tier (see the module docstring for the rule). ``by_creation``: a bundle's age
    counts from its ``last_modified`` (bucket lifecycle rules), else from the archive day its key names."""
    policy = policy or RetentionPolicy()
    archives = {prefix.rstrip("/") for prefix in policy.prefixes}
    classes = {(p, t): prices.provider(p).tier(t) for p in PROVIDERS for t in TIERS}
    first, last = today.replace(day=1), month_days(today)[-1]
    usage = StorageUsage(today)
    for info in objects:
        written = info.last_modified.astimezone(UTC).date()
        bundle = parse_bundle_key(info.key)
        moves = bundle is not None and bundle.archive_prefix in archives
        born = bundle.day if bundle is not None and moves and not by_creation else written
        tier = tier_of((today - born).days, policy) if moves else "hot"
        usage_tier = usage.tiers[tier]
        usage_tier.objects += 1
        usage_tier.bytes += info.size
        for provider in PROVIDERS:
            usage_tier.billed[provider] += classes[provider, tier].billed_bytes(info.size)
        if first <= written <= today:
            usage.writes += 1
            usage.written_bytes += info.size
        if moves:
            steps: tuple[tuple[Tier, int], ...] = (("warm", policy.warm_after_days), ("cold", policy.cold_after_days))
            for into, after in steps:
                if first <= born + timedelta(days=after) <= last:
                    usage.transitions[into] += 1
    return usage


@dataclass(frozen=True)
class Bill:
    """One provider's projected month, in US dollars."""

    provider: Provider
    storage: dict[Tier, float]  # tier -> storage of the tier's billed bytes for a month
    writes: float  # PUT requests of the month's writes, scaled to the whole month
    transitions: float  # lifecycle transitions of the month
    moves: dict[Tier, int] = field(default_factory=lambda: {"warm": 0, "cold": 0})  # transitions billed, into tier

    @property
    def total(self) -> float:
        return sum(self.storage.values()) + self.writes + self.transitions

    def as_json(self) -> dict:
        return {
            "storage_by_tier": {t: round(v, 4) for t, v in self.storage.items()},
            "writes": round(self.writes, 4),
            "transitions": round(self.transitions, 4),
            "transitions_by_tier": dict(self.moves),
            "total": round(self.total, 4),
        }


def bills(usage: StorageUsage, prices: StoragePrices) -> dict[Provider, Bill]:
    """Each provider's projected monthly bill for ``usage``."""
    days = len(month_days(usage.today))
    writes = usage.writes * days / usage.today.day  # the month so far, scaled to the month
    out: dict[Provider, Bill] = {}
    for provider in PROVIDERS:
        rates = prices.provider(provider)
        storage = {t: usage.tiers[t].billed[provider] / GB * rates.tier(t).gb_month for t in TIERS}
        put = writes / 1000 * rates.tier("hot").put_per_1000
        # a move into a tier whose class is the previous tier's is no transition (R2's warm and cold, all of B2)
        moves: dict[Tier, int] = {
            into: usage.transitions[into] if getattr(rates, before) != getattr(rates, into) else 0
            for before, into in STEPS
        }
        moved = sum(n / 1000 * rates.tier(t).transition_per_1000 for t, n in moves.items())
        out[provider] = Bill(provider, storage, put, moved, moves)
    return out


def now_utc() -> date:
    return datetime.now(UTC).date()

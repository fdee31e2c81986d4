"""What the archive costs: storage tiers and bills of a hand-made store with known object sizes (S3 Standard-IA bills
a 3 KB object as 128 KiB), and `tiklive cost` against the credit ledger a real sandbox capture wrote."""

from __future__ import annotations

import calendar
import json
import sqlite3
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from tiklive_assets.cli import main
from tiklive_assets.compliance.compaction import storage_costs
from tiklive_assets.pricing import DEFAULT_PRICES, GB, KIB, PROVIDERS
from tiklive_assets.storage import LocalStore, MirroredStore, raw_key, video_key
from tiklive_assets.storage.base import ObjectInfo
from tiklive_assets.storage.bundles import bundle_key
from tiklive_assets.warehouse import cost
from tiklive_assets_tests.support.capture import Rig, frozen_sandbox, local_store, s3_store, today

WARM, COLD, LOOSE, MEDIA = 1000, 5, 20, 10  # objects of each kind in the hand-made store
SMALL, LARGE = 3000, 200_000  # bytes: a small object, a small video


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """Bundles of days exactly 30 days old (warm from today) and 365 days old (cold from today), loose raw responses
    and media of old days (never tiered), laid out on disk as the local store keeps them (written directly: a
    thousand fsynced writes would take seconds)."""
    root = tmp_path / "archive"
    warm_day, cold_day = today() - timedelta(days=30), today() - timedelta(days=365)
    objects = {bundle_key("tiklive-raw", warm_day, "post-detail", n + 1): SMALL for n in range(WARM)}
    objects |= {bundle_key("tiklive-raw", cold_day, "user-posts", n + 1): SMALL for n in range(COLD)}
    objects |= {raw_key(cold_day, "post-detail", str(7_000_000_000_000_000_000 + n)): SMALL for n in range(LOOSE)}
    objects |= {video_key(cold_day, "alice123", 7_100_000_000_000_000_000 + n): LARGE for n in range(MEDIA)}
    for key, size in objects.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x" * size)
    store = LocalStore(root)
    assert sorted(info.key for info in store.list("")) == sorted(objects)
    return store


def test_storage_tiers_and_bills_follow_each_class_s_rules(store: LocalStore) -> None:
    usage = cost.storage_usage(store.list(""), DEFAULT_PRICES, today())
    hot, warm, cold = (usage.tiers[t] for t in cost.TIERS)
    assert (hot.objects, hot.bytes) == (LOOSE + MEDIA, LOOSE * SMALL + MEDIA * LARGE)  # loose objects stay hot
    assert (warm.objects, warm.bytes) == (WARM, WARM * SMALL)
    assert (cold.objects, cold.bytes) == (COLD, COLD * SMALL)
    # S3 Standard-IA bills each 3 KB response as 128 KiB; Glacier adds 40 KiB of index per object; R2 and B2 do not
    assert warm.billed == {"s3": WARM * 128 * KIB, "r2": WARM * SMALL, "b2": WARM * SMALL}
    assert cold.billed == {"s3": COLD * (SMALL + 40 * KIB), "r2": COLD * SMALL, "b2": COLD * SMALL}
    assert hot.billed == dict.fromkeys(("s3", "r2", "b2"), LOOSE * SMALL + MEDIA * LARGE)
    # every object was written now; the bundles cross into their tier today, so this month
    assert usage.writes == WARM + COLD + LOOSE + MEDIA
    assert usage.transitions == {"warm": WARM, "cold": COLD}

    bills = cost.bills(usage, DEFAULT_PRICES)
    s3 = bills["s3"]
    assert s3.storage["warm"] == pytest.approx(WARM * 128 * KIB / GB * 0.0125)
    assert s3.storage["cold"] == pytest.approx(COLD * (SMALL + 40 * KIB) / GB * 0.0036)
    assert s3.storage["hot"] == pytest.approx((LOOSE * SMALL + MEDIA * LARGE) / GB * 0.023)
    days = calendar.monthrange(today().year, today().month)[1]
    assert s3.writes == pytest.approx((WARM + COLD + LOOSE + MEDIA) * days / today().day / 1000 * 0.005)
    assert s3.transitions == pytest.approx(WARM / 1000 * 0.01 + COLD / 1000 * 0.03)
    assert bills["b2"].writes == 0 and bills["b2"].transitions == 0
    assert bills["b2"].storage["warm"] == pytest.approx(WARM * SMALL / GB * 0.006)
    assert s3.total == pytest.approx(sum(s3.storage.values()) + s3.writes + s3.transitions)


def test_on_s3_a_bundle_ages_from_its_creation_not_its_day(tmp_path: Path, s3_bucket: str, moto_endpoint: str) -> None:
    """Bucket lifecycle rules count from object creation: a bundle compacted (or rewritten by an erasure) today for
    a day 400 days old is still hot on S3; on local disk tiklive counts from the key's day, so there it is cold."""
    s3 = s3_store(s3_bucket, moto_endpoint).open()
    local = LocalStore(tmp_path / "archive")
    keys = [bundle_key("tiklive-raw", today() - timedelta(days=400), "user-posts", n + 1) for n in range(3)]
    keys += [bundle_key("tiklive-raw", today() - timedelta(days=40), "post-detail", n + 1) for n in range(2)]
    for store in (s3, local):
        for key in keys:
            store.put_bytes(key, b"x" * SMALL, content_type="application/vnd.apache.parquet")
    assert cost.from_creation(s3) and cost.from_creation(MirroredStore(local, s3)) and not cost.from_creation(local)

    on_s3 = cost.store_usage(s3, DEFAULT_PRICES, today())
    assert {t: u.objects for t, u in on_s3.tiers.items()} == {"hot": 5, "warm": 0, "cold": 0}
    # created today: into warm 30 days from now, which is this month only on the 1st of a 31-day month
    warm_this_month = (today() + timedelta(days=30)).month == today().month
    assert on_s3.transitions == {"warm": 5 if warm_this_month else 0, "cold": 0}
    assert cost.bills(on_s3, DEFAULT_PRICES)["s3"].storage["hot"] == pytest.approx(5 * SMALL / GB * 0.023)

    on_disk = cost.store_usage(local, DEFAULT_PRICES, today())
    assert {t: u.objects for t, u in on_disk.tiers.items()} == {"hot": 0, "warm": 2, "cold": 3}


def _created(day: date, sizes: list[int]) -> list[ObjectInfo]:
    """Bundles of one old archive day, each created (compacted) on ``day``."""
    old = date(2020, 1, 1)
    when = datetime.combine(day, time(12), UTC)
    return [
        ObjectInfo(bundle_key("tiklive-raw", old, "post-detail", n + 1), size, when) for n, size in enumerate(sizes)
    ]


def test_no_transition_is_billed_where_the_storage_class_stays() -> None:
    """R2 maps warm and cold to Infrequent Access and B2 everything to its one class: those moves never happen."""
    asof = date(2026, 6, 15)
    objects = _created(asof - timedelta(days=30), [SMALL] * 40) + _created(asof - timedelta(days=365), [SMALL] * 7)
    usage = cost.storage_usage(objects, DEFAULT_PRICES, asof, by_creation=True)
    assert usage.transitions == {"warm": 40, "cold": 7}
    bills = cost.bills(usage, DEFAULT_PRICES)
    assert bills["s3"].moves == {"warm": 40, "cold": 7}
    assert bills["s3"].transitions == pytest.approx(40 / 1000 * 0.01 + 7 / 1000 * 0.03)
    assert bills["r2"].moves == {"warm": 40, "cold": 0}  # STANDARD -> INFREQUENT_ACCESS only
    assert bills["r2"].transitions == pytest.approx(40 / 1000 * 0.009)
    assert bills["b2"].moves == {"warm": 0, "cold": 0}
    assert bills["r2"].as_json()["transitions_by_tier"] == {"warm": 40, "cold": 0}


def test_the_forecast_agrees_with_compaction_s_estimate() -> None:
    """The same bundles, forecast on their creation day (hot), 30 days on (warm, moving in) and 365 days on (cold,
    moving in), cost per tier and in transitions what compaction.storage_costs says they cost, on every provider."""
    created = date(2025, 3, 10)
    sizes = [SMALL, 90_000, LARGE, 4_000_000, 31_000_000]
    objects = _created(created, sizes)
    at = {
        tier: cost.bills(
            cost.storage_usage(objects, DEFAULT_PRICES, created + timedelta(days=age), by_creation=True), DEFAULT_PRICES
        )
        for tier, age in (("hot", 0), ("warm", 30), ("cold", 365))
    }
    for provider in PROVIDERS:
        estimate = storage_costs(sizes, DEFAULT_PRICES.provider(provider))
        for tier in cost.TIERS:
            assert at[tier][provider].storage[tier] == pytest.approx(estimate.monthly[tier]), (provider, tier)
        assert at["hot"][provider].transitions == 0
        moved = at["warm"][provider].transitions + at["cold"][provider].transitions
        assert moved == pytest.approx(estimate.transitions), provider
    assert storage_costs(sizes, DEFAULT_PRICES.provider("r2")).transitions > 0  # not a trivial agreement


def _ledger(home: Path) -> dict[str, dict[str, int]]:
    """day -> endpoint -> credits, straight from the state database's credits table."""
    with sqlite3.connect(home / "state.sqlite") as conn:
        rows = conn.execute("SELECT day, endpoint, requests FROM credits").fetchall()
    ledger: dict[str, dict[str, int]] = {}
    for day, endpoint, requests in rows:
        ledger.setdefault(str(day), {})[endpoint] = requests
    return ledger


def test_tiklive_cost_prints_the_ledger_s_totals(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    monkeypatch.delenv("TIKLIVE_STATE_URL", raising=False)
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path, local_store(tmp_path))
        assert rig.run().success  # today's credits, from a real capture
    with rig.state() as state:  # the two weeks before: 10 credits a day, then 20
        for n in range(1, 15):
            state.reserve_credit(today() - timedelta(days=n), "post-detail", None, cost=10 if n > 7 else 20)
    ledger = _ledger(tmp_path)
    month = {d: e for d, e in ledger.items() if d.startswith(f"{today():%Y-%m}")}
    spent = sum(sum(e.values()) for e in month.values())
    assert spent > 0

    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    assert main(["cost", "--json", "--home", str(tmp_path), "--config", str(rig.config_path)]) == 0
    found = json.loads(capsys.readouterr().out)
    credits = found["credits"]
    assert credits["spent"] == spent
    by_endpoint: dict[str, int] = {}
    for endpoints in month.values():
        for endpoint, n in endpoints.items():
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + n
    assert credits["by_endpoint"] == by_endpoint
    assert sum(credits["by_source"].values()) == spent
    assert credits["by_day"] == {d: sum(e.values()) for d, e in sorted(month.items())}
    assert {d: sum(e.values()) for d, e in credits["by_day_source_endpoint"].items()} == credits["by_day"]
    assert "videos post-detail" in credits["by_day_source_endpoint"][str(today())]
    assert credits["per_day_last_7_days"] == 20 and credits["change_against_previous_7_days"] == 1.0
    days_left = calendar.monthrange(today().year, today().month)[1] - today().day
    today_spent = sum(ledger.get(str(today()), {}).values())
    assert credits["projected_month"] == round(spent + 20 * days_left + max(20 - today_spent, 0))
    store = rig.store()
    listed = list(store.list(""))
    assert found["storage"]["objects"] == len(listed)
    assert found["storage"]["bytes"] == sum(info.size for info in listed)

    assert main(["cost", "--home", str(tmp_path), "--config", str(rig.config_path)]) == 0
    text = capsys.readouterr().out
    assert f"credits: {spent:,} spent this month" in text
    assert f"projected {credits['projected_month']:,} for the month" in text
    assert "*  s3" in text  # the configured provider (compaction.provider defaults to s3)

    # the cost_forecast asset shows the same figures, with a chart
    import dagster as dg

    from tiklive_assets.defs.warehouse.cost_forecast import cost_forecast

    result = dg.materialize([cost_forecast], resources=rig.resources(), partition_key=str(today()))
    (event,) = result.get_asset_materialization_events()
    md = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    assert md["credits_spent_this_month"] == spent
    assert md["credits_projected_month"] == credits["projected_month"]
    assert md["credits_by_endpoint"] == by_endpoint
    assert md["stored_objects"] == len(listed)
    assert md["storage_bill_usd"] == found["bills_usd"]
    assert "data:image/png;base64," in md["chart"]

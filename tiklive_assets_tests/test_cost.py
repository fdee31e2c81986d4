"""What the archive costs: storage tiers and bills of a hand-made store with known object sizes (S3 Standard-IA bills
a 3 KB object as 128 KiB), and `tiklive cost` against the credit ledger a real sandbox capture wrote."""

from __future__ import annotations

import calendar
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tiklive_assets.cli import main
from tiklive_assets.pricing import DEFAULT_PRICES, GB, KIB
from tiklive_assets.storage import LocalStore, raw_key, video_key
from tiklive_assets.storage.bundles import bundle_key
from tiklive_assets.warehouse import cost
from tiklive_assets_tests.support.capture import Rig, frozen_sandbox, local_store, today

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

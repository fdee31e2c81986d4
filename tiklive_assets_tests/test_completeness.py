"""Completeness per day and source: three days captured from the sandbox over real HTTP, then the warehouse, the
``daily_completeness`` mart and its check.

The sandbox's corpus is frozen, so a source brings new ids on a later day only when a post is published to it:
alice's account gets a new post before the second day (hashtag 1001 lists it too) and none before the third, so on
the third day both brought nothing new against a baseline of two days with new ids, and the check fails naming
them; the keyword search brought new ids on its first day only, which is not "usually".
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from tiklive_assets.defs.capture import assets as capture_assets
from tiklive_assets.defs.warehouse.assets import parquet_exports
from tiklive_assets.defs.warehouse.completeness_check import daily_completeness
from tiklive_assets.defs.warehouse.resources import WarehouseResource
from tiklive_assets.warehouse import build_marts, completeness, mart_chart, query_marts
from tiklive_assets_tests.support.capture import Rig, base_config, failures, frozen_sandbox, local_store, today


def _capture_day(rig: Rig, monkeypatch: pytest.MonkeyPatch, days_back: int) -> None:
    real = capture_assets.datetime

    class Then(real):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) - timedelta(days=days_back)

    monkeypatch.setattr(capture_assets, "datetime", Then)
    result = rig.run(partition=today() - timedelta(days=days_back))
    assert result.success, failures(result)
    monkeypatch.setattr(capture_assets, "datetime", real)


def _warehouse(rig: Rig, days_back: int) -> dg.ExecuteInProcessResult:
    resources = {**rig.resources(), "warehouse": WarehouseResource(url=str(rig.home / "warehouse.duckdb"))}
    day = (today() - timedelta(days=days_back)).isoformat()
    return dg.materialize(  # the exports and the check: the marts are built once, by the mart test
        [parquet_exports, daily_completeness],
        resources=resources,
        instance=rig.instance,
        partition_key=day,
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture(scope="module")
def three_days(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("completeness")
    monkeypatch = pytest.MonkeyPatch()
    config = base_config(keywords=[{"keyword": "cooking", "max_pages": 1}])
    checks = []
    try:
        with frozen_sandbox() as sb:
            rig = Rig(sb, home, local_store(home), config)
            for days_back in (2, 1, 0):
                if days_back == 1:
                    sb.publish_video("alice123")  # alice brings a new id on the second day, none on the third
                _capture_day(rig, monkeypatch, days_back) if days_back else rig.run()
                result = _warehouse(rig, days_back)
                assert result.success, failures(result)
                checks.append(_check(result))
    finally:
        monkeypatch.undo()
    return rig, checks, config


def test_a_source_that_usually_brings_new_ids_and_brought_none_fails_the_check_by_name(three_days) -> None:
    rig, (first, second, third), _ = three_days
    assert first.passed and second.passed, (first.description, second.description)  # no baseline yet: no failure
    assert not third.passed
    # alice's new post was listed by hashtag 1001 too; the search brought new ids on its first day only (1 of 2: not
    # usually), so it is not named
    assert third.metadata["failed_sources"].value == ["account @alice123", "hashtag 1001"]
    assert "account @alice123 brought no new ids" in (third.description or "")
    assert "2 of its 2 walked days" in (third.description or "")


def test_the_daily_completeness_mart_has_a_row_per_day_with_the_silent_source(three_days) -> None:
    rig, _, _ = three_days
    marts = build_marts(rig.home / "exports", rig.home / "marts.duckdb")
    _, rows = query_marts(
        marts,
        "SELECT day, new_ids, resolved, downloaded, dead, silent_sources, problems FROM daily_completeness "
        "ORDER BY day",
    )
    days = [today() - timedelta(days=n) for n in (2, 1, 0)]
    assert [r[0] for r in rows] == days
    first, second, third = rows
    assert first[1] > 0 and first[2] + first[4] > 0  # the first day: every listed id is new
    assert second[1] >= 1  # alice's new post
    assert third[5] >= 1 and "account alice123: no new ids" in third[6]
    assert first[6] == "" and second[6] == ""
    count, chart = mart_chart(marts, "daily_completeness", days[2])
    assert count == 3 and "data:image/png;base64," in chart and "account alice123: no new ids" in chart
    # the same figures the check reads
    assert completeness.day_totals(rig.home / "exports", days[2])["problems"] == third[6]


def test_a_source_taken_out_of_the_config_is_not_judged(three_days, tmp_path: Path) -> None:
    rig, _, config = three_days
    from tiklive_assets.defs.warehouse.completeness_check import judged
    from tiklive_assets.tracking import parse_config

    found = completeness.source_days(rig.home / "exports", today())
    assert any(row.failed and row.name == "alice123" for row in found)
    tracked = [row.label() for row in judged(found, parse_config(config)) if row.failed]
    assert tracked == ["account @alice123", "hashtag 1001"]
    without = parse_config({**config, "accounts": [{"handle": "bob"}], "hashtags": []})
    assert not [row for row in judged(found, without) if row.failed]


def test_the_failed_check_reaches_the_alert_sensor_naming_the_source(three_days, monkeypatch) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tiklive_assets.alerts import ALERT_WEBHOOK_URL
    from tiklive_assets.defs.alerts.sensors import failed_check_alert

    rig, _, _ = three_days
    received: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(ALERT_WEBHOOK_URL, f"http://127.0.0.1:{server.server_port}/hook")
    try:
        with dg.build_sensor_context(instance=rig.instance, cursor="0") as context:
            failed_check_alert(context)
    finally:
        server.shutdown()
    [alert] = [text for text in received if "daily_completeness" in text]
    assert "check failed: daily_completeness on parquet_exports" in alert
    assert f"partition {today()}" in alert and "account @alice123 brought no new ids" in alert


def test_a_walk_cut_to_its_first_page_and_a_missing_profile_fail_against_their_baseline(tmp_path: Path) -> None:
    """Three fabricated days in the sandbox's shapes: alice's walk goes to a second page on the first two days and
    stops at the first on the third; bob's profile is captured on the first two days only."""
    from datetime import UTC, date, datetime

    from tiklive_assets.sandbox import Corpus
    from tiklive_assets.storage import LocalStore, raw_key, slug_page
    from tiklive_assets.warehouse import export_day, parse_day
    from tiklive_assets_tests.support.archive import put_raw, write_archive_day

    store, corpus, exports = LocalStore(tmp_path / "archive"), Corpus(seed=7), tmp_path / "exports"
    days = [date(2026, 5, 27), date(2026, 5, 28), date(2026, 5, 29)]
    alice, bob = corpus.account("alice123"), corpus.account("bob")
    for day in days:
        write_archive_day(store, day, corpus)
        now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
        if day != days[-1]:
            second = corpus.visible_posts(alice, now)[6:12]
            put_raw(
                store,
                day,
                "user-posts",
                slug_page(alice.id, "cursor", 1),
                {"videos": [corpus.listing_item(p, now) for p in second], "hasMore": False},
            )
        else:
            store.delete(raw_key(day, "userinfo-by-id", bob.id))
        export_day(exports, day, parse_day(store, day).tables)
    rows = {(row.kind, row.name): row for row in completeness.source_days(exports, days[-1])}
    walk, profile = rows["account", "alice123"], rows[completeness.PROFILE, "bob"]
    assert (walk.pages, walk.baseline_days, walk.baseline_deep_days, walk.status) == (
        1,
        2,
        2,
        completeness.FIRST_PAGE_ONLY,
    )
    assert "alice123's walk ended on its first page" in walk.why()
    assert (profile.pages, profile.baseline_days, profile.status) == (0, 2, completeness.NO_PROFILE)
    assert rows[completeness.PROFILE, "alice123"].status == completeness.OK
    assert rows["account", "bob"].status == completeness.OK  # one page every day: nothing cut short
    earlier = {(row.kind, row.name): row.status for row in completeness.source_days(exports, days[1])}
    assert set(earlier.values()) == {completeness.OK}  # day two: a baseline of one day only

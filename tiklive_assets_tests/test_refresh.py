"""The refresh: tracked videos re-resolved at ages after posting (the sandbox's clock moved between runs), the
engagement_curves and deleted_content marts built from the archive, tombstones, the daily allotment."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tiklive_assets.capture.refresh import RefreshArchive
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.refresh.assets import refreshed_posts
from tiklive_assets.state.refresh import RefreshState
from tiklive_assets.storage.keys import parse_refresh_slug, refresh_slug, split_raw_key
from tiklive_assets.warehouse import build_marts, load_days, open_warehouse, query_marts
from tiklive_assets_tests.support.capture import (
    ALICE_ID,
    FROZEN_NOW,
    Rig,
    base_config,
    frozen_sandbox,
    local_store,
    metadata,
    today,
)

HOUR = 3600.0


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with frozen_sandbox() as sb:
        yield Rig(sb, tmp_path / "home", local_store(tmp_path))


def _next_second() -> None:
    """An archived answer's fetch time is whole seconds (the gzip header): two captures of one video in the same
    second are one row of post_metrics_history. Refreshes minutes of simulated time apart are under a second apart
    here, so wait for the wall clock's next second (less than one)."""
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)


def refresh(rig: Rig, *, at_hours: float | None = None) -> dg.ExecuteInProcessResult:
    """Move the sandbox's clock to FROZEN_NOW + ``at_hours`` and materialize today's refreshed_posts as of then."""
    if at_hours is not None:
        rig.sb.advance_clock(FROZEN_NOW + at_hours * HOUR - rig.sb.clock())
    _next_second()
    rig.write_config()
    as_of = datetime.fromtimestamp(rig.sb.clock(), UTC).isoformat()
    result = dg.materialize(
        [*CAPTURE_ASSETS, refreshed_posts],
        selection=[refreshed_posts.key],
        partition_key=today().isoformat(),
        resources=rig.resources(),
        instance=rig.instance,
        run_config={"ops": {"refreshed_posts": {"config": {"as_of": as_of}}}},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def marts(rig: Rig, tmp_path: Path) -> Path:
    """Today's warehouse from the archive alone, its Parquet exports and the marts file."""
    exports = tmp_path / "exports"
    with open_warehouse(str(tmp_path / "warehouse.duckdb")) as wh:
        load_days(rig.store(), wh, [today()], exports=exports)
    return build_marts(exports, tmp_path / "marts.duckdb")


def rows(path: Path, sql: str) -> list[dict[str, Any]]:
    names, found = query_marts(path, sql)
    return [dict(zip(names, row, strict=True)) for row in found]


def test_curves_one_point_per_age_archived_and_a_deleted_video_tombstoned(rig: Rig, tmp_path: Path) -> None:
    rig.config = base_config(
        hashtags=[],
        limits={"max_pages": 1, "max_videos_per_day": 3},
        refresh={"ages_hours": [1, 6, 24], "daily_credits": 100, "max_age_days": 2},
    )
    kept, doomed = rig.sb.publish_video("alice123"), rig.sb.publish_video("alice123")
    assert rig.run().success
    assert {kept, doomed} <= rig.ids_in("downloaded")
    detail_asks = rig.sb.stats()["detail_requests_by_id"]
    assert detail_asks[kept] == detail_asks[doomed] == 1

    views_at: dict[tuple[str, float], int] = {}
    for hours in (1.2, 6.3):
        first = metadata(refresh(rig, at_hours=hours), refreshed_posts)
        assert first["refreshed"] >= 2 and first["tombstones_by_reason"] == {}
        for aweme_id in (kept, doomed):
            post = rig.sb.corpus.find_post(aweme_id)
            assert post is not None
            views_at[(aweme_id, float(int(hours)))] = rig.sb.corpus.play_count(post, rig.sb.clock())
    again = metadata(refresh(rig), refreshed_posts)  # same instant again: every due point is already taken
    assert again["refreshed"] == 0 and again["refresh_credits"] == 0

    rig.sb.delete_video(doomed)
    gone = metadata(refresh(rig, at_hours=24.5), refreshed_posts)
    assert gone["tombstones_by_reason"] == {"video not found (deleted)": 1}
    post = rig.sb.corpus.find_post(kept)
    assert post is not None
    views_at[(kept, 24.0)] = rig.sb.corpus.play_count(post, rig.sb.clock())
    refresh(rig, at_hours=30)  # no age passed since: nothing asked, and the gone video never again
    asks = rig.sb.stats()["detail_requests_by_id"]
    assert asks[kept] == 4 and asks[doomed] == 4  # the first detail, 1 h, 6 h; then 24 h (the 404) for the doomed one

    store = rig.store()
    gone_key = f"tiklive-raw/{today():%Y/%m/%d}/post-detail/{refresh_slug(doomed, 24)}-http404.json.gz"
    assert json.loads(gzip.decompress(store.get_bytes(gone_key))) == {"error": "video not found (deleted)"}

    path = marts(rig, tmp_path)
    curves = rows(path, "SELECT * FROM engagement_curves ORDER BY aweme_id, age_hours")
    points = {(r["aweme_id"], r["age_hours"]): r for r in curves}
    assert len(points) == len(curves)  # one point per age per video
    assert sorted(age for aweme_id, age in points if aweme_id == kept) == [1.0, 6.0, 24.0]
    assert sorted(age for aweme_id, age in points if aweme_id == doomed) == [1.0, 6.0]
    for (aweme_id, age), row in points.items():
        parts = split_raw_key(row["source_key"])
        assert parts is not None and parse_refresh_slug(parts.slug) == (aweme_id, age)
        body = json.loads(gzip.decompress(store.get_bytes(row["source_key"])))  # backed by the archived answer
        assert str(body["aweme_id"]) == aweme_id and body["play_count"] == row["views"]
        assert row["deleted"] is (aweme_id == doomed)
    for (aweme_id, age), views in views_at.items():
        assert points[(aweme_id, age)]["views"] == views
    assert [points[(kept, a)]["views"] for a in (1.0, 6.0, 24.0)] == sorted(views_at[(kept, a)] for a in (1, 6, 24))

    deleted = rows(path, "SELECT * FROM deleted_content")
    assert [(r["kind"], r["id"], r["reason"], r["http_status"]) for r in deleted] == [
        ("video", doomed, "video not found (deleted)", 404)
    ]
    assert deleted[0]["source_key"] == gone_key and deleted[0]["handle"] == "alice123"
    # the dead letter names the post, not the refresh slug
    dead = rows(path, "SELECT aweme_id FROM dead_letters")
    assert dead == [{"aweme_id": doomed}]


def test_allotment_respected_tracked_accounts_first_then_most_viewed(rig: Rig) -> None:
    rig.config = base_config(
        limits={"max_pages": 1, "max_videos_per_day": 4},
        refresh={"ages_hours": [1], "daily_credits": 5, "max_age_days": 1000},
    )
    assert rig.run().success
    downloaded = sorted(rig.ids_in("downloaded"))
    assert len(downloaded) > 5

    def rank(aweme_id: str) -> tuple:
        post = rig.sb.corpus.find_post(aweme_id)
        assert post is not None
        tracked = rig.sb.corpus.author_of(post).handle == "alice123"
        return (not tracked, -rig.sb.corpus.play_count(post, FROZEN_NOW), aweme_id)

    expected = sorted(downloaded, key=rank)[:5]
    assert any(rank(a)[0] for a in expected)  # the allotment reaches past the tracked account's videos
    before = rig.sb.stats()["by_endpoint"].get("/post-detail/", 0)
    first = metadata(refresh(rig, at_hours=2), refreshed_posts)
    assert first["refreshed"] == 5 and first["refresh_credits_today"] == 5 and first["left_by_allotment"] > 0
    assert first["refreshed_by_priority"] == {
        "tracked account": sum(not rank(a)[0] for a in expected),
        "most viewed": sum(rank(a)[0] for a in expected),
    }
    assert rig.sb.stats()["by_endpoint"]["/post-detail/"] - before == 5
    with rig.state() as state:
        taken = RefreshState(state).points("ok")
    assert sorted(a for a, *_ in taken) == sorted(expected)
    assert all(credits == 1 and day == today() for _, _, day, _, credits, _ in taken)
    second = metadata(refresh(rig), refreshed_posts)  # the day's allotment is spent: nothing more today
    assert second["refreshed"] == 0 and second["refresh_credits"] == 0
    assert rig.sb.stats()["by_endpoint"]["/post-detail/"] - before == 5


def test_private_account_tombstoned_from_its_profile_capture(rig: Rig, tmp_path: Path) -> None:
    rig.config = base_config(hashtags=[])
    rig.sb.make_private("alice123")
    rig.run()
    path = marts(rig, tmp_path)
    deleted = rows(path, "SELECT kind, id, reason, http_status FROM deleted_content")
    assert deleted and all(r["kind"] == "account" and r["reason"] == "private account" for r in deleted)
    assert {r["id"] for r in deleted} & {ALICE_ID, "alice123"}


def test_refresh_key_never_takes_the_first_details_key() -> None:
    assert refresh_slug("7301", 24) == "7301-refresh24h" and refresh_slug("7301", 1.5) == "7301-refresh1.5h"
    assert parse_refresh_slug("7301") is None and parse_refresh_slug("7301-refresh24h") == ("7301", 24.0)
    assert RefreshArchive.__mro__[1].__name__ == "RawArchive"


def test_purge_after_days_deletes_a_gone_videos_content_except_held_keeps_its_404(rig: Rig) -> None:
    from tiklive_assets.compliance.legal_hold import LegalHolds

    rig.config = base_config(
        hashtags=[],
        limits={"max_pages": 1, "max_videos_per_day": 2},
        refresh={"ages_hours": [1, 6], "daily_credits": 100, "max_age_days": 5},
        tombstones={"purge_raw_after_days": 1},
    )
    doomed = rig.sb.publish_video("alice123")
    assert rig.run().success
    refresh(rig, at_hours=1.5)
    rig.sb.delete_video(doomed)
    assert metadata(refresh(rig, at_hours=6.5), refreshed_posts)["tombstones_by_reason"]
    with rig.state() as state:
        files = {f.kind: f.storage_key for f in state.files_for(doomed)}
        LegalHolds(state).place(files["cover"], "case-7: keep the cover")
    store = rig.store()
    day = f"tiklive-raw/{today():%Y/%m/%d}/post-detail"
    content = [files["video"], files["sidecar"], f"{day}/{doomed}.json.gz", f"{day}/{refresh_slug(doomed, 1)}.json.gz"]
    gone_answer = f"{day}/{refresh_slug(doomed, 6)}-http404.json.gz"
    assert all(store.exists(key) for key in [*content, files["cover"], gone_answer])

    early = metadata(refresh(rig, at_hours=20), refreshed_posts)  # less than a day since it was first seen missing
    assert early["purged_objects"] == 0 and all(store.exists(key) for key in content)
    late = metadata(refresh(rig, at_hours=6.5 + 25), refreshed_posts)
    assert late["purged_objects"] == len(content) and late["purge_kept_by_legal_hold"] == 1
    assert not any(store.exists(key) for key in content)
    assert store.exists(files["cover"]) and store.exists(gone_answer)  # held; the record of the deletion


def test_research_windows_older_than_refresh_days_are_collected_again(tmp_path: Path, monkeypatch) -> None:
    from tiklive_assets.definitions import defs
    from tiklive_assets.defs.refresh.research import research_refresh_schedule
    from tiklive_assets.defs.resources import DataRootResource, TrackingConfigResource
    from tiklive_assets.research.quota import ResearchState, WindowProgress
    from tiklive_assets.state import StateDB

    home = tmp_path / "home"
    home.mkdir()
    (home / "tiklive.yaml").write_text("research: {usernames: [tagesschau], refresh_days: 15}\n")
    with StateDB.from_url(f"sqlite:///{home / 'state.sqlite'}") as state:
        research = ResearchState(state)
        for key, status in (
            ("20260101-20260130", "done"),
            ("20260131-20260301", "done"),
            ("20260302-20260331", "open"),
        ):
            research.save_window(WindowProgress("q1", key, status=status))
        with state._tx(write=True) as tx:  # the first window was collected 20 days ago, the others today
            tx.execute(
                "UPDATE research_windows SET updated_at = ? WHERE window_key = '20260101-20260130'",
                [datetime(2026, 11, 11, tzinfo=UTC).isoformat(timespec="microseconds")],
            )
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 12, 1, 0, 40, tzinfo=UTC),
        resources={
            "data_root": DataRootResource(home=str(home)),
            "tracking": TrackingConfigResource(path=str(home / "tiklive.yaml")),
        },
    )
    requests = research_refresh_schedule(context)
    assert isinstance(requests, list) and len(requests) == 1
    (request,) = requests
    assert request.tags["dagster/asset_partition_range_start"] == "2026-01-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-01-30"
    for name in ("TIKTOK_RESEARCH_CLIENT_KEY", "TIKTOK_RESEARCH_CLIENT_SECRET"):  # the job's resources read them
        monkeypatch.setenv(name, "test-only")
    job = defs().resolve_job_def("research_videos")
    assert dg.validate_run_config(job, request.run_config)["ops"]["research_video_archive"]["config"]["refresh"]


def test_hourly_schedule_one_run_per_hour_on_todays_partition() -> None:
    from tiklive_assets.defs.refresh.assets import hourly_refresh_schedule

    def tick(hour: int) -> dg.RunRequest:
        when = datetime(2026, 12, 1, hour, 20, tzinfo=UTC)
        request = hourly_refresh_schedule(dg.build_schedule_context(scheduled_execution_time=when))
        assert isinstance(request, dg.RunRequest)
        return request

    first, again, later = tick(3), tick(3), tick(4)
    assert first.run_key == again.run_key != later.run_key
    assert first.partition_key == later.partition_key == "2026-12-01"


def test_sandbox_clock_moves_through_its_control_endpoint() -> None:
    import requests

    with frozen_sandbox() as sb:
        post = sb.corpus.visible_posts("alice123")[0]
        url = f"https://www.tiktok.com/@alice123/video/{post.aweme_id}"

        def views() -> int:
            answer = requests.get(
                f"{sb.base_url}/post-detail/", params={"url": url}, headers={"X-Api-Key": "sandbox-key"}, timeout=5
            )
            return int(answer.json()["play_count"])

        before = views()
        moved = requests.post(f"{sb.base_url}/__sandbox__/clock", json={"advance_seconds": 6 * HOUR}, timeout=5)
        assert moved.json() == {"now": FROZEN_NOW + 6 * HOUR, "offset_seconds": 6 * HOUR}
        assert sb.clock() == FROZEN_NOW + 6 * HOUR and views() > before
        refused = requests.post(f"{sb.base_url}/__sandbox__/clock", json={"advance_seconds": -1}, timeout=5)
        assert refused.status_code == 400 and sb.clock() == FROZEN_NOW + 6 * HOUR

"""Schedules, evaluated: today's capture once a day, the janitor every hour; and the janitor's sweep itself."""

import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from tiklive_assets.defs.capture.jobs import daily_capture_schedule, hourly_janitor_schedule, janitor_job
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.state import StateDB


def test_daily_capture_targets_the_days_partition():
    when = datetime(2026, 11, 24, 3, 15, tzinfo=UTC)
    request = daily_capture_schedule(dg.build_schedule_context(scheduled_execution_time=when))
    assert request.partition_key == "2026-11-24"
    assert request.run_key == "daily-capture-2026-11-24"
    assert daily_capture_schedule.cron_schedule == "15 3 * * *"


def test_warehouse_and_verification_run_after_the_day_closes():
    from tiklive_assets.defs.verification.checks import nightly_verification_schedule
    from tiklive_assets.defs.warehouse.jobs import daily_warehouse_schedule

    when = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)
    request = daily_warehouse_schedule(dg.build_schedule_context(scheduled_execution_time=when))
    assert request.partition_key == "2026-11-23" and request.run_key == "daily-warehouse-2026-11-23"
    nightly = nightly_verification_schedule(dg.build_schedule_context(scheduled_execution_time=when.replace(hour=4)))
    assert nightly.run_key == "nightly-verification-2026-11-24"
    assert nightly_verification_schedule.cron_schedule == "30 4 * * *"


def test_hourly_janitor_has_one_run_per_hour():
    first = hourly_janitor_schedule(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 24, 5, 0, tzinfo=UTC))
    )
    again = hourly_janitor_schedule(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 24, 5, 0, tzinfo=UTC))
    )
    later = hourly_janitor_schedule(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    )
    assert first.run_key == again.run_key != later.run_key


def test_janitor_removes_only_old_part_files(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    old, fresh = scratch / "dl.old.mp4.part", scratch / "dl.new.mp4.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    for aweme_id in ("7300000000000000009", "7300000000000000010"):
        state.enqueue([(aweme_id, "test", "bob")])
        state.mark_dead(aweme_id, "video not found (deleted)", 404)
    with sqlite3.connect(tmp_path / "state.sqlite") as db:  # one dead letter is older than the configured retention
        db.execute(
            "UPDATE dead_letter SET failed_at = ? WHERE aweme_id = ?",
            [(datetime.now(UTC) - timedelta(days=3)).isoformat(), "7300000000000000009"],
        )
    config = tmp_path / "tiklive.yaml"
    config.write_text("capture: {dead_letter_retention_days: 2}\n")
    result = janitor_job.execute_in_process(
        resources={
            "archive_store": ArchiveStoreResource(local_root=str(tmp_path / "archive")),
            "data_root": DataRootResource(home=str(tmp_path)),
            "tracking": TrackingConfigResource(path=str(config)),
        }
    )
    assert result.success
    assert not old.exists() and fresh.exists()
    assert state.dead_letter("7300000000000000009") is None  # aged out after 2 days
    assert state.dead_letters_by_reason() == {"video not found (deleted)": 1}


def test_research_windows_stopped_by_the_quota_resume_after_midnight(tmp_path):
    from tiklive_assets.defs.research.schedules import research_resume_schedule
    from tiklive_assets.research.quota import ResearchState, WindowProgress

    resources = {"data_root": DataRootResource(home=str(tmp_path))}
    when = datetime(2026, 11, 25, 0, 10, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=when, resources=resources) as context:
        assert isinstance(research_resume_schedule(context), dg.SkipReason)
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    research = ResearchState(state)
    research.save_window(
        WindowProgress(
            scope="q1",
            window_key="20240131-20240229",
            next_cursor=100,
            pages=1,
            stop_reason="daily_quota_limit_exceeded",
        )
    )
    research.save_window(WindowProgress(scope="q1", window_key="20240101-20240130", status="done"))
    with dg.build_schedule_context(scheduled_execution_time=when, resources=resources) as context:
        [request] = research_resume_schedule(context)
    assert request.tags["dagster/asset_partition_range_start"] == "2024-01-31"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-02-29"
    assert request.run_key == "research-resume-20240131-20240229-2026-11-25"


def test_research_windows_stopped_for_other_reasons_wait_for_a_person(tmp_path):
    from tiklive_assets.defs.research.schedules import research_resume_schedule
    from tiklive_assets.research.quota import ResearchState, WindowProgress

    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    ResearchState(state).save_window(
        WindowProgress(scope="q1", window_key="20240131-20240229", stop_reason="search_id expired")
    )
    with dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 25, 0, 10, tzinfo=UTC),
        resources={"data_root": DataRootResource(home=str(tmp_path))},
    ) as context:
        assert isinstance(research_resume_schedule(context), dg.SkipReason)

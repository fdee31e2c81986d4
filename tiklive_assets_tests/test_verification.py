"""Restore verification and integrity checks: each passes on good data and fails on planted corruption."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.keys import raw_key, video_key
from tiklive_assets.verification.integrity import (
    duplicate_post_ids,
    empty_archive_days,
    due_day,
    video_consistency,
)
from tiklive_assets.verification.restore import verify_day, verify_random_day
from tiklive_assets.warehouse import load_days, open_warehouse
from tiklive_assets_tests.support.archive import write_archive_day

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=3), TODAY - timedelta(days=2), TODAY - timedelta(days=1)]


@pytest.fixture
def built(tmp_path: Path) -> tuple[LocalStore, str]:
    """Three archived days and the warehouse loaded from them."""
    store = LocalStore(tmp_path / "archive")
    corpus = Corpus(seed=7)
    for day in DAYS:
        write_archive_day(store, day, corpus)
    url = str(tmp_path / "warehouse.duckdb")
    with open_warehouse(url) as wh:
        load_days(store, wh, DAYS)
    return store, url


def test_restore_verification_passes_on_good_data_and_records_seed_and_day(built):
    store, url = built
    with open_warehouse(url) as wh:
        report = verify_random_day(store, wh, TODAY, seed=42)
    assert report.passed, report.failing_tables
    assert report.seed == 42 and report.day in DAYS and report.objects > 0
    assert {t.table for t in report.tables} >= {"posts", "user_snapshots", "post_metrics_history", "follow_edges"}
    # the same seed picks the same day: the sample is reproducible from metadata
    with open_warehouse(url) as wh:
        assert verify_random_day(store, wh, TODAY, seed=42).day == report.day


def test_a_truncated_gzip_object_fails_with_its_key(built):
    store, url = built
    key = raw_key(DAYS[1], "userinfo-by-id", Corpus(seed=7).account("bob").id)
    path = store.root / key
    path.write_bytes(path.read_bytes()[:20])
    with open_warehouse(url) as wh:
        report = verify_day(store, wh, DAYS[1])
    assert not report.passed
    assert any(key in line for line in report.unreadable)


def test_a_deleted_warehouse_row_fails_naming_the_table(built):
    store, url = built
    with duckdb.connect(url) as con:
        con.execute("DELETE FROM post_metrics_history WHERE rowid IN (SELECT rowid FROM post_metrics_history WHERE dt = ? LIMIT 1)", [DAYS[0]])
    with open_warehouse(url) as wh:
        report = verify_day(store, wh, DAYS[0])
    assert [t.table for t in report.failing_tables] == ["post_metrics_history"]
    with open_warehouse(url) as wh:
        assert verify_day(store, wh, DAYS[1]).passed  # other days are intact


def test_a_duplicated_post_is_found(built):
    _, url = built
    with open_warehouse(url) as wh:
        assert duplicate_post_ids(wh) == []
    with duckdb.connect(url) as con:  # plant a duplicate the primary key would refuse: rebuild the table without it
        con.execute("CREATE TABLE posts_copy AS SELECT * FROM posts; DROP TABLE posts; ALTER TABLE posts_copy RENAME TO posts")
        con.execute("INSERT INTO posts SELECT * FROM posts LIMIT 1")
    with open_warehouse(url) as wh:
        [(aweme_id, rows)] = duplicate_post_ids(wh)
    assert rows == 2


def test_a_missing_mp4_and_an_orphan_mp4_are_found(built):
    store, url = built
    with open_warehouse(url) as wh:
        assert video_consistency(store, wh, TODAY).ok
        [(aweme_id, key)] = wh.query("SELECT aweme_id, storage_key FROM posts WHERE storage_key IS NOT NULL LIMIT 1")
    store.delete(key)
    orphan = video_key(DAYS[2], "bob", "7999999999999999999")
    store.put_bytes(orphan, b"\x00\x00\x00\x20ftypisom", content_type="video/mp4")
    with open_warehouse(url) as wh:
        result = video_consistency(store, wh, TODAY)
    assert result.post_without_mp4 == [key]
    assert result.mp4_without_post == [orphan]


def test_an_empty_archive_day_is_found(built):
    store, _ = built
    assert empty_archive_days(store, TODAY) == []
    for info in list(store.list(f"tiklive-raw/{DAYS[1]:%Y/%m/%d}/")):
        store.delete(info.key)
    assert empty_archive_days(store, TODAY) == [DAYS[1]]


def test_the_day_due_is_today_after_the_deadline_and_yesterday_before_it():
    assert due_day(datetime(2026, 11, 24, 9, tzinfo=UTC), 6) == date(2026, 11, 24)
    assert due_day(datetime(2026, 11, 24, 4, 30, tzinfo=UTC), 6) == date(2026, 11, 23)


def test_landed_and_dead_letter_checks_pass_and_fail(tmp_path, monkeypatch):
    from tiklive_assets.defs.archive.checks import dead_letter_ratio
    from tiklive_assets.defs.resources import DataRootResource
    from tiklive_assets.defs.verification.checks import todays_partition_landed
    from tiklive_assets.state import StateDB

    resources = {"data_root": DataRootResource(home=str(tmp_path))}
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    due = due_day(datetime.now(UTC), 6)
    assert not todays_partition_landed(dg.build_asset_check_context(resources=resources)).passed
    state.set_value(f"asset-complete:archived_videos:{due.isoformat()}", "1")
    assert todays_partition_landed(dg.build_asset_check_context(resources=resources)).passed

    ids = [f"73000000000000000{i:02d}" for i in range(10)]
    state.enqueue([(i, "test", "bob") for i in ids])
    for i in ids[:9]:
        state.mark_downloaded(i)
    state.mark_dead(ids[9], "video not found (deleted)", 404)
    assert dead_letter_ratio(dg.build_asset_check_context(resources=resources)).passed  # 1 in 10
    for i in ids[:5]:
        state.requeue(i)
        state.mark_dead(i, "video is private", 404)
    result = dead_letter_ratio(dg.build_asset_check_context(resources=resources))
    assert not result.passed and result.metadata["dead_letter_ratio"].value == 0.6


def test_nightly_check_job_fails_loudly_on_planted_corruption(built, tmp_path, monkeypatch):
    from tiklive_assets.defs.archive.assets import CAPTURE_ASSETS
    from tiklive_assets.defs.resources import (
        ArchiveStoreResource, DataRootResource, TikLiveApiResource, TrackingConfigResource,
    )
    from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS, nightly_verification_job
    from tiklive_assets.defs.warehouse.assets import warehouse_tables
    from tiklive_assets.defs.warehouse.resources import WarehouseResource

    store, url = built
    monkeypatch.setenv("TIKLIVE_RESTORE_SEED", "3")
    resources = {
        "archive_store": ArchiveStoreResource(local_root=str(store.root)),
        "data_root": DataRootResource(home=str(tmp_path)),
        "warehouse": WarehouseResource(url=url),
        "tiklive_api": TikLiveApiResource(api_key="unused: the check job calls no API"),
        "tracking": TrackingConfigResource(),
    }
    good = dg.Definitions(
        assets=[*CAPTURE_ASSETS, warehouse_tables], asset_checks=NIGHTLY_CHECKS, jobs=[nightly_verification_job],
        resources=resources,
    ).resolve_job_def("nightly_verification")
    result = good.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["restore_verification"].passed
    assert evaluations["restore_verification"].metadata["seed"].value == 3
    # plant corruption in every day: the restore test must fail and name the table
    with duckdb.connect(url) as con:
        con.execute("DELETE FROM user_snapshots")
    result = good.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    evaluation = {e.check_name: e for e in result.get_asset_check_evaluations()}["restore_verification"]
    assert not evaluation.passed
    assert "user_snapshots" in evaluation.metadata["failing_tables"].value


def test_a_changed_value_fails_even_when_row_counts_match(built):
    store, url = built
    with duckdb.connect(url) as con:
        con.execute("UPDATE credits_ledger SET requests = requests * 2 WHERE dt = ?", [DAYS[2]])
    with open_warehouse(url) as wh:
        report = verify_day(store, wh, DAYS[2])
    [failing] = report.failing_tables
    assert failing.table == "credits_ledger" and failing.values_differ == ["requests"]
    assert failing.replayed == failing.in_warehouse

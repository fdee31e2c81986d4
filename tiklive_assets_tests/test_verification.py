"""Restore verification and integrity checks: each passes on good data and fails on planted corruption."""

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.keys import raw_key, video_key
from tiklive_assets.verification.integrity import (
    due_day,
    duplicate_post_ids,
    empty_archive_days,
    first_archived_day,
    video_consistency,
)
from tiklive_assets.verification.restore import verify_day, verify_random_day
from tiklive_assets.warehouse import load_days, open_warehouse
from tiklive_assets_tests.support.archive import write_archive_day

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=3), TODAY - timedelta(days=2), TODAY - timedelta(days=1)]


@pytest.fixture(scope="module")
def built_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three archived days and the warehouse loaded from them, built once for the module: the same seed and days give
    the same bytes every time, so each test gets a copy instead of writing and loading them again."""
    root = tmp_path_factory.mktemp("built")
    store = LocalStore(root / "archive")
    corpus = Corpus(seed=7)
    for day in DAYS:
        write_archive_day(store, day, corpus)
    with open_warehouse(str(root / "warehouse.duckdb")) as wh:
        load_days(store, wh, DAYS)
    return root


@pytest.fixture
def built(built_once: Path, tmp_path: Path) -> tuple[LocalStore, str]:
    """Three archived days and the warehouse loaded from them: a copy of its own, which the test may corrupt."""
    shutil.copytree(built_once / "archive", tmp_path / "archive")
    for path in built_once.glob("warehouse.duckdb*"):  # the database (and a WAL, were one left)
        shutil.copy2(path, tmp_path / path.name)
    return LocalStore(tmp_path / "archive"), str(tmp_path / "warehouse.duckdb")


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
        con.execute(
            "DELETE FROM post_metrics_history WHERE rowid IN "
            "(SELECT rowid FROM post_metrics_history WHERE dt = ? LIMIT 1)",
            [DAYS[0]],
        )
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
        con.execute(
            "CREATE TABLE posts_copy AS SELECT * FROM posts; DROP TABLE posts; ALTER TABLE posts_copy RENAME TO posts"
        )
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


def _landed(tmp_path, store_root):
    from tiklive_assets.defs.verification.checks import todays_partition_landed

    job = dg.define_asset_job("landed_only", selection=dg.AssetSelection.checks(todays_partition_landed))
    defs = _check_defs(tmp_path, store_root, str(tmp_path / "warehouse.duckdb"), [job])
    return _evaluate(defs.resolve_job_def("landed_only"))[1]["todays_partition_landed"]


def test_landed_and_dead_letter_checks_pass_and_fail(tmp_path, monkeypatch):
    from tiklive_assets.defs.capture.checks import dead_letter_ratio
    from tiklive_assets.defs.resources import DataRootResource
    from tiklive_assets.state import StateDB

    resources = {"data_root": DataRootResource(home=str(tmp_path))}
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    due = due_day(datetime.now(UTC), 6)
    assert not _landed(tmp_path, tmp_path / "archive").passed
    state.set_value(f"asset-complete:archived_videos:{due.isoformat()}", "1")
    assert _landed(tmp_path, tmp_path / "archive").passed

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
    from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
    from tiklive_assets.defs.resources import (
        ArchiveStoreResource,
        DataRootResource,
        TikLiveApiResource,
        TrackingConfigResource,
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
        assets=[*CAPTURE_ASSETS, warehouse_tables],
        asset_checks=NIGHTLY_CHECKS,
        jobs=[nightly_verification_job],
        resources=resources,
    ).resolve_job_def("nightly_verification")
    result = good.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["restore_verification"].passed
    assert evaluations["restore_verification"].metadata["seed"].value == 3
    assert "verified" in evaluations["restore_verification"].description
    # plant corruption in every day: the restore test must fail and name the table
    with duckdb.connect(url) as con:
        con.execute("DELETE FROM user_snapshots")
    result = good.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    evaluation = {e.check_name: e for e in result.get_asset_check_evaluations()}["restore_verification"]
    assert not evaluation.passed
    assert "user_snapshots" in evaluation.metadata["failing_tables"].value
    assert "user_snapshots" in evaluation.description
    assert not result.success  # blocking: the nightly run fails, so the runs page shows it red


def test_a_changed_value_fails_even_when_row_counts_match(built):
    store, url = built
    with duckdb.connect(url) as con:
        con.execute("UPDATE credits_ledger SET requests = requests * 2 WHERE dt = ?", [DAYS[2]])
    with open_warehouse(url) as wh:
        report = verify_day(store, wh, DAYS[2])
    [failing] = report.failing_tables
    assert failing.table == "credits_ledger" and failing.values_differ == ["requests"]
    assert failing.replayed == failing.in_warehouse


def test_nightly_verification_passes_every_check_after_the_first_sandbox_run(tmp_path, monkeypatch):
    """A fresh home after `tiklive run --sandbox` (only today captured): the nightly job verifies today, the one
    archived day, and every check passes; the run is green."""
    import os
    import subprocess
    import sys

    from tiklive_assets.definitions import defs

    home, config = tmp_path / "home", tmp_path / "tiklive.yaml"
    config.write_text(
        "plan: {requests_per_minute: 100000}\n"
        "limits: {max_pages: 1, max_videos_per_day: 3}\n"
        "accounts:\n  - handle: bob\n    follow_max_pages: 1\n    comments: {recent_videos: 1, max_pages: 1}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
    env.update(TIKLIVE_HOME=str(home), TIKLIVE_CONFIG=str(config), TIKLIVE_RATELIMIT_URL="memory://")
    tiklive = Path(sys.executable).parent / "tiklive"
    run = subprocess.run([str(tiklive), "run", "--sandbox"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "checks:            all passed" in run.stdout  # tiklive run evaluated the cheap checks too

    for key in [k for k in os.environ if k.startswith(("TIKLIVE_", "DAGSTER_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TIKLIVE_HOME", str(home))
    monkeypatch.setenv("TIKLIVE_CONFIG", str(config))
    monkeypatch.setenv("TIKLIVE_API_KEY", "unused: the check job calls no API")
    job = defs().resolve_job_def("nightly_verification")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {
        "restore_verification",
        "archive_days_non_empty",
        "videos_match_posts",
        "todays_partition_landed",
    }
    failing = {
        name: {k: getattr(v, "value", v) for k, v in e.metadata.items()}
        for name, e in evaluations.items()
        if not e.passed
    }
    assert not failing, failing
    assert result.success
    restore = evaluations["restore_verification"]
    assert restore.metadata["day"].value == str(TODAY) and restore.metadata["objects_parsed"].value > 0


def _raw_day(store, day):
    store.put_bytes(raw_key(day, "userid", "bob"), b"\x1f\x8b planted", content_type="application/gzip")


def test_archive_days_since_the_first_capture_are_all_judged(tmp_path):
    store = LocalStore(tmp_path / "archive")
    assert first_archived_day(store) is None and empty_archive_days(store, TODAY) == []  # nothing due yet
    _raw_day(store, TODAY)
    assert first_archived_day(store) == TODAY and empty_archive_days(store, TODAY) == []  # a fresh install
    first = TODAY - timedelta(days=45)  # a capture that stopped long ago: every day since is missing
    _raw_day(store, first)
    assert first_archived_day(store) == first
    missing = empty_archive_days(store, TODAY)
    assert len(missing) == 44 and missing[0] == first + timedelta(days=1) and missing[-1] == TODAY - timedelta(days=1)


def _check_defs(tmp_path, store_root, warehouse_url, extra_jobs=()):
    from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
    from tiklive_assets.defs.resources import (
        ArchiveStoreResource,
        DataRootResource,
        TikLiveApiResource,
        TrackingConfigResource,
    )
    from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS, nightly_verification_job
    from tiklive_assets.defs.warehouse.assets import warehouse_tables
    from tiklive_assets.defs.warehouse.resources import WarehouseResource

    return dg.Definitions(
        assets=[*CAPTURE_ASSETS, warehouse_tables],
        asset_checks=NIGHTLY_CHECKS,
        jobs=[nightly_verification_job, *extra_jobs],
        resources={
            "archive_store": ArchiveStoreResource(local_root=str(store_root)),
            "data_root": DataRootResource(home=str(tmp_path)),
            "warehouse": WarehouseResource(url=warehouse_url),
            "tiklive_api": TikLiveApiResource(api_key="unused: the check job calls no API"),
            "tracking": TrackingConfigResource(),
        },
    )


def _evaluate(job):
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    return result, {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_fresh_install_verifies_today_and_a_gap_fails_the_nightly_run_but_never_a_capture_run(tmp_path):
    from tiklive_assets.defs.verification.checks import archive_days_non_empty

    store = LocalStore(tmp_path / "archive")
    url = str(tmp_path / "warehouse.duckdb")
    with open_warehouse(url) as wh:
        load_days(store, wh, [])
    other = dg.define_asset_job("daily_capture_like", selection=dg.AssetSelection.checks(archive_days_non_empty))
    defs = _check_defs(tmp_path, store.root, url, [other])
    nightly, capture = defs.resolve_job_def("nightly_verification"), defs.resolve_job_def("daily_capture_like")

    _, checks = _evaluate(nightly)  # nothing archived: no history is not a failure, and it says so
    assert checks["restore_verification"].passed and "nothing verified" in checks["restore_verification"].description
    assert checks["archive_days_non_empty"].passed

    write_archive_day(store, TODAY, Corpus(seed=7))  # the first capture, today only
    with open_warehouse(url) as wh:
        load_days(store, wh, [TODAY])
    result, checks = _evaluate(nightly)
    assert checks["restore_verification"].passed and checks["restore_verification"].metadata["day"].value == str(TODAY)
    assert checks["restore_verification"].description.startswith(f"verified {TODAY}")
    assert checks["archive_days_non_empty"].passed
    assert "first capture is today" in checks["archive_days_non_empty"].description

    _raw_day(store, TODAY - timedelta(days=3))  # an earlier capture, then two days with nothing
    result, checks = _evaluate(nightly)
    gap = checks["archive_days_non_empty"]
    assert not gap.passed
    assert gap.metadata["empty_days"].value == [str(TODAY - timedelta(days=2)), str(TODAY - timedelta(days=1))]
    assert gap.severity == dg.AssetCheckSeverity.ERROR and not result.success  # blocking: the nightly run is red
    result, checks = _evaluate(capture)  # the same gap in a capture run is a warning: it never blocks the capture
    assert not checks["archive_days_non_empty"].passed
    assert checks["archive_days_non_empty"].severity == dg.AssetCheckSeverity.WARN and result.success


def test_a_warehouse_the_archive_cannot_replay_fails_restore_verification(built, tmp_path):
    store, url = built
    for info in list(store.list("tiklive-raw/")):
        store.delete(info.key)
    _, checks = _evaluate(_check_defs(tmp_path, store.root, url).resolve_job_def("nightly_verification"))
    restore = checks["restore_verification"]
    assert not restore.passed and "no day in them to replay" in restore.description


def test_a_day_before_the_first_capture_is_not_due(tmp_path):
    store = LocalStore(tmp_path / "archive")
    assert not _landed(tmp_path, store.root).passed  # nothing landed, nothing archived
    _raw_day(store, TODAY + timedelta(days=1))  # the first capture comes after the day due
    result = _landed(tmp_path, store.root)
    assert result.passed and "nothing due yet" in result.metadata["status"].value

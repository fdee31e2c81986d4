"""Disaster recovery: warehouse snapshots (DuckDB and Postgres, mirrored, pruned), restore-warehouse (the snapshot,
then only the days after it), and the four drills on the real sandbox, each of which must pass."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tiklive_assets.recovery import (
    SNAPSHOT_PREFIX,
    SnapshotError,
    choose_snapshot,
    list_snapshots,
    prune_snapshots,
    restore_warehouse,
    take_snapshot,
)
from tiklive_assets.recovery.restore import erasures_after
from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore, MirroredStore, S3Store, make_s3_client
from tiklive_assets.warehouse import open_warehouse, replay
from tiklive_assets.warehouse.schema import TABLE_NAMES
from tiklive_assets_tests.support.archive import write_archive_day
from tiklive_assets_tests.test_alerts import receiver  # noqa: F401 - the webhook fixture

DAYS = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
AFTER_DAY_2 = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)  # the daily snapshot once day 2 has closed


@pytest.fixture(scope="module")
def archived_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three archived days, written once for the module (a seeded corpus on a fixed clock: the same bytes)."""
    root = tmp_path_factory.mktemp("archived") / "archive"
    store = LocalStore(root)
    corpus = Corpus(seed=7, clock=lambda: 1780056000.0)
    for day in DAYS:
        write_archive_day(store, day, corpus)
    return root


@pytest.fixture
def store(archived_once: Path, tmp_path: Path) -> LocalStore:
    """A copy of the three archived days of its own (tests add snapshots to it and damage them)."""
    shutil.copytree(archived_once, tmp_path / "archive")
    return LocalStore(tmp_path / "archive")


def _tables(url: str) -> dict[str, tuple[int, str]]:
    with open_warehouse(url, read_only=True) as wh:
        return wh.fingerprints()


def test_snapshot_then_restore_replays_only_the_days_after_it(store: LocalStore, tmp_path: Path) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[1])
    manifest = take_snapshot(store, live, now=AFTER_DAY_2)
    assert manifest.snapshot_id == "20261122T013000Z" and manifest.last_day == DAYS[1]
    assert manifest.replay_from() == DAYS[2]  # day 2 had ended: the snapshot holds all of it
    keys = {info.key.removeprefix(manifest.prefix) for info in store.list(manifest.prefix)}
    assert keys == {f.name for f in manifest.files} | {"manifest.json"}
    assert {"posts.parquet", "schema.sql", "load.sql"} <= keys  # EXPORT DATABASE's files, each checked by sha256
    with open_warehouse(live, read_only=True) as wh:
        assert manifest.tables == {name: wh.row_count(name) for name in TABLE_NAMES}
    replay(store, live, DAYS[2], DAYS[2])
    expected = _tables(live)

    Path(live).unlink()  # the warehouse is lost
    said: list[str] = []
    report = restore_warehouse(store, live, until=DAYS[2], say=said.append)
    assert report.snapshot.snapshot_id == manifest.snapshot_id and report.replayed == [DAYS[2]]
    assert report.replay is not None and report.replay.days == [DAYS[2]]
    assert _tables(live) == expected  # the same rows and values as before the loss
    assert any("replaying the 1 archived day(s)" in line for line in said)


def test_a_snapshot_of_an_open_day_replays_that_day_too(store: LocalStore, tmp_path: Path) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[1])
    manifest = take_snapshot(store, live, now=datetime(2026, 11, 21, 18, 0, tzinfo=UTC))
    assert manifest.replay_from() == DAYS[1]  # more of day 2 may have been archived after the snapshot
    report = restore_warehouse(store, str(tmp_path / "restored.duckdb"), until=DAYS[2])
    assert report.replayed == DAYS[1:]


def test_restore_at_a_time_picks_the_newest_snapshot_before_it(store: LocalStore, tmp_path: Path) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[0])
    first = take_snapshot(store, live, now=datetime(2026, 11, 21, 1, 30, tzinfo=UTC))
    replay(store, live, DAYS[1], DAYS[1])
    second = take_snapshot(store, live, now=AFTER_DAY_2)
    assert [m.snapshot_id for m in list_snapshots(store)] == [first.snapshot_id, second.snapshot_id]
    assert choose_snapshot(store).snapshot_id == second.snapshot_id
    assert choose_snapshot(store, datetime(2026, 11, 21, 12, tzinfo=UTC)).snapshot_id == first.snapshot_id
    with pytest.raises(SnapshotError, match="tiklive replay"):
        choose_snapshot(store, datetime(2026, 11, 1, tzinfo=UTC))
    restored = str(tmp_path / "restored.duckdb")
    report = restore_warehouse(store, restored, at=datetime(2026, 11, 21, 12, tzinfo=UTC), until=DAYS[2])
    assert report.snapshot.snapshot_id == first.snapshot_id and report.replayed == DAYS[1:]
    full = str(tmp_path / "full.duckdb")
    replay(store, full, DAYS[0], DAYS[2])
    assert _tables(restored) == _tables(full)


def test_a_damaged_snapshot_file_is_refused_and_the_old_warehouse_stays(store: LocalStore, tmp_path: Path) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[0])
    manifest = take_snapshot(store, live, now=AFTER_DAY_2)
    before = _tables(live)
    path = store.root / manifest.prefix / "posts.parquet"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(SnapshotError, match="posts.parquet is damaged"):
        restore_warehouse(store, live, until=DAYS[2])
    assert _tables(live) == before


def test_prune_keeps_30_days_the_newest_and_held_snapshots(store: LocalStore, tmp_path: Path) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[0])
    now = datetime(2026, 12, 31, 2, 0, tzinfo=UTC)
    taken = [take_snapshot(store, live, now=now - timedelta(days=age)) for age in (45, 40, 35, 10)]
    store.put_bytes(f"{SNAPSHOT_PREFIX}20261230T000000Z/posts.parquet", b"interrupted", content_type="text/plain")
    held = taken[1].prefix
    removed = prune_snapshots(store, now=now, held=lambda key: key.startswith(held))
    assert removed == [taken[0].snapshot_id, taken[2].snapshot_id, "20261230T000000Z"]
    assert [m.snapshot_id for m in list_snapshots(store)] == [taken[1].snapshot_id, taken[3].snapshot_id]
    # the newest complete snapshot is never pruned, however old it is
    assert prune_snapshots(store, now=now + timedelta(days=400)) == [taken[1].snapshot_id]
    assert [m.snapshot_id for m in list_snapshots(store)] == [taken[3].snapshot_id]


def test_snapshots_are_mirrored_to_the_secondary(store: LocalStore, tmp_path: Path) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[0])
    secondary = LocalStore(tmp_path / "secondary")
    manifest = take_snapshot(MirroredStore(store, secondary), live, now=AFTER_DAY_2)
    copied = {info.key: secondary.get_bytes(info.key) for info in secondary.list(manifest.prefix)}
    assert copied == {info.key: store.get_bytes(info.key) for info in store.list(manifest.prefix)}
    assert [m.snapshot_id for m in list_snapshots(secondary)] == [manifest.snapshot_id]  # restorable from it alone


def test_postgres_snapshot_restores_into_postgres_and_duckdb(store: LocalStore, tmp_path: Path, postgres_url) -> None:
    replay(store, postgres_url, DAYS[0], DAYS[1])
    manifest = take_snapshot(store, postgres_url, now=AFTER_DAY_2)
    assert manifest.backend == "postgres" and manifest.last_day == DAYS[1]
    assert {f.table for f in manifest.files} >= set(TABLE_NAMES)
    replay(store, postgres_url, DAYS[2], DAYS[2])
    expected = {name: rows for name, (rows, _) in _tables(postgres_url).items()}
    with open_warehouse(postgres_url) as wh:
        wh.query("DELETE FROM posts")  # a damaged warehouse: the restore replaces every table
    report = restore_warehouse(store, postgres_url, until=DAYS[2])
    assert report.replayed == [DAYS[2]]
    assert {name: rows for name, (rows, _) in _tables(postgres_url).items()} == expected
    duck = str(tmp_path / "from-postgres.duckdb")
    restore_warehouse(store, duck, until=DAYS[2])
    assert {name: rows for name, (rows, _) in _tables(duck).items()} == expected


def test_erasures_after_the_snapshot_are_named() -> None:
    taken = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)
    log = [
        {"request_id": "a", "finished_at": "2026-11-21T10:00:00+00:00"},
        {"request_id": "b", "finished_at": "2026-11-23T10:00:00+00:00"},
        {"request_id": "c", "started_at": "2026-11-24T10:00:00+00:00", "finished_at": None},
    ]
    assert [e["request_id"] for e in erasures_after(log, taken)] == ["b", "c"]


def test_cli_snapshot_list_and_restore_warehouse(store: LocalStore, tmp_path: Path, capsys, monkeypatch) -> None:
    from tiklive_assets.cli import main

    home = store.root.parent
    replay(store, str(home / "warehouse.duckdb"), DAYS[0], DAYS[2])
    expected = _tables(str(home / "warehouse.duckdb"))
    assert main(["dr", "snapshot", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "snapshot 2" in out and "last day 2026-11-22" in out and "pruned 0 snapshot(s)" in out
    assert main(["dr", "snapshots", "--home", str(home)]) == 0
    assert "1 snapshot(s)" in capsys.readouterr().out
    (home / "warehouse.duckdb").unlink()
    assert main(["dr", "restore-warehouse", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "restored" in out and "then 0 day(s) replayed" in out  # the snapshot was taken after the last day
    assert _tables(str(home / "warehouse.duckdb")) == expected
    assert main(["dr", "restore-warehouse", "--at", "2026-01-01", "--home", str(home)]) == 2
    assert "no warehouse snapshot taken at or before" in capsys.readouterr().err


def _tamper_manifest(store: LocalStore, prefix: str, table: str, delta: int) -> None:
    path = store.root / prefix / "manifest.json"
    data = json.loads(path.read_bytes())
    data["tables"][table] += delta
    path.write_bytes(json.dumps(data).encode())


def test_other_row_counts_than_the_manifest_leave_the_duckdb_warehouse_unchanged(
    store: LocalStore, tmp_path: Path
) -> None:
    live = tmp_path / "warehouse.duckdb"
    replay(store, str(live), DAYS[0], DAYS[0])
    manifest = take_snapshot(store, str(live), now=AFTER_DAY_2)
    replay(store, str(live), DAYS[1], DAYS[1])  # the warehouse moved on: a replaced file would show it
    _tamper_manifest(store, manifest.prefix, "posts", 1)
    before = live.read_bytes()
    with pytest.raises(SnapshotError, match=r"other row counts \(posts: .* left as it was.*--at"):
        restore_warehouse(store, str(live), until=DAYS[2])
    assert live.read_bytes() == before  # byte for byte: the good warehouse was never replaced
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("warehouse.duckdb")) == ["warehouse.duckdb"]


def test_other_row_counts_roll_the_postgres_table_back(store: LocalStore, postgres_url) -> None:
    replay(store, postgres_url, DAYS[0], DAYS[1])
    manifest = take_snapshot(store, postgres_url, now=AFTER_DAY_2)
    with open_warehouse(postgres_url) as wh:
        wh.query("DELETE FROM posts")  # what the warehouse holds now differs from the snapshot
    before = _tables(postgres_url)
    _tamper_manifest(store, manifest.prefix, "posts", 1)
    with pytest.raises(SnapshotError, match=r"other row counts \(posts: .* rolled back"):
        restore_warehouse(store, postgres_url, until=DAYS[2])
    assert _tables(postgres_url) == before  # posts rolled back (still empty); the tables before it hold the same rows


def test_an_unreadable_manifest_is_skipped_and_an_unsupported_format_refused(
    store: LocalStore, tmp_path: Path, caplog
) -> None:
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[0])
    first = take_snapshot(store, live, now=datetime(2026, 11, 21, 1, 30, tzinfo=UTC))
    second = take_snapshot(store, live, now=AFTER_DAY_2)
    (store.root / second.prefix / "manifest.json").write_bytes(b'{"snapshot_id": "half a manifest')
    with caplog.at_level(logging.WARNING):
        assert [m.snapshot_id for m in list_snapshots(store)] == [first.snapshot_id]
    assert f"{second.prefix}manifest.json is not a snapshot manifest" in caplog.text
    (store.root / second.prefix / "manifest.json").write_bytes(b'{"format": 1}')  # a field missing
    assert [m.snapshot_id for m in list_snapshots(store)] == [first.snapshot_id]
    data = json.loads((store.root / first.prefix / "manifest.json").read_bytes())
    (store.root / first.prefix / "manifest.json").write_bytes(json.dumps({**data, "format": 99}).encode())
    with pytest.raises(SnapshotError, match=f"{first.prefix}manifest.json is a snapshot manifest of format 99"):
        choose_snapshot(store)


def test_prune_goes_on_past_a_snapshot_the_store_refuses_to_delete(
    store: LocalStore, tmp_path: Path, moto_endpoint: str
) -> None:
    client = make_s3_client(
        endpoint_url=moto_endpoint, region_name="us-east-1", access_key_id="testing", secret_access_key="testing"
    )
    bucket = f"tiklive-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3 = S3Store(client, bucket, "archive")
    live = str(tmp_path / "warehouse.duckdb")
    replay(store, live, DAYS[0], DAYS[0])
    now = datetime(2026, 12, 31, 2, 0, tzinfo=UTC)
    taken = [take_snapshot(s3, live, now=now - timedelta(days=age)) for age in (45, 40, 10)]
    locked = f"archive/{taken[0].prefix}posts.parquet"
    client.put_object_legal_hold(Bucket=bucket, Key=locked, LegalHold={"Status": "ON"})  # a hold the state lacks
    try:
        removed = prune_snapshots(s3, now=now)
        assert removed == [taken[1].snapshot_id]  # the next old snapshot was still pruned
        assert (
            list(removed.failed) == [taken[0].snapshot_id] and "posts.parquet" in removed.failed[taken[0].snapshot_id]
        )
        assert [m.snapshot_id for m in list_snapshots(s3)] == [taken[2].snapshot_id]
    finally:
        client.put_object_legal_hold(Bucket=bucket, Key=locked, LegalHold={"Status": "OFF"})


def test_erasures_not_completed_are_named_whenever_they_started() -> None:
    taken = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)
    log = [
        {"request_id": "a", "status": "completed", "finished_at": "2026-11-21T10:00:00+00:00"},
        {"request_id": "b", "status": "incomplete", "finished_at": "2026-11-21T11:00:00+00:00"},
        {"request_id": "c", "status": "started", "started_at": "2026-11-20T10:00:00+00:00", "finished_at": None},
        {"request_id": "d", "status": "completed", "finished_at": "2026-11-23T10:00:00+00:00"},
    ]
    assert [e["request_id"] for e in erasures_after(log, taken)] == ["b", "c", "d"]


def test_cli_restore_exits_with_an_error_when_the_erasure_log_cannot_be_read(
    store: LocalStore, capsys, monkeypatch
) -> None:
    from tiklive_assets.cli import main

    home = store.root.parent
    replay(store, str(home / "warehouse.duckdb"), DAYS[0], DAYS[2])
    assert main(["dr", "snapshot", "--home", str(home)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TIKLIVE_STATE_URL", f"sqlite:///{home / 'no-such-dir' / 'x' / 'state.sqlite'}")
    (home / "no-such-dir").write_text("a file where the state database's folder should be")
    assert main(["dr", "restore-warehouse", "--home", str(home)]) == 1
    captured = capsys.readouterr()
    assert "restored" in captured.out  # the restore itself still ran
    assert "the erasure log could not be read" in captured.err and "tiklive erase" in captured.err


def test_cli_help_says_how_a_date_is_read_what_drills_stage_and_what_prune_keeps(capsys, monkeypatch) -> None:
    from tiklive_assets.cli import main
    from tiklive_assets.cli.dr import STAGES, _parse_time
    from tiklive_assets.recovery.drills import SCENARIOS

    assert _parse_time("2026-11-28") == datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)
    assert {name: what for name, (_, what, _) in SCENARIOS.items()} == STAGES
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at hyphens too: one line per paragraph here
    helps = {}
    for action in ("restore-warehouse", "drill", "snapshot"):
        with pytest.raises(SystemExit):
            main(["dr", action, "--help"])
        helps[action] = " ".join(capsys.readouterr().out.split())
    assert "a bare date YYYY-MM-DD means the end of that day, 23:59:59 UTC" in helps["restore-warehouse"]
    assert "scratch copy" in helps["drill"] and "bundled sandbox" in helps["drill"]
    assert "never touches this deployment" in helps["drill"]
    assert all(" ".join(what.split()) in helps["drill"] for what in STAGES.values())
    assert "newest complete snapshot is never pruned" in helps["snapshot"] and "legal hold" in helps["snapshot"]


# -- the drills, on the real sandbox ------------------------------------------------------------------------------


@pytest.fixture
def drill_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The drills make their scratch data roots with ``tempfile.mkdtemp``: here under ``tmp_path`` (the suite's RAM
    filesystem, see conftest), where their pipeline runs' commits cost no disk flush. The drills are unchanged."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.usefixtures("drill_scratch")
@pytest.mark.parametrize("name", ["warehouse-lost", "state-lost", "pipeline-drift"])
def test_drill_passes(name: str) -> None:
    from tiklive_assets.recovery.drills import run_drill

    said: list[str] = []
    result = run_drill(name, say=said.append)
    assert result.passed, "\n".join(said)
    assert result.recovery_seconds is not None and said[-1].startswith(f"drill {name}: PASS, recovery took")


@pytest.mark.usefixtures("drill_scratch")
def test_key_revoked_drill_passes_through_the_cli(capsys) -> None:
    from tiklive_assets.cli import main

    code = main(["dr", "drill", "key-revoked"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "drill key-revoked: PASS, recovery took" in out and "request(s) refused, the first on" in out


@pytest.mark.usefixtures("drill_scratch")
def test_a_failing_drill_fails_the_quarterly_job_and_alerts(receiver, monkeypatch) -> None:  # noqa: F811
    from tiklive_assets.defs.recovery.jobs import recovery_drills
    from tiklive_assets.recovery import drills

    def broken(s, d) -> None:  # a staged failure: the drill's checks find the restored warehouse empty
        d.check(False, "the restored warehouse holds no rows")

    what, advice = drills.SCENARIOS["warehouse-lost"][1:]
    monkeypatch.setattr(drills, "SCENARIOS", {"warehouse-lost": (broken, what, advice)})
    result = recovery_drills.execute_in_process(raise_on_error=False)
    assert not result.success
    [alert] = receiver
    assert "recovery drill failed: warehouse-lost" in alert["text"]
    assert "the restored warehouse holds no rows" in alert["text"] and "tiklive replay" in alert["text"]
    [failure] = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    assert failure.user_failure_data is not None
    assert "1 of 1 recovery drills failed" in str(failure.user_failure_data.description)

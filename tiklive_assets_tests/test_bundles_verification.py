"""Restore verification, the nightly archive checks and the state rebuild on compacted days (raw objects packed into
bundles, one per endpoint and day, byte for byte)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tiklive_assets.sandbox import Corpus
from tiklive_assets.state import StateDB
from tiklive_assets.state.rebuild import rebuild_from_archive
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.bundles import bundle_key, read_index
from tiklive_assets.verification.integrity import empty_archive_days, first_archived_day
from tiklive_assets.verification.restore import candidate_days, sample_restores, verify_day
from tiklive_assets.warehouse import load_days, open_warehouse
from tiklive_assets_tests.support.archive import GONE, write_archive_day
from tiklive_assets_tests.support.bundles import compact_day

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=3), TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
CORPUS = Corpus(seed=7)


@pytest.fixture
def compacted(tmp_path: Path) -> tuple[LocalStore, str]:
    """Three archived days, the warehouse loaded from them, then the first two compacted."""
    store = LocalStore(tmp_path / "archive")
    for day in DAYS:
        write_archive_day(store, day, CORPUS)
    url = str(tmp_path / "warehouse.duckdb")
    with open_warehouse(url) as wh:
        load_days(store, wh, DAYS)
    for day in DAYS[:2]:
        compact_day(store, day)
    assert not [i for i in store.list(f"tiklive-raw/{DAYS[0]:%Y/%m/%d}/")]
    return store, url


def test_a_compacted_day_is_verified_member_by_member(compacted) -> None:
    store, url = compacted
    assert candidate_days(store, TODAY) == sorted(DAYS, reverse=True)  # compacted days are archived days
    assert first_archived_day(store) == DAYS[0] and empty_archive_days(store, TODAY) == []
    with open_warehouse(url) as wh:
        report = verify_day(store, wh, DAYS[0], seed=5)
    assert report.passed, (report.failing_tables, report.sample_failures, report.unreadable)
    assert report.objects > 0 and report.sampled == report.sampled_bundled > 0  # every sampled object was bundled
    sampled, bundled, failures = sample_restores(store, DAYS[2], seed=5)  # a loose day samples loose objects
    assert sampled > 0 and bundled == 0 and failures == []


def test_a_damaged_member_fails_with_its_key(compacted) -> None:
    store, url = compacted
    bundle = bundle_key("tiklive-raw", DAYS[0], "userinfo-by-id")
    (member, *_rest) = read_index(store, bundle)
    body = (store.root / member.key).read_bytes() if (store.root / member.key).exists() else None
    assert body is None  # packed: only the bundle has it
    path = store.root / bundle
    data = bytearray(path.read_bytes())
    from tiklive_assets.storage.bundles import read_member

    stored = read_member(store, bundle, member.key)
    at = bytes(data).index(stored) + len(stored) // 2  # the member's bytes are stored as they are
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    _sampled, _bundled, failures = sample_restores(store, DAYS[0], seed=1, size=10_000)
    assert [f.split(":")[0] for f in failures] == [member.key]
    with open_warehouse(url) as wh:
        report = verify_day(store, wh, DAYS[0], seed=1)
    assert not report.passed


def test_the_nightly_checks_pass_on_compacted_days(compacted, tmp_path, monkeypatch) -> None:
    from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
    from tiklive_assets.defs.resources import (
        ArchiveStoreResource,
        DataRootResource,
        TikLiveApiResource,
        TrackingConfigResource,
    )
    from tiklive_assets.defs.verification.checks import archive_days_non_empty, restore_verification
    from tiklive_assets.defs.warehouse.assets import warehouse_tables
    from tiklive_assets.defs.warehouse.resources import WarehouseResource

    store, url = compacted
    seed = next(s for s in range(50) if random.Random(s).choice(candidate_days(store, TODAY)) == DAYS[0])
    monkeypatch.setenv("TIKLIVE_RESTORE_SEED", str(seed))
    checks = [restore_verification, archive_days_non_empty]
    defs = dg.Definitions(
        assets=[*CAPTURE_ASSETS, warehouse_tables],
        asset_checks=checks,
        jobs=[dg.define_asset_job("bundled_day_checks", selection=dg.AssetSelection.checks(*checks))],
        resources={
            "archive_store": ArchiveStoreResource(local_root=str(store.root)),
            "data_root": DataRootResource(home=str(tmp_path)),
            "warehouse": WarehouseResource(url=url),
            "tiklive_api": TikLiveApiResource(api_key="unused: the checks call no API"),
            "tracking": TrackingConfigResource(),
        },
    )
    job = dg.define_asset_job(
        "checks", selection=dg.AssetSelection.checks(restore_verification, archive_days_non_empty)
    )
    result = (
        dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        .resolve_job_def("bundled_day_checks")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    restore = evaluations["restore_verification"]
    assert restore.passed and restore.metadata["day"].value == str(DAYS[0])
    assert restore.metadata["bundled_objects_sampled"].value > 0
    assert evaluations["archive_days_non_empty"].passed


def test_the_state_rebuild_reads_compacted_days(compacted, tmp_path: Path) -> None:
    store, _url = compacted
    loose = LocalStore(tmp_path / "loose")
    for day in DAYS:
        write_archive_day(loose, day, CORPUS)
    found = {}
    for name, archive in (("loose", loose), ("compacted", store)):
        with StateDB.from_url(f"sqlite:///{tmp_path / f'{name}.sqlite'}") as state:
            # up to the last compacted day: every answer read comes from bundles in the compacted archive
            report = rebuild_from_archive(state, archive, first_day=DAYS[0], today=DAYS[1])
            with state._tx() as tx:
                queue = tx.fetchall("SELECT aweme_id, state FROM archive_queue ORDER BY 1")
            found[name] = (report.by_state, report.user_ids, report.dead_letters, queue)
    assert found["compacted"] == found["loose"]
    by_state, user_ids, dead, queue = found["compacted"]
    assert by_state.get("dead") == 1 and dead == 1 and (GONE, "dead") in queue and user_ids == 2
    assert by_state.get("resolved", 0) + by_state.get("downloaded", 0) > 0


def test_rebuild_sees_each_bundled_day_once(compacted, tmp_path: Path) -> None:
    store, _url = compacted
    with StateDB.from_url(f"sqlite:///{tmp_path / 'once.sqlite'}") as state:
        first = rebuild_from_archive(state, store, first_day=DAYS[0] - timedelta(days=2), today=TODAY)
        again = rebuild_from_archive(state, store, first_day=DAYS[0], today=TODAY)
    assert first.added > 0 and again.added == 0 and again.moved_forward == 0

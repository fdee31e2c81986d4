"""The compact_archive asset and its daily schedule: a day past the hot period is compacted, a hot day is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.bundles import bundles_of_day, day_objects
from tiklive_assets_tests.support.archive import write_archive_day

TODAY = datetime.now(UTC).date()
OLD, HOT = TODAY - timedelta(days=12), TODAY - timedelta(days=3)


def test_the_asset_compacts_a_day_past_the_hot_period_and_leaves_hot_and_held_keys(tmp_path: Path) -> None:
    from tiklive_assets.compliance.legal_hold import LegalHolds
    from tiklive_assets.defs.compaction.assets import compact_archive
    from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource

    store = LocalStore(tmp_path / "archive")
    for day in (OLD, HOT):
        write_archive_day(store, day, Corpus(seed=5))
    home = tmp_path / "home"
    home.mkdir()
    config = home / "tiklive.yaml"
    config.write_text("accounts:\n  - bob\ncompaction:\n  hot_days: 10\n  provider: s3\n")
    data_root = DataRootResource(home=str(home))
    held = f"tiklive-raw/{OLD:%Y/%m/%d}/userid/"
    with data_root.state() as state:
        LegalHolds(state).place(held, "litigation", who="legal")
    before = {k: b for k, b, _ in day_objects(store, OLD)}
    loose = len(before)
    resources = {
        "archive_store": ArchiveStoreResource(local_root=str(store.root)),
        "data_root": data_root,
        "tracking": TrackingConfigResource(path=str(config)),
    }
    metadata = {}
    for day in (OLD, HOT):
        result = dg.materialize([compact_archive], partition_key=day.isoformat(), resources=resources)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata[day] = {k: v.value for k, v in event.materialization.metadata.items()}
    old = metadata[OLD]
    assert old["status"] == "compacted" and old["objects_before"] == loose
    assert old["held_left_loose"] == 2 and all(k.startswith(held) for k in old["held_keys"])  # type: ignore[union-attr]
    assert old["objects_packed"] == old["loose_deleted"] == loose - 2
    assert old["objects_after"] == 2 + len(bundles_of_day(store, OLD)) < loose
    assert old["warm_usd_month_after"] < old["warm_usd_month_before"]  # 128 KiB minimum per object in Standard-IA
    assert old["transitions_usd_after"] < old["transitions_usd_before"]
    assert {k: b for k, b, _ in day_objects(store, OLD)} == before
    assert sorted(i.key for i in store.list("tiklive-raw/")) == sorted(
        [k for k in before if k.startswith(held)] + [i.key for i in store.list(f"tiklive-raw/{HOT:%Y/%m/%d}/")]
    )
    assert str(metadata[HOT]["status"]).startswith("not compacted: still in the hot period")
    assert bundles_of_day(store, HOT) == []


def test_the_schedule_compacts_the_day_leaving_the_hot_period(tmp_path: Path) -> None:
    from tiklive_assets.defs.compaction.assets import daily_compaction_schedule
    from tiklive_assets.defs.resources import TrackingConfigResource

    config = tmp_path / "tiklive.yaml"
    config.write_text("accounts:\n  - bob\ncompaction:\n  hot_days: 45\n")
    when = datetime(2026, 7, 20, 2, 15, tzinfo=UTC)
    resources = {"tracking": TrackingConfigResource(path=str(config))}
    with dg.build_schedule_context(scheduled_execution_time=when, resources=resources) as context:
        request = daily_compaction_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-06-05" and request.run_key == "compact-archive-2026-06-05"
    config.write_text("accounts:\n  - bob\ncompaction:\n  enabled: false\n")
    with dg.build_schedule_context(scheduled_execution_time=when, resources=resources) as context:
        assert isinstance(daily_compaction_schedule(context), dg.SkipReason)
    early = datetime(2026, 5, 10, 2, 15, tzinfo=UTC)
    config.write_text("accounts:\n  - bob\n")
    with dg.build_schedule_context(scheduled_execution_time=early, resources=resources) as context:
        skipped = daily_compaction_schedule(context)
    assert isinstance(skipped, dg.SkipReason) and "before the first archive day" in str(skipped.skip_message)


def test_the_cli_compacts_days_past_the_hot_period(tmp_path: Path, monkeypatch, capsys) -> None:
    import pytest

    from tiklive_assets.cli import main

    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    store = LocalStore(tmp_path / "archive")
    for day in (OLD, HOT):
        write_archive_day(store, day, Corpus(seed=5))
    config = tmp_path / "tiklive.yaml"
    config.write_text("accounts:\n  - bob\ncompaction:\n  hot_days: 10\n  provider: r2\n")
    listing = sorted(i.key for i in store.list(""))
    assert main(["compact", "--day", str(HOT), "--config", str(config)]) == 2
    assert "still in the hot period" in capsys.readouterr().err
    assert main(["compact", "--older-than-hot", "--dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"tiklive-raw {OLD}: would pack" in out and str(HOT) not in out
    assert sorted(i.key for i in store.list("")) == listing  # a dry run writes and deletes nothing
    assert main(["compact", "--older-than-hot", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"tiklive-raw {OLD}: packed" in out and "r2 warm tier: $" in out
    assert not list(store.list(f"tiklive-raw/{OLD:%Y/%m/%d}/")) and bundles_of_day(store, OLD)
    assert list(store.list(f"tiklive-raw/{HOT:%Y/%m/%d}/"))  # the hot day stays loose
    assert main(["compact", "--day", str(OLD), "--config", str(config)]) == 0
    assert "packed 0 object(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["compact", "--config", str(config)])  # --day or --older-than-hot is required

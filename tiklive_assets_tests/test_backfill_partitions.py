"""A single-run backfill gives every partition its own figures, and a day the archive never captured says so.

Three days run as one run (the warehouse assets' ``BackfillPolicy.single_run()``); the middle day has no raw
object at all. Each asset must emit exactly one materialization per requested day, carrying that day's own
``dagster/row_count`` (checked against the warehouse, the Parquet footers and the CSV files), and the empty day
must read ``status: no capture`` with a warning in the run's log, not a green partition with the run's totals.
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow.parquet as pq
import pytest

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.warehouse import TABLES, open_warehouse
from tiklive_assets_tests.support.archive import write_archive_day

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=3), TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
CAPTURED, EMPTY = [DAYS[0], DAYS[2]], DAYS[1]


@pytest.fixture(scope="module")
def backfill(tmp_path_factory: pytest.TempPathFactory):
    from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
    from tiklive_assets.defs.warehouse.assets import WAREHOUSE_ASSETS
    from tiklive_assets.defs.warehouse.resources import WarehouseResource

    root = tmp_path_factory.mktemp("backfill")
    store = LocalStore(root / "archive")
    corpus = Corpus(seed=7)
    for day in CAPTURED:
        write_archive_day(store, day, corpus)
    home = root / "home"
    home.mkdir()
    config = home / "tiklive.yaml"
    config.write_text("accounts:\n  - alice123\n  - bob\n")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        WAREHOUSE_ASSETS,
        instance=instance,
        resources={
            "archive_store": ArchiveStoreResource(local_root=str(store.root)),
            "data_root": DataRootResource(home=str(home)),
            "warehouse": WarehouseResource(url=str(home / "warehouse.duckdb")),
            "tracking": TrackingConfigResource(path=str(config)),
        },
        tags={"dagster/asset_partition_range_start": str(DAYS[0]), "dagster/asset_partition_range_end": str(DAYS[-1])},
    )
    assert result.success
    events = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        events.setdefault((mat.asset_key, mat.partition), []).append({k: v.value for k, v in mat.metadata.items()})
    warnings = [
        r.user_message
        for r in instance.all_logs(result.run_id)
        if r.level >= 30 and "no capture" in (r.user_message or "")
    ]
    return home, events, warnings


def _keys(events, asset_key: dg.AssetKey) -> dict[str, dict]:
    return {p: found[0] for (k, p), found in events.items() if k == asset_key}


def test_one_event_per_partition_per_asset_exactly_the_requested_days(backfill) -> None:
    from tiklive_assets.defs.warehouse.assets import WAREHOUSE_ASSETS

    _, events, _ = backfill
    asset_keys = {key for asset in WAREHOUSE_ASSETS for key in asset.keys}
    assert {k for k, _ in events} == asset_keys
    assert Counter(p for _, p in events) == Counter({str(d): len(asset_keys) for d in DAYS})
    assert all(len(found) == 1 for found in events.values()), "a partition materialized twice in one run"


def test_warehouse_tables_carry_each_days_own_row_counts(backfill) -> None:
    from tiklive_assets.defs.warehouse.assets import TABLE_KEYS

    home, events, _ = backfill
    with open_warehouse(str(home / "warehouse.duckdb")) as wh:
        for spec in (t for t in TABLES if t.mode == "window"):
            days = _keys(events, TABLE_KEYS[spec.name])
            for day in DAYS:
                ((own,),) = wh.query(f"SELECT count(*) FROM {spec.name} WHERE dt = ?", [day])
                assert days[str(day)]["dagster/row_count"] == own, (spec.name, day)
    posts, snapshots = _keys(events, TABLE_KEYS["posts"]), _keys(events, TABLE_KEYS["user_snapshots"])
    assert posts[str(DAYS[0])]["dagster/row_count"] > 0 and posts[str(DAYS[2])]["dagster/row_count"] > 0
    assert posts[str(EMPTY)]["dagster/row_count"] == 0
    assert posts[str(DAYS[0])]["status"] == "loaded"
    assert posts[str(EMPTY)]["status"] == "no capture" and posts[str(EMPTY)]["archive_objects"] == 0
    assert posts[str(DAYS[2])]["archive_objects"] > 0
    assert snapshots[str(DAYS[2])]["dagster/row_count"] > 0
    assert snapshots[str(EMPTY)]["status"] == "no capture"


def test_exports_and_csvs_carry_each_days_own_rows(backfill) -> None:
    home, events, _ = backfill
    parquet = _keys(events, dg.AssetKey("parquet_exports"))
    for day in DAYS:
        files = (home / "exports").glob(f"*/dt={day}/part-0.parquet")
        assert parquet[str(day)]["dagster/row_count"] == sum(pq.read_metadata(f).num_rows for f in files), day
    assert parquet[str(EMPTY)]["status"] == "no capture"
    assert parquet[str(EMPTY)]["dagster/row_count"] == 0 < parquet[str(DAYS[0])]["dagster/row_count"]
    csvs = _keys(events, dg.AssetKey("account_csvs"))
    for day in DAYS:
        lines = sum(len(list(csv.reader(p.open()))) - 1 for p in (home / "exports" / "csv" / f"dt={day}").glob("*.csv"))
        assert csvs[str(day)]["dagster/row_count"] == lines, day
    assert csvs[str(EMPTY)]["status"].startswith("no capture")
    assert csvs[str(DAYS[0])]["status"] == "written"


def test_marts_and_the_log_say_no_capture(backfill) -> None:
    from tiklive_assets.defs.warehouse.assets import MART_KEYS

    _, events, warnings = backfill
    summary = _keys(events, MART_KEYS["daily_archive_summary"])
    assert [summary[str(d)]["status"] for d in DAYS] == ["built", "no capture", "built"]
    assert summary[str(DAYS[0])]["rows_as_of"] == str(DAYS[0])
    assert summary[str(DAYS[0])]["dagster/row_count"] < summary[str(DAYS[2])]["dagster/row_count"]
    # one warning per asset for the empty day, naming it; none for the captured days
    assert len(warnings) == 4 and all(str(EMPTY) in w for w in warnings)
    assert not any(str(d) in w for w in warnings for d in CAPTURED)

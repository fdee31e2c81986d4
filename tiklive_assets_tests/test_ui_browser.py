"""A warehouse backfill launched by clicking in the Dagster UI runs once and gives every day its own figures.

The real deployment: ``dagster-webserver`` and ``dagster-daemon`` over this project's code location, on an instance
of their own, with a raw archive of three days whose middle day was never captured. Headless Chromium opens the
posts table's asset page, picks its lineage downstream (the Parquet exports), clicks "Materialize all", types the
three-day range into the launch dialog and clicks "Launch backfill". The daemon must run the whole backfill as ONE
run (the warehouse assets' single-run backfill policy); each day's materialization must carry that day's own
``dagster/row_count`` (checked against the DuckDB warehouse and the Parquet footers), the empty day must say
``no capture``, and the asset's partitions view must show a day's row count.

Run alone: ``.venv/bin/pytest -q tiklive_assets_tests/test_ui_browser.py`` (about a minute and a half: the servers
start, then the run starts each step as a process; the daemon looks at backfills every 2 s here, not every 30).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from selenium.webdriver.common.keys import Keys

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.warehouse import TABLES, open_warehouse
from tiklive_assets_tests.support.archive import write_archive_day
from tiklive_assets_tests.support.browser import (
    DagsterUI,
    Deployment,
    button,
    chromium,
    dagster_deployment,
    exact_text,
    metadata_value,
    placeholder,
    require_chromium,
    tab,
    wait_for,
)

POSTS = dg.AssetKey("warehouse_posts")  # the asset page the backfill is launched from
EXPORTS = dg.AssetKey("parquet_exports")  # its downstream, in the same backfill
TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=3), TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
CAPTURED, EMPTY = [DAYS[0], DAYS[2]], DAYS[1]
# the daemon's next look (2 s here), the run (~35 s on 2 idle cores, 100 s when other suites share them), 2 s again
BACKFILL_TIMEOUT = 240.0
pytestmark = pytest.mark.timeout(480)  # the first test's budget includes starting the servers and the backfill
RUNNING = {"REQUESTED", "CANCELING", "FAILING"}


@dataclass
class Backfill:
    deployment: Deployment
    instance: dg.DagsterInstance  # the deployment's, opened here
    home: Path  # TIKLIVE_HOME
    backfill_id: str
    status: str
    runs: list[dg.DagsterRun]

    def day_metadata(self, key: dg.AssetKey) -> dict[str, list[dict]]:
        """Every materialization of ``key`` by partition: its run and its metadata values."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[str(d) for d in DAYS]), limit=100
        ).records
        found: dict[str, list[dict]] = {}
        for record in records:
            mat = record.asset_materialization
            found.setdefault(mat.partition, []).append(
                {"run_id": record.run_id, **{k: v.value for k, v in mat.metadata.items()}}
            )
        return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    require_chromium()
    root = tmp_path_factory.mktemp("ui_browser")
    home = root / "home"
    store = LocalStore(home / "archive")  # where the archive store looks with no bucket set: TIKLIVE_HOME/archive
    corpus = Corpus(seed=7)
    for day in CAPTURED:
        write_archive_day(store, day, corpus)
    config = home / "tiklive.yaml"
    config.write_text("accounts:\n  - alice123\n  - bob\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
    env.update(
        {
            "TIKLIVE_HOME": str(home),
            "TIKLIVE_CONFIG": str(config),
            "TIKLIVE_FIRST_DAY": str(TODAY - timedelta(days=5)),  # six partitions in the dialog, not two hundred
            "TIKLIVE_API_KEY": "no-capture-runs-here",
            "TIKLIVE_BASE_URL": "http://127.0.0.1:9",  # should anything try the API, it meets a closed port
        }
    )
    with dagster_deployment(root, env) as running:
        yield running, home


@pytest.fixture(scope="module")
def ui(deployment, tmp_path_factory: pytest.TempPathFactory):
    running, _ = deployment
    with chromium() as driver:
        yield DagsterUI(driver, running, tmp_path_factory.mktemp("ui_evidence"))


def launch_backfill(ui: DagsterUI, key: dg.AssetKey, first: str, last: str) -> str:
    """From the asset page: Lineage, Downstream, "Materialize all", the confirmations, the range, "Launch backfill".
    Returns the id the UI's toast names."""
    with ui.evidence("open the asset page and click Materialize all"):
        ui.open("/assets/" + "/".join(key.path))
        ui.click(tab("Lineage"), "the Lineage tab")
        ui.click(button("Downstream"), "the Downstream scope")
        ui.click(button("Materialize all", prefix=True), "Materialize all")
    with ui.evidence("confirm the launch"):
        # Dialogs that may come first: siblings of a multi-asset that cannot be split, upstream never materialized
        for _ in range(4):
            found = ui.element(
                ("xpath", f"{button('Confirm')[1]} | {placeholder('No matching partitions')[1]}"),
                "a confirmation or the launch dialog's partition range",
            )
            if found.tag_name == "input":
                break
            ui.confirm(found, "the confirmation")
        else:
            raise AssertionError("the launch dialog never opened")
    with ui.evidence("choose the partitions and launch"):
        found.send_keys(f"[{first}...{last}]", Keys.TAB)  # the range applies when the field loses focus
        ui.element(exact_text(f"{len(DAYS)} partitions"), f"the dialog counting {len(DAYS)} partitions")
        ui.click(button("Launch backfill"), "Launch backfill")
        toast = ui.element(("xpath", "//*[starts-with(normalize-space(), 'Created backfill')]"), "the toast")
        return re.match(r"Created backfill (\w+)", toast.text.strip()).group(1)


@pytest.fixture(scope="module")
def backfill(deployment, ui: DagsterUI) -> Iterator[Backfill]:
    running, home = deployment
    backfill_id = launch_backfill(ui, POSTS, str(DAYS[0]), str(DAYS[-1]))
    seen: list[str] = []
    with running.instance() as instance:

        def finished() -> str | None:
            found = instance.get_backfill(backfill_id)
            seen[:] = [found.status.value] if found else ["no such backfill"]
            return found and found.status.value not in RUNNING and found.status.value

        status = wait_for(
            f"backfill {backfill_id} to finish",
            finished,
            BACKFILL_TIMEOUT,
            interval=1.0,
            explain=lambda: f"last status: {seen}\n{running.log_tail()}",
        )
        runs = list(instance.get_runs(filters=dg.RunsFilter.for_backfill(backfill_id)))
        yield Backfill(running, instance, home, backfill_id, status, runs)


def test_the_backfill_launched_from_the_asset_page_runs_once(backfill: Backfill) -> None:
    assert [b.backfill_id for b in backfill.instance.get_backfills()] == [backfill.backfill_id]
    assert backfill.status == "COMPLETED_SUCCESS", backfill.deployment.log_tail()
    assert len(backfill.runs) == 1, f"{len(backfill.runs)} runs for a single-run backfill"
    (run,) = backfill.runs
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == str(DAYS[0])
    assert run.tags["dagster/asset_partition_range_end"] == str(DAYS[-1])
    assert {POSTS, EXPORTS} <= set(run.asset_selection or ())


def test_each_day_carries_its_own_row_counts(backfill: Backfill) -> None:
    from tiklive_assets.defs.warehouse.assets import TABLE_KEYS

    (run,) = backfill.runs
    posts, exports = backfill.day_metadata(POSTS), backfill.day_metadata(EXPORTS)
    assert sorted(posts) == sorted(exports) == [str(d) for d in DAYS]
    assert all(
        len(events) == 1 and events[0]["run_id"] == run.run_id for events in [*posts.values(), *exports.values()]
    ), "a day materialized twice, or by another run"
    files = backfill.home / "exports"
    for day in DAYS:
        (post,), (export,) = posts[str(day)], exports[str(day)]
        day_posts = pq.read_metadata(files / "posts" / f"dt={day}" / "part-0.parquet").num_rows
        assert post["dagster/row_count"] == day_posts, day
        day_rows = sum(pq.read_metadata(f).num_rows for f in files.glob(f"*/dt={day}/part-0.parquet"))
        assert export["dagster/row_count"] == day_rows, day
    with open_warehouse(str(backfill.home / "warehouse.duckdb")) as wh:  # tables holding each day's own rows
        for spec in (t for t in TABLES if t.mode == "window"):
            days = backfill.day_metadata(TABLE_KEYS[spec.name])
            for day in DAYS:
                ((own,),) = wh.query(f"SELECT count(*) FROM {spec.name} WHERE dt = ?", [day])
                assert days[str(day)][0]["dagster/row_count"] == own, (spec.name, day)
    for day in CAPTURED:
        assert posts[str(day)][0]["status"] == "loaded" and posts[str(day)][0]["dagster/row_count"] > 0
        assert exports[str(day)][0]["status"] == "exported" and exports[str(day)][0]["dagster/row_count"] > 0
    for found in (posts[str(EMPTY)][0], exports[str(EMPTY)][0]):
        assert found["status"] == "no capture" and found["dagster/row_count"] == 0 and found["archive_objects"] == 0


def test_the_partitions_view_shows_each_days_own_row_count(backfill: Backfill, ui: DagsterUI) -> None:
    day = str(CAPTURED[0])
    rows = backfill.day_metadata(POSTS)[day][0]["dagster/row_count"]
    with ui.evidence("read a day's row count in the partitions view"):
        ui.open("/assets/" + "/".join(POSTS.path))
        ui.click(tab("Partitions"), "the Partitions tab")
        ui.click(exact_text(day), f"partition {day}")
        ui.text_of(metadata_value("status"), "loaded", f"the status of {day}")
        ui.text_of(metadata_value("dagster/row_count"), str(rows), f"the row count of {day}")
        ui.click(exact_text(str(EMPTY)), f"partition {EMPTY}")
        ui.text_of(metadata_value("status"), "no capture", f"the status of {EMPTY}")
        ui.text_of(metadata_value("dagster/row_count"), "0", f"the row count of {EMPTY}")

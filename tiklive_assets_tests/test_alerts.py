"""Alerts reach a real local HTTP receiver as Slack-compatible JSON: failed runs and failed checks, on the in-memory
instance and on both shipped instances (run-sharded SQLite, Postgres)."""

import json
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from tiklive_assets.alerts import ALERT_WEBHOOK_URL, notify
from tiklive_assets.defs.alerts.sensors import failed_check_alert, run_failure_alert

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def receiver(monkeypatch):
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(ALERT_WEBHOOK_URL, f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()


def test_notify_posts_slack_json(receiver):
    assert notify("restore verification failed", ["day 2026-11-01", "posts: 10 != 12"]) == "webhook"
    assert receiver == [{"text": ":rotating_light: *restore verification failed*\n• day 2026-11-01\n• posts: 10 != 12"}]


def test_notify_falls_back_to_the_log(monkeypatch, caplog):
    monkeypatch.delenv(ALERT_WEBHOOK_URL, raising=False)
    assert notify("something broke") == "log"
    assert "something broke" in caplog.text
    # an unreachable webhook is logged, never raised
    assert notify("still broke", webhook_url="http://127.0.0.1:9/") == "log"


@dg.asset
def always_fails():
    raise RuntimeError("the sandbox exploded")


@dg.asset
def checked():
    return 1


@dg.asset_check(asset=checked)
def checked_is_two() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"expected": 2, "got": 1})


def test_failed_run_alerts(receiver):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([always_fails], instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()
    run_failure_alert(context)
    assert len(receiver) == 1
    assert "tiklive run failed" in receiver[0]["text"] and result.run_id in receiver[0]["text"]


def test_failed_check_alerts_once(receiver):
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance) as context:  # turned on: starts from now, no history storm
        assert "from now on" in failed_check_alert(context).skip_message
        start = context.cursor
    dg.materialize([checked, checked_is_two], instance=instance)
    with dg.build_sensor_context(instance=instance, cursor=start) as context:
        first = failed_check_alert(context)
        assert "1 failed" in first.skip_message
        cursor = context.cursor
    assert len(receiver) == 1 and "checked_is_two" in receiver[0]["text"] and "got: 1" in receiver[0]["text"]
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        failed_check_alert(context)
    assert len(receiver) == 1  # the cursor moved past it: no second alert


@pytest.fixture
def dagster_postgres_db(postgres_url):
    """A database of its own on the local Postgres for Dagster's run, event-log and schedule storage."""
    import psycopg

    from tiklive_assets_tests.conftest import POSTGRES_URL

    name = f"dagster_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def shipped_instance(request, tmp_path, monkeypatch):
    """The instance the project ships: dagster.yaml (run-sharded SQLite under data/dagster, relative to the working
    directory) or deploy/dagster.production.yaml (Postgres), copied into a DAGSTER_HOME of its own."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    if request.param == "sqlite":
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        monkeypatch.chdir(tmp_path)
    else:
        url = request.getfixturevalue("dagster_postgres_db")
        shutil.copy(REPO / "deploy" / "dagster.production.yaml", home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_PG_URL", url.replace("postgresql://", "postgresql+psycopg2://", 1))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield request.param, instance
    finally:
        instance.dispose()


DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01")


@dg.asset(partitions_def=DAYS, key="warehouse_posts")
def posts_table():
    return 1


@dg.asset_check(asset=posts_table, description="planted to fail")
def posts_restore_matches() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        metadata={"failing_tables": ["user_snapshots"]},
        description="2026-11-03 replayed 12 user_snapshots rows, the warehouse holds 0",
    )


@dg.asset_check(asset=posts_table)
def posts_fine() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def tick(instance, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = failed_check_alert(context)
        return result.skip_message, context.cursor


def test_failed_check_reaches_the_webhook_within_one_tick_on_every_shipped_storage(receiver, shipped_instance):
    kind, instance = shipped_instance
    defs = dg.Definitions(
        assets=[posts_table],
        asset_checks=[posts_restore_matches, posts_fine],
        jobs=[dg.define_asset_job("daily_warehouse", selection=dg.AssetSelection.assets(posts_table))],
    )
    dg.materialize([posts_table], partition_key="2026-11-02", instance=instance)  # history before the sensor is on
    message, cursor = tick(instance, None)
    assert "from now on" in message and receiver == []
    message, cursor = tick(instance, cursor)  # nothing new: no alert, no error
    assert "0 failed" in message and receiver == []

    job = defs.resolve_job_def("daily_warehouse")
    job.execute_in_process(instance=instance, partition_key="2026-11-03", raise_on_error=False)
    message, cursor = tick(instance, cursor)
    assert "1 failed" in message, (kind, message)
    [alert] = receiver
    text = alert["text"]
    assert "posts_restore_matches on warehouse_posts" in text
    assert "job daily_warehouse, partition 2026-11-03" in text
    assert "the warehouse holds 0" in text and "user_snapshots" in text
    message, cursor = tick(instance, cursor)
    assert len(receiver) == 1  # the cursor moved past it: never alerted twice

    # an ad-hoc materialization (the CLI, the UI's Materialize button) is named by its assets, not Dagster's job name
    dg.materialize(
        [posts_table, posts_restore_matches, posts_fine],
        partition_key="2026-11-04",
        instance=instance,
        raise_on_error=False,
    )
    message, cursor = tick(instance, cursor)
    assert len(receiver) == 2, message
    text = receiver[1]["text"]
    assert "materialization of warehouse_posts, partition 2026-11-04" in text
    assert "__" not in text
    tick(instance, cursor)
    assert len(receiver) == 2


def test_a_failed_ad_hoc_run_is_named_by_its_assets(receiver):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([always_fails], instance=instance, raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()
    run_failure_alert(context)
    [alert] = receiver
    assert "materialization of always_fails" in alert["text"] and "__" not in alert["text"]

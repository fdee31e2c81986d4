"""Alerts reach a real local HTTP receiver as Slack-compatible JSON: failed runs and failed checks."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from tiklive_assets.alerts import ALERT_WEBHOOK_URL, notify
from tiklive_assets.defs.alerts.sensors import failed_check_alert, run_failure_alert


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
        sensor_name="run_failure_alert", dagster_instance=instance, dagster_run=result.dagster_run, dagster_event=failure,
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

"""Sensor ticks with build_sensor_context and a carried cursor, against the sandbox over real HTTP."""

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from tiklive_assets.defs.capture.sensors import ACCOUNTS_PER_TICK, new_posts_sensor, pending_queue_sensor
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
)
from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer
from tiklive_assets.state import StateDB


def _resources(tmp_path: Path, base_url: str, handles: list[str]) -> dict:
    config = tmp_path / "tiklive.yaml"
    config.write_text(json.dumps({"plan": {"requests_per_minute": 100000}, "accounts": handles}))
    return {
        "tiklive_api": TikLiveApiResource(api_key=DEFAULT_API_KEY, base_url=base_url, ratelimit_url="memory://"),
        "archive_store": ArchiveStoreResource(local_root=str(tmp_path / "archive")),
        "data_root": DataRootResource(home=str(tmp_path)),
        "tracking": TrackingConfigResource(path=str(config)),
    }


def _tick(sensor, resources, cursor=None):
    with dg.build_sensor_context(
        cursor=cursor, resources=resources, instance=dg.DagsterInstance.ephemeral()
    ) as context:
        return sensor(context)


def test_new_post_is_requested_within_one_tick_and_reevaluation_is_idempotent(sandbox, tmp_path):
    resources = _resources(tmp_path, sandbox.base_url, ["alice123", "bob"])
    first = _tick(new_posts_sensor, resources)
    assert not first.run_requests and "no new posts" in first.skip_reason.skip_message
    baseline = first.cursor

    new_id = sandbox.publish_video("bob")
    second = _tick(new_posts_sensor, resources, baseline)
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    assert request.tags["tiklive/new_ids"] == "1"
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    assert state.state_of(new_id) == "pending"

    # Re-evaluating the same tick (same cursor) asks for the same run key: Dagster launches it once.
    again = _tick(new_posts_sensor, resources, baseline)
    assert [r.run_key for r in again.run_requests] == [request.run_key]
    # With the advanced cursor the same post is not new any more.
    after = _tick(new_posts_sensor, resources, second.cursor)
    assert not after.run_requests
    # Every poll was archived before it was parsed.
    assert list((tmp_path / "archive" / "tiklive-raw").rglob("user-posts/*-cursor0.json.gz"))


def test_work_per_tick_is_bounded_and_rotates(tmp_path):
    with SandboxServer(SandboxConfig(accounts=ACCOUNTS_PER_TICK + 5)) as sandbox:
        handles = [account.handle for account in sandbox.corpus.accounts]
        resources = _resources(tmp_path, sandbox.base_url, handles)
        first = _tick(new_posts_sensor, resources)
        assert sandbox.stats()["by_endpoint"]["/user-posts/"] == ACCOUNTS_PER_TICK
        _tick(new_posts_sensor, resources, first.cursor)
        assert sandbox.stats()["by_endpoint"]["/user-posts/"] == len(handles) + ACCOUNTS_PER_TICK - 5
        assert json.loads(first.cursor)["next"] == ACCOUNTS_PER_TICK


def test_a_failing_tick_loses_no_post(sandbox, tmp_path, monkeypatch):
    resources = _resources(tmp_path, sandbox.base_url, ["alice123", "bob"])
    first = _tick(new_posts_sensor, resources)
    new_id = sandbox.publish_video("bob")

    def locked(self, rows):
        raise RuntimeError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(StateDB, "enqueue", locked)
        failed = _tick(new_posts_sensor, resources, first.cursor)
    assert not failed.run_requests and "tick failed" in failed.skip_reason.skip_message
    # the cursor came back, and bob's newest-seen mark did not move past the post that was never queued
    assert json.loads(failed.cursor)["newest"]["bob"] == json.loads(first.cursor)["newest"]["bob"]
    retried = _tick(new_posts_sensor, resources, failed.cursor)
    assert len(retried.run_requests) == 1
    assert StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}").state_of(new_id) == "pending"


def test_api_errors_in_a_tick_are_reported_and_the_rotation_moves_on(sandbox, tmp_path):
    resources = _resources(tmp_path, sandbox.base_url, ["alice123", "bob"])
    first = _tick(new_posts_sensor, resources)
    sandbox.fail_next(100, status=500)
    result = _tick(new_posts_sensor, resources, first.cursor)
    assert not result.run_requests and "error" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["newest"] == json.loads(first.cursor)["newest"]


def test_queue_sensor_requests_one_run_per_waiting_set(tmp_path):
    resources = {"data_root": DataRootResource(home=str(tmp_path))}
    empty = _tick(pending_queue_sensor, resources)
    assert not empty.run_requests and "empty" in empty.skip_reason.skip_message
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    state.enqueue([("7300000000000000001", "test", "alice123"), ("7300000000000000002", "test", "bob")])
    one = _tick(pending_queue_sensor, resources)
    two = _tick(pending_queue_sensor, resources)
    assert len(one.run_requests) == 1 and one.run_requests[0].run_key == two.run_requests[0].run_key
    state.enqueue([("7300000000000000003", "test", "bob")])
    three = _tick(pending_queue_sensor, resources)
    assert three.run_requests[0].run_key != one.run_requests[0].run_key
    # a failed run leaves the ids pending with more attempts: the retry gets a new key, it is not dropped
    state.claim_pending(3, lease=timedelta(0))
    retry = _tick(pending_queue_sensor, resources)
    assert retry.run_requests[0].run_key != three.run_requests[0].run_key


def test_queue_sensor_waits_while_a_capture_run_is_in_flight(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    state.enqueue([("7300000000000000001", "test", "alice123")])
    instance.add_run(
        dg.DagsterRun(job_name="capture_new_videos", run_id="in-flight", status=dg.DagsterRunStatus.STARTED)
    )
    with dg.build_sensor_context(
        instance=instance, resources={"data_root": DataRootResource(home=str(tmp_path))}
    ) as ctx:
        result = pending_queue_sensor(ctx)
    assert not result.run_requests and "already resolving" in result.skip_reason.skip_message


@pytest.mark.parametrize("name", ["new_posts_sensor", "pending_queue_sensor"])
def test_sensors_are_in_the_code_location(name):
    from tiklive_assets.definitions import defs

    assert name in {sensor.name for sensor in defs().sensors}

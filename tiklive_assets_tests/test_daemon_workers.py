"""The daily capture's workers, launched by `dagster-daemon` on a Postgres Dagster instance, split one day.

The tracking config asks for ``capture.workers: 3``. The daily capture schedule is evaluated in the code location
(loaded from workspace.yaml, in a code server of its own, as the daemon loads it) and its RunRequests are submitted
to the instance exactly as the scheduler daemon submits a tick's runs: they land QUEUED, and the daemon's queued
run coordinator launches them, as far as the ``tiklive_api`` pool limit (3, set with ``dagster instance concurrency
set``) and the run queue allow. The runs share one Postgres state database, one Redis rate window and one S3
bucket (moto). Asserted from the sandbox's own request log, against one run of the same day on its own:

* no /post-detail/ id resolved twice, no listing, follow or comment page asked twice;
* together exactly the requests one run sends; the plan's rate (scaled down to 10 in any 2 s) held in every
  window, with no 429;
* every video one run captures is captured (its MP4 in the bucket), nothing left in the queue;
* every run did part of the work (credits spent and objects written, from its own materialization metadata);
* the queued run coordinator dequeued every run, and at least two runs were STARTED at once (the run storage's
  start and end times).

The sandbox holds back its answers until the three runs' first capture steps have registered as claim owners, so
the runs really overlap whatever their start-up times on a busy machine. The daemon's other schedules and sensors
are stopped first: a tick of theirs during the test would send requests of its own. Mandatory when ``CI=true``:
without Postgres or Redis on 127.0.0.1 the test fails there, and is skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
import yaml

from tiklive_assets.sandbox import DEFAULT_API_KEY
from tiklive_assets.state import StateDB
from tiklive_assets_tests.support.logged_sandbox import LoggedSandbox, logged_sandbox

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKERS = 3
LIMIT, WINDOW = 10, 2.0  # the plan, scaled down: 10 requests in any 2 s (300/min)
BASE_CLOCK = 1780056000.0  # 2026-05-29T12:00:00Z: the sandbox's clock starts here and moves at real speed
HANDLES = ["alice123", "bob", "cristiano", "dana_dances", "eli.cooks"]
RUNS_DEADLINE_SECONDS = 420.0  # from submission to every run finished (generous: a shared, loaded machine)
GATE_SECONDS = 25.0  # answers held at most this long: inside the client's 30 s read timeout, so nothing is resent
# Each run executes its steps in its own run process, one after the other (the in-process executor), instead of
# one fresh interpreter per step (the default multiprocess executor: 3-20 s of imports per step on a loaded 2-core
# machine, 9 steps a run): process start-up scaled down, as clocks are. The runs still overlap each other, and every
# capture step still takes a `tiklive_api` pool slot first (the in-process executor claims them too).
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
LOCATION, REPOSITORY, SCHEDULE = "tiklive_assets", "__repository__", "daily_capture_schedule"
pytestmark = [pytest.mark.timeout(720), pytest.mark.alone]


def _config(plan: dict[str, Any], workers: int) -> dict[str, Any]:
    """Five accounts (their own posts only: no two sources list the same video, so which run walks first cannot
    change what is queued), each with its profile, followers, following and one video's comments."""
    return {
        "plan": plan,
        "limits": {"max_pages": 1, "max_videos_per_day": 5},
        "capture": {
            "download_concurrency": 2,
            "api_concurrency": 2,
            "claim_heartbeat_seconds": 5,
            "workers": workers,
        },
        "accounts": [
            {
                "handle": handle,
                "follow_max_pages": 1,
                "comments": {"recent_videos": 1, "max_pages": 1, "reply_depth": 0},
            }
            for handle in HANDLES
        ],
    }


# ------------------------------------------------------------------------------------------------
# services: a fresh database for Dagster's storage, a Redis database number of the test's own
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def dagster_database(postgres_url: str) -> Iterator[str]:
    """A database of its own on the local Postgres for Dagster's run, event-log and schedule storage, dropped
    afterwards (``postgres_url`` makes Postgres mandatory in CI and skips without it elsewhere)."""
    import psycopg

    from tiklive_assets_tests.conftest import POSTGRES_URL

    name = f"dagster_workers_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')  # throwaway: no wait for the WAL
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_window(redis_url: str) -> Iterator[str]:
    """An empty Redis database number, taken with a marker key (so no other test picks it meanwhile) and flushed
    afterwards: the runs' one shared rate window, which no other test's requests can fill."""
    from redis import Redis

    base = redis_url.rsplit("/", 1)[0]
    for number in range(14, 0, -1):
        client = Redis.from_url(f"{base}/{number}")
        if client.dbsize() == 0 and client.set("tiklive-test-daemon-workers", "1", nx=True):
            try:
                yield f"{base}/{number}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("no empty Redis database number (1-14) for the shared rate window")


# ------------------------------------------------------------------------------------------------
# the sandbox: its own log of every request, and a gate that holds answers until the runs are all in
# ------------------------------------------------------------------------------------------------
def _sandbox(**config: Any) -> LoggedSandbox:
    return logged_sandbox(BASE_CLOCK, GATE_SECONDS, **config)


def _requests(sb: LoggedSandbox) -> Counter:
    """Every API request as (path, query): a request is a credit, and its query names the page or the id."""
    return Counter((path, query) for path, query, _ in sb.log)


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _reference(tmp_path: Path) -> tuple[Counter, set[str]]:
    """One run of the same day alone (its own sandbox, sqlite state, local archive): what it asks, what it keeps."""
    from tiklive_assets.defs.resources import ArchiveStoreResource
    from tiklive_assets_tests.support.capture import Rig

    home = tmp_path / "reference"
    with _sandbox() as sb:
        rig = Rig(sb, home, ArchiveStoreResource(local_root=str(home / "archive")))
        rig.config = _config({"requests_per_minute": 100_000}, workers=1)
        assert rig.run().success
        with StateDB.from_url(f"sqlite:///{home / 'state.sqlite'}") as state:
            downloaded = _ids_in(state, "downloaded")
    return _requests(sb), downloaded


def _ids_in(state: StateDB, queue_state: str) -> set[str]:
    with state._tx() as tx:
        return {r[0] for r in tx.fetchall("SELECT aweme_id FROM archive_queue WHERE state = ?", [queue_state])}


def _open_gate_when_all_registered(sb: LoggedSandbox, state_url: str, runs: int) -> None:
    """Hold every answer until claim owners of ``runs`` processes are registered (a run executes its steps in its
    own process, and its first capture step registers an owner before its first request, which it cannot finish
    while its answers are held), then let them all go. The hold is counted from the first owner, whose request is
    the first held: at most GATE_SECONDS for any request."""
    first: float | None = None
    give_up = time.monotonic() + RUNS_DEADLINE_SECONDS
    try:
        with StateDB.from_url(state_url) as state:
            while time.monotonic() < give_up and (first is None or time.monotonic() < first + GATE_SECONDS):
                try:
                    with state._tx() as tx:
                        seen = tx.fetchone("SELECT COUNT(DISTINCT pid) FROM claim_owners")[0]
                except Exception:  # noqa: BLE001 - not migrated yet: the runs' preflight creates the tables
                    seen = 0
                if seen >= runs:
                    return
                if seen and first is None:
                    first = time.monotonic()
                time.sleep(0.1)
    finally:
        sb.gate.set()


# ------------------------------------------------------------------------------------------------
# the instance, the code location, the daemon
# ------------------------------------------------------------------------------------------------
def _instance_yaml(home: Path) -> None:
    """The production instance as deployed (Postgres storage, queued runs, pool and run limits, run retries for
    crashes), its run queue polled every second instead of every five: a clock scaled down, the same launches."""
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.production.yaml").read_text())
    instance.setdefault("run_queue", {})["dequeue_interval_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))


def _stop_instigators(instance: dg.DagsterInstance, repository: Any) -> None:
    """Every schedule and sensor stopped before the daemon starts: the capture runs here are the test's own
    submissions, and a tick of another schedule (an hourly refresh, say) would send requests of its own."""
    for schedule in repository.get_schedules():
        instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
    for sensor in repository.get_sensors():
        instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)


def _submit_tick(workspace: Any, instance: dg.DagsterInstance) -> list[str]:
    """Evaluate the daily capture schedule now, in the code server, and submit its RunRequests the way the scheduler
    daemon submits a tick's (``_submit_run_request``: the run created from the schedule's job, then
    ``instance.submit_run``, which queues it for the daemon's run coordinator)."""
    from dagster._core.definitions.timestamp import TimestampWithTimezone
    from dagster._scheduler.scheduler import _submit_run_request

    location = workspace.create_request_context().get_code_location(LOCATION)
    repository = location.get_repository(REPOSITORY)
    schedule = repository.get_schedule(SCHEDULE)
    now = datetime.now(UTC)
    data = location.get_schedule_execution_data(
        instance=instance,
        repository_handle=repository.handle,
        schedule_name=SCHEDULE,
        scheduled_execution_time=TimestampWithTimezone(now.timestamp(), "UTC"),
        log_key=None,
    )
    assert data.run_requests and len(data.run_requests) == WORKERS, (data.run_requests, data.skip_message)
    run_ids = []
    for request in data.run_requests:
        assert not request.run_config, request.run_config  # the schedule sets none: only the executor below
        request = request.with_replaced_attrs(run_config=IN_PROCESS)
        result = _submit_run_request(request, workspace, schedule, now, logging.getLogger(__name__), None)
        assert result.error_info is None, result.error_info
        assert result.submitted_run is not None, f"{request.run_key}: an earlier run already has this key"
        run_ids.append(result.submitted_run.run_id)
    return run_ids


@contextlib.contextmanager
def _daemon(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its code server and run workers stop with it
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group (a code server after its parent)


def _event_logs(instance: dg.DagsterInstance, run_ids: list[str], tail: int = 40) -> str:
    out = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        out.append(f"--- run {run_id} ({run.tags.get('tiklive/worker') if run else '?'}): {run.status if run else '?'}")
        for entry in instance.all_logs(run_id)[-tail:]:
            kind = entry.dagster_event_type.value if entry.dagster_event_type else "LOG"
            out.append(f"  {kind} {entry.step_key or ''} {entry.message or ''}"[:400])
    return "\n".join(out)


def _wait_for_runs(instance: dg.DagsterInstance, run_ids: list[str], daemon_log: Path) -> list[Any]:
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + RUNS_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(r.dagster_run.status in finished for r in records):
            break
        time.sleep(0.5)
    records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
    statuses = {r.dagster_run.run_id: r.dagster_run.status for r in records}
    assert all(s == dg.DagsterRunStatus.SUCCESS for s in statuses.values()) and len(statuses) == len(run_ids), (
        f"the {len(run_ids)} capture runs did not all succeed within {RUNS_DEADLINE_SECONDS:.0f} s: {statuses}\n"
        f"{_event_logs(instance, run_ids)}\n--- daemon log (tail)\n{daemon_log.read_text()[-4000:]}"
    )
    return records


def _most_started_at_once(records: list[Any]) -> int:
    """The largest number of runs between their start and end at one moment (the run storage's timestamps)."""
    edges = sorted(
        [(r.start_time, 1) for r in records if r.start_time] + [(r.end_time, -1) for r in records if r.end_time],
        key=lambda edge: (edge[0], edge[1]),  # an end at the very instant of a start counts first
    )
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def _spent_by_run(instance: dg.DagsterInstance, run_id: str) -> tuple[int, int]:
    """(credits spent, objects written) over a run's materializations, as its steps reported them."""
    credits = written = 0
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        metadata = entry.asset_materialization.metadata
        credits += int(metadata["credits_spent"].value)
        written += int(metadata["objects_written"].value) if "objects_written" in metadata else 0
    return credits, written


def test_daemon_launches_three_capture_workers_that_split_the_day(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    dagster_database: str,
    redis_window: str,
    moto_endpoint: str,
    s3_bucket: str,
) -> None:
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    home = tmp_path / "dagster_home"
    home.mkdir()
    _instance_yaml(home)
    pg_url = dagster_database.replace("postgresql://", "postgresql+psycopg2://", 1)
    config = tmp_path / "tiklive.yaml"
    plan = {"requests_per_minute": LIMIT * 60 / WINDOW, "window_seconds": WINDOW}
    config.write_text(yaml.safe_dump(_config(plan, workers=WORKERS)))
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's storage, for this process and its code server
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    logs = tmp_path / "logs"
    logs.mkdir()

    with _sandbox(rate_limit=LIMIT, rate_window_seconds=WINDOW, latency_ms=30) as sb:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            DAGSTER_HOME=str(home),
            DAGSTER_PG_URL=pg_url,
            TIKLIVE_HOME=str(tmp_path / "data"),  # one host: the runs share it (scratch, spool, local warehouse)
            TIKLIVE_CONFIG=str(config),
            TIKLIVE_BASE_URL=sb.base_url,
            TIKLIVE_API_KEY=DEFAULT_API_KEY,
            TIKLIVE_STATE_URL=postgres_url,
            TIKLIVE_RATELIMIT_URL=redis_window,
            TIKLIVE_ARCHIVE_BUCKET=s3_bucket,
            TIKLIVE_S3_ENDPOINT_URL=moto_endpoint,
            TIKLIVE_S3_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        instance = dg.DagsterInstance.from_config(str(home))  # creates Dagster's tables once, before anyone else
        pool = subprocess.Popen(
            [str(BIN / "dagster"), "instance", "concurrency", "set", "tiklive_api", str(WORKERS)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        with monkeypatch.context() as during:  # the code server started here builds runs with the daemon's env; this
            for name, value in env.items():  # process keeps its own, for the reference run's embedded state
                if name.startswith("TIKLIVE_"):
                    during.setenv(name, value)
            workspace_context = WorkspaceProcessContext(
                instance, WorkspaceFileTarget(paths=[str(ROOT / "workspace.yaml")])
            )
        with workspace_context as workspace:
            location = workspace.create_request_context().get_code_location(LOCATION)
            _stop_instigators(instance, location.get_repository(REPOSITORY))
            output, _ = pool.communicate(timeout=120)
            assert pool.returncode == 0, output
            assert instance.event_log_storage.get_concurrency_info("tiklive_api").slot_count == WORKERS
            with _daemon(env, logs / "daemon.log"):
                reference_requests, reference_videos = _reference(tmp_path)  # while the daemon starts
                assert reference_videos, "the reference run captured no video: the config tracks nothing"
                sb.gate.clear()  # answers wait until the three runs are all in
                opener = threading.Thread(
                    target=_open_gate_when_all_registered, args=(sb, postgres_url, WORKERS), daemon=True
                )
                opener.start()
                try:
                    submitted = time.monotonic()
                    run_ids = _submit_tick(workspace, instance)
                    queued = [instance.get_run_by_id(run_id) for run_id in run_ids]
                    records = _wait_for_runs(instance, run_ids, logs / "daemon.log")
                    elapsed = time.monotonic() - submitted
                finally:
                    sb.gate.set()
                    opener.join(timeout=10)
        requests = _requests(sb)
        stats = sb.stats()

    # the schedule's runs: one partition, distinct keys, worker i of 3; queued, then launched by the daemon
    runs = [r.dagster_run for r in records]
    assert {run.tags["dagster/partition"] for run in runs} == {_today()}
    assert len({run.tags["dagster/run_key"] for run in runs}) == WORKERS
    assert sorted(run.tags["tiklive/worker"] for run in runs) == [f"{i}/{WORKERS}" for i in range(1, WORKERS + 1)]
    assert all(run is not None and run.tags.get("dagster/schedule_name") == SCHEDULE for run in queued)
    for run_id in run_ids:  # submitted to the queue; then taken off it by the daemon's queued run coordinator
        kinds = [e.dagster_event_type for e in instance.all_logs(run_id) if e.dagster_event_type is not None]
        enqueued, starting = dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING
        assert enqueued in kinds and starting in kinds and kinds.index(enqueued) < kinds.index(starting), kinds
    launched = re.findall(r"QueuedRunCoordinatorDaemon.*Launched (\d+) runs", (logs / "daemon.log").read_text())
    assert sum(int(n) for n in launched) == WORKERS, launched
    together = _most_started_at_once(records)
    assert together >= 2, [(r.start_time, r.end_time) for r in records]

    # every request once: no video resolved twice, no page of a listing, follower list or comments asked twice
    resolved_twice = {k: n for k, n in stats["detail_requests_by_id"].items() if n > 1}
    assert not resolved_twice, f"/post-detail/ ids resolved more than once: {resolved_twice}"
    asked_twice = {key: n for key, n in requests.items() if n > 1}
    assert not asked_twice, asked_twice
    # together exactly one run's requests; the plan's rate held in every window across the runs (the Redis window)
    assert requests == reference_requests, (
        f"{sum(requests.values())} credits for {WORKERS} runs, {sum(reference_requests.values())} for one run"
    )
    assert stats["rate_limited"] == 0
    assert sb.max_in_window(WINDOW) <= LIMIT
    assert stats["by_status"] == {"200": sum(requests.values())}

    # every video one run captures is captured (its MP4 in the shared bucket), nothing left in the queue
    with StateDB.from_url(postgres_url) as state:
        assert _ids_in(state, "downloaded") == reference_videos
        depth = state.queue_depth()
    assert depth["pending"] == depth["resolved"] == 0, depth
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    ]
    assert {Path(k).stem for k in keys if k.startswith(f"videos/dt={_today()}/") and k.endswith(".mp4")} == (
        reference_videos
    )

    # every run did part of the work: credits of its own spent, objects of its own written; they add up
    spent = {run_id: _spent_by_run(instance, run_id) for run_id in run_ids}
    assert all(credits > 0 and written > 0 for credits, written in spent.values()), spent
    assert sum(credits for credits, _ in spent.values()) == sum(requests.values()), spent
    print(  # the figures the report quotes (pytest -s)
        f"\n{WORKERS} runs: {elapsed:.1f} s from submission to the last run's end, {together} started at once, "
        f"credits (spent, objects written) by run {sorted(spent.values())}, {sum(requests.values())} requests, "
        f"max {sb.max_in_window(WINDOW)} in any {WINDOW:.0f} s"
    )

"""Three `tiklive run` processes at once on one Postgres state database, one Redis rate window and one S3 bucket
split the day's capture: the walks (listings, profiles, follow graph, comments, user ids) by unit claims, the videos
by queue claims. Asserted from the sandbox's own request log, against one run of the same day on its own:

* every request is sent once: no /post-detail/ id resolved twice, no listing, follow or comment page asked twice;
* the workers together send exactly the requests one run sends (the same credits, endpoint by endpoint);
* the plan's rate (scaled down to a 2 s window) holds in every window, with no 429;
* every video the run captures is captured, nothing is left in the queue;
* every worker did part of the work (each finished units of its own and spent credits).

The sandbox holds back the first answers until all three workers have registered as claim owners, so they really
overlap whatever their start-up times on a busy machine. The workers run the capture steps of `tiklive run` (the
warehouse steps build each worker's own local warehouse from the shared archive and share nothing). Mandatory
when ``CI=true``: without Postgres or Redis on 127.0.0.1 the test fails there, and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tiklive_assets.sandbox import DEFAULT_API_KEY
from tiklive_assets.state import ClaimOwner, StateDB
from tiklive_assets_tests.support.logged_sandbox import LoggedSandbox, logged_sandbox

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("TIKLIVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKERS = 3
LIMIT, WINDOW = 10, 2.0  # the plan, scaled down: 10 requests in any 2 s (300/min)
BASE_CLOCK = 1780056000.0  # 2026-05-29T12:00:00Z: the sandbox's clock starts here and moves at real speed
HANDLES = ["alice123", "bob", "cristiano", "dana_dances", "eli.cooks"]
pytestmark = pytest.mark.timeout(600)


def _config(plan: dict[str, Any]) -> dict[str, Any]:
    """Five accounts (their own posts only: no two sources list the same video, so which worker walks first cannot
    change what is queued), each with its profile, followers, following and one video's comments."""
    return {
        "plan": plan,
        "limits": {"max_pages": 1, "max_videos_per_day": 5},
        "capture": {"download_concurrency": 2, "api_concurrency": 2, "claim_heartbeat_seconds": 5},
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
# services: a fresh Postgres database, a fresh Redis db number (mandatory in CI)
# ------------------------------------------------------------------------------------------------
def _require(name: str, port: int) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return
    except OSError:
        message = f"{name} is not reachable on 127.0.0.1:{port}"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true makes it mandatory (.ci/run starts it)")
        pytest.skip(f"{message}; start it to run the concurrent-workers test")


@pytest.fixture
def state_database() -> Iterator[str]:
    """A database of its own on the local Postgres (trust auth), dropped afterwards."""
    _require("PostgreSQL", 5432)
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    admin = make_conninfo(POSTGRES_URL, dbname="postgres")
    name = f"tiklive_workers_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(POSTGRES_URL)
    user = params.get("user") or "postgres"
    try:
        # Commits without waiting for the WAL flush, as the suite's other Postgres fixtures: the credit is reserved
        # in the state database between the rate window's grant and the request, and a flush on the shared disk
        # can delay the request past the limiter's jitter margin (the sandbox then answers 429 and the client
        # retries: one request sent twice). Durability only: what each worker sees of the others' writes is the same.
        yield f"postgresql://{user}@127.0.0.1:{params.get('port') or 5432}/{name}?options=-csynchronous_commit%3Doff"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_window() -> Iterator[str]:
    """An empty Redis database number, flushed afterwards: the workers' one shared rate window."""
    _require("Redis", 6379)
    from redis import Redis

    for number in range(15, 0, -1):
        client = Redis(host="127.0.0.1", port=6379, db=number)
        if client.dbsize() == 0:
            try:
                yield f"redis://127.0.0.1:6379/{number}"
            finally:
                client.flushdb()
                client.close()
            return
    pytest.fail("no empty Redis database number (1-15) for the shared rate window")


# ------------------------------------------------------------------------------------------------
# the unit claims themselves, on both backends
# ------------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def claims_state(request, tmp_path: Path) -> Iterator[StateDB]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("state_database")
    with StateDB.from_url(url) as state:
        yield state


def _owner() -> ClaimOwner:
    return ClaimOwner.this_process(heartbeat_seconds=60)


def test_a_unit_is_claimed_by_one_owner_done_once_and_taken_over_from_a_dead_one(claims_state: StateDB) -> None:
    state, day = claims_state, datetime.now(UTC).date()
    a, b = _owner(), _owner()
    for owner in (a, b):
        state.register_owner(owner)
    assert state.claim_unit("user-posts:1", day, a).status == "mine"
    assert state.claim_unit("user-posts:1", day, a).status == "mine"  # claiming again what it holds
    held = state.claim_unit("user-posts:1", day, b)
    assert (held.status, held.holder) == ("held", a.run_id)
    assert state.unit_held("user-posts:1", day, a) and not state.unit_held("user-posts:1", day, b)
    state.finish_unit("user-posts:1", day, a)
    assert state.claim_unit("user-posts:1", day, b).status == "done"
    assert state.get_value("complete:user-posts:1:" + day.isoformat()) == "1"  # the marker reruns read
    assert state.claim_unit("user-posts:1", day + timedelta(days=1), b).status == "mine"  # another day, another unit

    # an owner whose process is gone from this host: its unit is free at once, and b takes it over
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = replace(_owner(), pid=gone.pid, pid_start=None)
    state.register_owner(dead)
    assert state.claim_unit("user-followers:1", day, dead).status == "mine"
    assert state.claim_unit("user-followers:1", day, b).status == "held"  # alive as far as its heartbeat says
    assert state.expire_dead_owners() == [dead.owner_id]
    taken = state.claim_unit("user-followers:1", day, b)
    assert (taken.status, taken.taken_over) == ("mine", True)
    assert not state.unit_held("user-followers:1", day, dead)  # its guard would stop it before its next page

    # a unit left with unreadable answers stays with its owner (nobody waits for it), then is free for the next run
    assert state.claim_unit("post-comments:9", day, b).status == "mine"
    state.leave_unit("post-comments:9", day, b)
    rows = {r.unit: r for r in state.units(day)}
    assert rows["post-comments:9"].state == "left" and rows["post-comments:9"].owner_alive
    c = _owner()
    state.register_owner(c)
    assert state.claim_unit("post-comments:9", day, c).status == "held"
    assert state.end_owner(b) >= 2  # its units are released with it
    assert state.claim_unit("post-comments:9", day, c).status == "mine"
    state.reopen_unit("user-posts:1", day)  # an operator's cursor reset: walked again
    assert state.claim_unit("user-posts:1", day, c).status == "mine"


def test_a_silent_owner_on_another_host_loses_its_units_after_three_missed_heartbeats(claims_state: StateDB) -> None:
    """Only for an owner on another host is silence taken for death (on this host its process is looked up: a late
    heartbeat of a live process keeps its units, see test_claims_race.py)."""
    state, day = claims_state, datetime.now(UTC).date()
    silent, other = replace(_owner(), host="elsewhere", host_key="elsewhere|another-boot|1"), _owner()
    state.register_owner(silent)
    state.register_owner(other)
    assert state.claim_unit("challenge-posts:1001", day, silent).status == "mine"
    assert state.claim_unit("challenge-posts:1001", day, other).status == "held"
    past = datetime.now(UTC) - timedelta(seconds=1)  # its last heartbeat was three intervals ago: presumed dead
    state._write("UPDATE claim_owners SET expires_at = ? WHERE owner_id = ?", [past, silent.owner_id])
    assert state.claim_unit("challenge-posts:1001", day, other).status == "mine"
    assert state.heartbeat(silent) is False  # the silent owner learns it lapsed


def test_concurrent_claimers_of_one_unit_get_it_exactly_once(claims_state: StateDB) -> None:
    state, day = claims_state, datetime.now(UTC).date()
    owners = [_owner() for _ in range(8)]
    for owner in owners:
        state.register_owner(owner)
    start = threading.Barrier(len(owners))
    answers: list[str] = []

    def claim(owner: ClaimOwner) -> None:
        start.wait(timeout=30)
        answers.append(state.claim_unit("search-video:cats-cursor", day, owner).status)

    threads = [threading.Thread(target=claim, args=(owner,)) for owner in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers) == ["held"] * (len(owners) - 1) + ["mine"]


# ------------------------------------------------------------------------------------------------
# the sandbox: its own log of every request, and a gate that holds answers until the workers are all in
# ------------------------------------------------------------------------------------------------
def _sandbox(**config: Any) -> LoggedSandbox:
    return logged_sandbox(BASE_CLOCK, 20.0, **config)


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _requests(sb: LoggedSandbox) -> Counter:
    """Every API request as (path, query): a request is a credit, and its query names the page or the id."""
    return Counter((path, query) for path, query, _ in sb.log)


def _reference(tmp_path: Path) -> tuple[Counter, set[str]]:
    """One run of the same day alone (its own sandbox, sqlite state, local archive): what it asks, what it keeps."""
    from tiklive_assets.defs.resources import ArchiveStoreResource
    from tiklive_assets_tests.support.capture import Rig

    home = tmp_path / "reference"
    with _sandbox() as sb:
        rig = Rig(sb, home, ArchiveStoreResource(local_root=str(home / "archive")))
        rig.config = _config({"requests_per_minute": 100_000})
        assert rig.run().success
        with StateDB.from_url(f"sqlite:///{home / 'state.sqlite'}") as state:
            downloaded = _ids_in(state, "downloaded")
    return _requests(sb), downloaded


def _ids_in(state: StateDB, queue_state: str) -> set[str]:
    with state._tx() as tx:
        return {r[0] for r in tx.fetchall("SELECT aweme_id FROM archive_queue WHERE state = ?", [queue_state])}


# ------------------------------------------------------------------------------------------------
# the workers: `tiklive run` (its capture steps) in processes forked from one that imported the pipeline once
# ------------------------------------------------------------------------------------------------
def _serve() -> None:  # pragma: no cover - runs in the fork server
    import json

    import tiklive_assets.cli.run as run
    from tiklive_assets.cli import main

    run.STEPS = list(run.CAPTURE_ASSETS)  # the warehouse steps build each worker's own warehouse: not shared
    jobs_of_location = run.step_jobs()  # the code location, loaded once for every worker
    run.step_jobs = lambda: jobs_of_location
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        children = []
        for job in json.loads(line):
            pid = os.fork()
            if pid == 0:
                try:
                    os.environ.update(job["env"])
                    out = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(out, 1)
                    os.dup2(out, 2)
                    code = main(["run"])
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(int(code or 0))
                except BaseException:  # noqa: BLE001
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(99)
            children.append(pid)
        print(json.dumps({"pids": children}), flush=True)
        codes = []
        for pid in children:
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        print(json.dumps({"codes": codes}), flush=True)


def _common_env(config: Path, base_url: str, state_url: str, redis_url: str, bucket: str, s3: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        TIKLIVE_CONFIG=str(config),
        TIKLIVE_BASE_URL=base_url,
        TIKLIVE_API_KEY=DEFAULT_API_KEY,
        TIKLIVE_STATE_URL=state_url,
        TIKLIVE_RATELIMIT_URL=redis_url,
        TIKLIVE_ARCHIVE_BUCKET=bucket,
        TIKLIVE_S3_ENDPOINT_URL=s3,
        TIKLIVE_S3_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    return env


class ForkServer:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(cwd),
        )
        assert self.read(120) == {"ready": True}

    def read(self, timeout: float) -> dict:
        import json

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "the fork server did not answer in time"
        return json.loads(self.proc.stdout.readline())

    def start(self, jobs: list[dict]) -> list[int]:
        import json

        self.proc.stdin.write(json.dumps(jobs) + "\n")
        self.proc.stdin.flush()
        return self.read(30)["pids"]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _open_gate_when_all_registered(sb: LoggedSandbox, state: StateDB, pids: set[int]) -> None:
    """Hold every answer until each worker has registered a claim owner, then let them all go; at most 15 s, well
    inside the client's read timeout (a request that timed out would be sent again)."""
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            try:
                with state._tx() as tx:
                    seen = {int(r[0]) for r in tx.fetchall("SELECT DISTINCT pid FROM claim_owners")}
            except Exception:  # noqa: BLE001 - not migrated yet: the workers' preflight creates the tables
                seen = set()
            if pids <= seen:
                return
            time.sleep(0.1)
    finally:
        sb.gate.set()


@pytest.mark.alone  # its assertions are about real time: the plan's window across three processes
def test_three_workers_split_the_day_and_spend_what_one_run_spends(
    tmp_path: Path, state_database: str, redis_window: str, moto_endpoint: str, s3_bucket: str
) -> None:
    reference_requests, reference_videos = _reference(tmp_path)
    assert reference_videos, "the reference run captured no video: the config tracks nothing"

    config = tmp_path / "tiklive.yaml"
    config.write_text(yaml.safe_dump(_config({"requests_per_minute": LIMIT * 60 / WINDOW, "window_seconds": WINDOW})))
    state = StateDB.from_url(state_database)
    with _sandbox(rate_limit=LIMIT, rate_window_seconds=WINDOW, latency_ms=30) as sb:
        server = ForkServer(
            _common_env(config, sb.base_url, state_database, redis_window, s3_bucket, moto_endpoint), tmp_path
        )
        try:
            sb.gate.clear()  # answers wait until the three workers are all in
            logs = [tmp_path / f"worker{n}.log" for n in range(WORKERS)]
            jobs = [
                {"env": {"TIKLIVE_HOME": str(tmp_path / f"worker{n}")}, "log": str(logs[n])} for n in range(WORKERS)
            ]
            pids = set(server.start(jobs))
            _open_gate_when_all_registered(sb, state, pids)
            codes = server.read(400)["codes"]
        finally:
            sb.gate.set()
            server.close()
        outputs = [log.read_text() for log in logs]
        assert codes == [0] * WORKERS, "\n\n".join(o[-3000:] for o in outputs)
        requests = _requests(sb)
        stats = sb.stats()

        # every request once: no video resolved twice, no page of a listing, follower list or comments asked twice.
        # A repeat is shown with its answers' statuses and its workers' warnings: a 429 first is the rate window
        # letting one request too many through (the client retries it), two 200s are two workers paying for one id.
        answers: dict[tuple[str, str], list[int]] = {}
        for path, query, status in sb.log:
            answers.setdefault((path, query), []).append(status)
        repeated = {key: got for key, got in answers.items() if len(got) > 1}
        warnings = [line for o in outputs for line in o.splitlines() if "rate limited" in line or "lapsed" in line]
        assert not repeated, (repeated, warnings)
        assert all(n == 1 for n in stats["detail_requests_by_id"].values()), stats["detail_requests_by_id"]
        asked_twice = {key: n for key, n in requests.items() if n > 1}
        assert not asked_twice, asked_twice
        # together exactly one run's requests: the same credits, endpoint by endpoint and page by page
        assert sum(requests.values()) == sum(reference_requests.values()), (
            f"{sum(requests.values())} credits for {WORKERS} workers, {sum(reference_requests.values())} for one run"
        )
        assert requests == reference_requests
        # the plan's rate held in every window, across the three processes (the shared Redis window)
        assert stats["rate_limited"] == 0
        assert sb.max_in_window(WINDOW) <= LIMIT
        assert stats["by_status"] == {"200": sum(requests.values())}

    # every video one run captures is captured (its MP4 in the shared bucket), nothing left in the queue
    assert _ids_in(state, "downloaded") == reference_videos
    assert state.queue_depth()["pending"] == state.queue_depth()["resolved"] == 0
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    ]
    videos = {Path(k).stem for k in keys if k.startswith(f"videos/dt={_today()}/") and k.endswith(".mp4")}
    assert videos == reference_videos

    # every worker did part of the work: units of its own finished, credits of its own spent
    with state._tx() as tx:
        finished_by = Counter(int(r[0]) for r in tx.fetchall("SELECT done_pid FROM work_claims WHERE state = 'done'"))
    assert set(finished_by) == pids, finished_by
    spent = [int(m.group(1)) for o in outputs for m in [re.search(r"credits spent:\s+(\d+)", o)] if m]
    assert len(spent) == WORKERS and all(n > 0 for n in spent), spent
    assert sum(spent) == sum(requests.values())
    state.close()


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()

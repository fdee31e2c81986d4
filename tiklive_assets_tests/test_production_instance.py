"""End to end on the production shape: dagster-daemon and dagster-webserver on the real local Postgres.

The daily capture is launched through the webserver's GraphQL API, dequeued by the daemon, run in its own process
against the sandbox API, and the archive and state are checked afterwards.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tiklive_assets.sandbox import DEFAULT_API_KEY

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dagster_postgres_db(postgres_url):
    """A database of its own on the local Postgres for Dagster's run, event-log and schedule storage."""
    import psycopg

    from tiklive_assets_tests.conftest import POSTGRES_URL

    name = f"dagster_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # its commits do not wait for the WAL flush (a throwaway database: only a server crash could lose them)
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_daily_capture_through_webserver_and_daemon_on_postgres(sandbox, tmp_path, dagster_postgres_db):
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    home = tmp_path / "dagster_home"
    home.mkdir()
    # the production instance as deployed, its run queue polled every second instead of every five (a clock scaled
    # down: the daemon launches the same runs, sooner)
    instance = yaml.safe_load((REPO / "deploy" / "dagster.production.yaml").read_text())
    instance.setdefault("run_queue", {})["dequeue_interval_seconds"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
    config = tmp_path / "tiklive.yaml"
    config.write_text(
        "plan: {requests_per_minute: 100000}\n"
        "limits: {max_pages: 1, max_videos_per_day: 5}\n"
        "accounts:\n  - handle: bob\n    follow_max_pages: 1\n    comments: {recent_videos: 1, max_pages: 1}\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_postgres_db.replace("postgresql://", "postgresql+psycopg2://", 1),
        "TIKLIVE_HOME": str(tmp_path / "data"),
        "TIKLIVE_CONFIG": str(config),
        "TIKLIVE_BASE_URL": sandbox.base_url,
        "TIKLIVE_API_KEY": DEFAULT_API_KEY,
    }
    port = _free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    # each child keeps its own copy of its log's descriptor: ours is closed as soon as it is started
    with open(logs / "webserver.log", "w") as webserver_log, open(logs / "daemon.log", "w") as daemon_log:
        procs = [
            subprocess.Popen(
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    str(REPO / "workspace.yaml"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                cwd=REPO,
                env=env,
                stdout=webserver_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: its code server is stopped with it
            ),
            subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
                cwd=REPO,
                env=env,
                stdout=daemon_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        ]
    try:
        client = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                client = DagsterGraphQLClient("127.0.0.1", port_number=port)
                client._execute("{ version }")
                break
            except Exception:
                time.sleep(0.5)
        else:
            pytest.fail(f"webserver did not come up:\n{(logs / 'webserver.log').read_text()[-3000:]}")
        today = datetime.now(UTC).date().isoformat()

        def launch_and_wait(job: str) -> str:
            run = client.submit_job_execution(
                job,
                repository_location_name="tiklive_assets",
                repository_name="__repository__",
                tags={"dagster/partition": today},
            )
            status, deadline = None, time.monotonic() + 240
            while time.monotonic() < deadline:
                status = client.get_run_status(run)
                if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                    break
                time.sleep(0.5)
            assert status == DagsterRunStatus.SUCCESS, f"{job}: {status}\n" + (logs / "daemon.log").read_text()[-4000:]
            return run

        run_id = launch_and_wait("daily_capture")
        launch_and_wait("daily_warehouse")  # then the day's warehouse, as the daily_warehouse schedule launches it
    finally:
        for proc in procs:  # the whole group, so no code server outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group (a gRPC server after its parent)

    archive = tmp_path / "data" / "archive"
    day = datetime.now(UTC).date()
    raw = list((archive / "tiklive-raw" / f"{day:%Y/%m/%d}").rglob("*.json.gz"))
    videos = list((archive / "videos" / f"dt={day}").rglob("*.mp4"))
    assert len(videos) == 5
    assert any("userinfo-by-id" in str(path) for path in raw)
    import duckdb

    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM posts WHERE storage_key IS NOT NULL").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM user_snapshots").fetchone()[0] == 1
    # the run really used Dagster's Postgres storage
    import psycopg

    with psycopg.connect(dagster_postgres_db) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", [run_id]).fetchone()[0] == 1

"""``tiklive ui --sandbox`` as a newcomer starts it: the real entry point in a subprocess, on free 127.0.0.1 ports.

The webserver answers GraphQL with the code location loaded, the sandbox answers its key, a run launched from the
UI captures from the sandbox (so the daemon and run worker got TIKLIVE_BASE_URL and the key) under its job's name,
nothing prints a framework warning, and SIGTERM or SIGINT leaves no process of the tree alive. The two UIs these
tests stop (one by SIGTERM, one by SIGINT) start at the same time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tiklive_assets.cli.ui import LOCATION, graphql

TIKLIVE = str(Path(sys.executable).with_name("tiklive"))
SMALL_RUN = """\
limits:
  max_pages: 1
  max_videos_per_day: 2
accounts:
  - handle: alice123
    followers: false
    following: false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, from /proc; None when it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every live process below ``root``, with its start time (a reused pid is not the same process)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def _still_alive(processes: dict[int, str]) -> list[str]:
    alive = []
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
            except OSError:
                continue
            alive.append(f"{pid}: {command!r}")
    return alive


class _UI:
    """``tiklive ui --sandbox`` running, its output collected line by line."""

    def __init__(self, tmp: Path):
        self.port, self.sandbox_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        (tmp / "tiklive.yaml").write_text(SMALL_RUN)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
        env.update(HOME=str(tmp), TIKLIVE_HOME=str(tmp / "data"), TIKLIVE_RATELIMIT_URL="memory://")
        self.proc = subprocess.Popen(
            [TIKLIVE, "ui", "--sandbox", "--port", str(self.port), "--sandbox-port", str(self.sandbox_port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def output(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_for_banner(self, timeout: float = 200) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("Dagster UI: ") for line in self.out):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def stop(self, sig: signal.Signals, timeout: float = 120) -> tuple[int, list[str]]:
        """Send ``sig``; the exit status and what of the process tree (as it was just before) is still alive."""
        tree = _descendants(self.proc.pid)
        assert tree, "tiklive ui started no process"
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        deadline = time.monotonic() + 10  # orphans are reaped by init a moment later
        while (alive := _still_alive(tree)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return code, alive

    def kill(self) -> None:
        """After a failed assertion: end the tree by its ids, so a failing test leaves nothing running."""
        if self.proc.poll() is None:
            tree = _descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def uis(tmp_path_factory: pytest.TempPathFactory):
    """Two ``tiklive ui --sandbox``, started at once: one to stop with SIGTERM, one with SIGINT. Most of a start is
    waiting (for the code location to load, for the webserver to answer), so the two starts take about as long as
    one. Each has its own data root and ports; whatever a test leaves running is ended when the module is done."""
    started: dict[str, _UI] = {}
    try:
        for name in ("sigterm", "sigint"):
            started[name] = _UI(tmp_path_factory.mktemp(f"ui_{name}"))
        yield started
    finally:
        for ui in started.values():
            ui.kill()


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName tags { key value } } } }"""


def _launch_capture_of_profiles(url: str) -> str:
    today = datetime.now(UTC).date().isoformat()
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "daily_capture",
            "assetSelection": [{"path": ["account_profiles"]}],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": today}]},
    }
    answer = graphql(url, LAUNCH, {"params": params})
    launched = answer["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", answer
    return launched["run"]["runId"]


def _wait_for_run(url: str, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = graphql(url, RUN, {"id": run_id})["data"]["runOrError"]
        if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(1)


def _userid_status(sandbox_url: str, key: str) -> int:
    answer = requests.get(
        f"{sandbox_url}/userid/", params={"username": "alice123"}, headers={"X-Api-Key": key}, timeout=10
    )
    return answer.status_code


@pytest.mark.timeout(420)
def test_ui_with_the_sandbox_serves_the_code_location_runs_against_the_sandbox_and_stops_on_sigterm(uis):
    ui = uis["sigterm"]
    ui.wait_for_banner()
    banner = "".join(ui.out)
    assert f"{ui.url}/locations/{LOCATION}/jobs/daily_capture" in banner and "daily_warehouse" in banner
    assert ui.sandbox_url in banner

    # the code location loaded, without an error, with the pipeline's assets
    entries = graphql(
        ui.url,
        """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }""",
    )
    [entry] = entries["data"]["workspaceOrError"]["locationEntries"]
    assert entry["name"] == LOCATION and entry["loadStatus"] == "LOADED", entry
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    nodes = graphql(ui.url, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"]
    keys = {"/".join(node["assetKey"]["path"]) for node in nodes}
    assert {"account_profiles", "archived_videos", "warehouse_posts", "mart_follower_growth"} <= keys, keys

    # the sandbox answers its key, and only its key
    assert _userid_status(ui.sandbox_url, "sandbox-key") == 200
    assert _userid_status(ui.sandbox_url, "not-the-key") == 401
    requests.post(f"{ui.sandbox_url}/__sandbox__/reset-stats", timeout=10)

    # a run launched from the UI: queued, launched by the daemon, executed by a run worker, against the sandbox
    run_id = _launch_capture_of_profiles(ui.url)
    run = _wait_for_run(ui.url, run_id)
    assert run["status"] == "SUCCESS", (run, ui.output()[-3000:])
    assert run["jobName"] == "daily_capture"
    stats = requests.get(f"{ui.sandbox_url}/__sandbox__/stats", timeout=10).json()
    assert stats["by_endpoint"].get("/userinfo-by-id/", 0) >= 1, stats  # the run worker reached the sandbox
    assert stats["by_status"].get("401", 0) == 0, stats  # ... with the sandbox key

    code, alive = ui.stop(signal.SIGTERM)
    assert code == 0, ui.output()
    assert alive == [], alive
    output = ui.output()
    assert "Warning" not in output, output  # SupersessionWarning, BetaWarning, PreviewWarning ...
    assert "Traceback" not in output, output
    assert "stopping the Dagster UI" in output


@pytest.mark.timeout(300)
def test_ui_stops_everything_it_started_on_ctrl_c(uis):
    ui = uis["sigint"]
    ui.wait_for_banner()
    assert graphql(ui.url, "{ version }")["data"]["version"]
    code, alive = ui.stop(signal.SIGINT)
    assert code == 0, ui.output()
    assert alive == [], alive
    with pytest.raises(requests.ConnectionError):
        requests.get(ui.url, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(ui.sandbox_url, timeout=5)
    assert "Warning" not in ui.output(), ui.output()


def test_ui_says_when_the_sandbox_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
        result = subprocess.run(
            [TIKLIVE, "ui", "--sandbox", "--sandbox-port", str(port), "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "--sandbox-port 0" in result.stderr


def test_ui_realism_needs_the_sandbox(tmp_path):
    result = subprocess.run([TIKLIVE, "ui", "--realism"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "add --sandbox" in result.stderr


def test_ui_writes_the_project_instance_settings_into_the_data_root(tmp_path, monkeypatch):
    """Without DAGSTER_HOME the instance is TIKLIVE_HOME/dagster (where `tiklive run` records its runs), with the
    project's pools, run queue and retries, and its SQLite storage in that folder."""
    import yaml

    from tiklive_assets import settings
    from tiklive_assets.cli.ui import instance_folder, project_instance_settings

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path / "data"))
    folder = instance_folder(settings.DataRoot.from_env())
    assert folder == tmp_path / "data" / "dagster"
    written = yaml.safe_load((folder / "dagster.yaml").read_text())
    source, shipped = project_instance_settings()
    assert source.name == "dagster.yaml"
    assert written["storage"] == {"sqlite": {"base_dir": str(folder)}}
    assert written["concurrency"] == shipped["concurrency"] and written["run_retries"] == shipped["run_retries"]
    assert written["telemetry"] == {"enabled": False}
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mine"))
    assert instance_folder(settings.DataRoot.from_env()) == tmp_path / "mine"  # an instance of one's own is kept
    assert not (tmp_path / "mine").exists()


def test_the_ui_partitions_start_at_the_first_archived_day(tmp_path, monkeypatch):
    """Unless TIKLIVE_FIRST_DAY says otherwise: the first archived day, or today when nothing is archived."""
    from datetime import UTC, date, datetime

    from tiklive_assets.cli.ui import first_partition_day
    from tiklive_assets.storage import LocalStore
    from tiklive_assets_tests.support.archive import put_raw

    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    assert first_partition_day() == datetime.now(UTC).date().isoformat()
    put_raw(LocalStore(tmp_path / "archive"), date(2026, 11, 20), "userid", "alice123", {"userid": "1"})
    assert first_partition_day() == "2026-11-20"

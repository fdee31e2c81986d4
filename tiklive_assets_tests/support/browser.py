"""A real Dagster deployment for browser tests: the webserver and the daemon over this project's code location on a
throwaway instance, and headless Chromium driven by Selenium.

Both servers are subprocesses in process groups of their own, bind 127.0.0.1 only, and are killed group and all
(code servers and run workers included) when the test is done; a process still carrying the instance's
DAGSTER_HOME afterwards is killed and reported. Chromium and chromedriver are Debian's; a machine without them
skips the browser tests, except under ``CI=true``, where their absence fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

PROJECT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TIKLIVE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TIKLIVE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]
LOCATION = "tiklive_assets"  # workspace.yaml's location_name
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a module's @definitions
UI_TIMEOUT = 30.0  # one page or dialog to render on a busy 2-core machine
T = TypeVar("T")


def require_chromium() -> None:
    """Skip when Chromium or chromedriver is missing; under CI=true fail instead (.ci/run installs them)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if not missing:
        return
    message = f"{' and '.join(missing)} not found"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{message}, and CI=true makes the browser test mandatory (.ci/run installs `chromium chromium-driver`)"
        )
    pytest.skip(f"{message}; install them (`apt-get install chromium chromium-driver`) to run the browser test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5, explain: Callable[[], str] = str
) -> T:
    """Poll ``probe`` until it returns something truthy; after ``timeout`` seconds fail naming ``what``, with
    ``explain()`` appended (server logs, the last state seen)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not seen within {timeout:.0f} s\n{explain()}")
        time.sleep(interval)


def instance_yaml(base_dir: Path) -> str:
    """The project's dagster.yaml with its SQLite storage moved under ``base_dir``; the run queue is polled every
    second instead of every five (a clock scaled down, the same deployment otherwise)."""
    import yaml

    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    config["storage"] = {"sqlite": {"base_dir": str(base_dir)}}
    config.setdefault("run_queue", {})["dequeue_interval_seconds"] = 1
    config["telemetry"] = {"enabled": False}
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Deployment:
    """A running webserver and daemon: ``url`` is the UI's origin, ``home`` the DAGSTER_HOME they share."""

    url: str
    home: Path
    logs: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def instance(self):
        """The same instance, opened in this process (SQLite storage under ``home``)."""
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log} (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(parts)


@contextmanager
def dagster_deployment(root: Path, env: dict[str, str], *, timeout: float = 120.0) -> Iterator[Deployment]:
    """``dagster-webserver`` and ``dagster-daemon run`` (its backfill daemon looking every 2 s, not every 30) over
    workspace.yaml, on a new instance under ``root``.

    ``env`` is their whole environment (the caller decides every TIKLIVE_ variable). Before the daemon starts,
    the schedules declared as running are stopped (no janitor or nightly capture run can slip in because the test
    crossed an hour) and the webserver's first-visit newsletter prompt is marked seen (it would cover the page)."""
    home, logs = root / "dagster_home", root / "logs"
    home.mkdir(parents=True)
    logs.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home / "storage"))
    env = {**env, "DAGSTER_HOME": str(home)}
    bin_dir = Path(sys.executable).parent
    port = free_port()
    deployment = Deployment(f"http://127.0.0.1:{port}", home, logs)
    procs: list[subprocess.Popen] = []
    try:
        webserver = _start(
            [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            env,
            logs / "webserver.log",
        )
        procs.append(webserver)

        def up() -> bool:
            if webserver.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {webserver.returncode}\n{deployment.log_tail()}")
            return _server_up(deployment.url) and _location_loaded(deployment)

        wait_for("the webserver serving the tiklive_assets code location", up, timeout, explain=deployment.log_tail)
        stop_running_schedules(deployment)
        deployment.graphql("mutation { setNuxSeen }")
        # dagster-daemon, its backfill loop every 2 s instead of 30 (support/daemon.py)
        daemon = [sys.executable, "-m", "tiklive_assets_tests.support.daemon", "run", "-w", "workspace.yaml"]
        procs.append(_start(daemon, env, logs / "daemon.log"))
        yield deployment
    finally:
        _stop(procs)
        strays = _processes_of(home)
        for pid in strays:
            os.kill(pid, signal.SIGKILL)
        if strays:
            raise RuntimeError(f"processes outlived their process group and were killed: {strays}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process group; once each leader has shut down (or after 15 s), SIGKILL what is left in it."""
    for proc in procs:
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    with suppress(TimeoutError):
        wait_for(
            "the process groups to exit",
            lambda: not any(_signal_group(p.pid, 0) for p in procs),
            timeout=5,
            interval=0.2,
        )
    for proc in procs:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _processes_of(home: Path) -> list[int]:
    """Live processes whose environment names this DAGSTER_HOME (ours: other users' environments are unreadable)."""
    marker = f"DAGSTER_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie is already dead; its parent reaps it
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _server_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


LOCATION_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
SCHEDULES_QUERY = """
query($selector: RepositorySelector!) { schedulesOrError(repositorySelector: $selector) {
  __typename ... on Schedules { results { name scheduleState { id status } } } } }
"""
STOP_SCHEDULE = """
mutation($id: String) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""


def _location_loaded(deployment: Deployment) -> bool:
    for entry in deployment.graphql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]:
        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
            loaded = entry["locationOrLoadError"]
            if loaded["__typename"] == "PythonError":
                raise RuntimeError(f"the code location failed to load: {loaded['message']}")
            return True
    return False


def stop_running_schedules(deployment: Deployment) -> list[str]:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    answer = deployment.graphql(SCHEDULES_QUERY, {"selector": selector})["schedulesOrError"]
    assert answer["__typename"] == "Schedules", answer
    stopped = []
    for schedule in answer["results"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            result = deployment.graphql(STOP_SCHEDULE, {"id": schedule["scheduleState"]["id"]})
            assert result["stopRunningSchedule"]["__typename"] == "ScheduleStateResult", result
            stopped.append(schedule["name"])
    return stopped


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _text(value: str) -> str:
    """An XPath string literal for ``value`` (the UI's texts hold no quotes of both kinds)."""
    return f"'{value}'" if "'" not in value else f'"{value}"'


def button(text: str, *, prefix: bool = False) -> tuple[str, str]:
    test = f"starts-with(normalize-space(), {_text(text)})" if prefix else f"normalize-space()={_text(text)}"
    return ("xpath", f"//button[{test}]")


def tab(name: str) -> tuple[str, str]:
    return ("xpath", f"//*[@role='tab'][normalize-space()={_text(name)}]")


def placeholder(text: str) -> tuple[str, str]:
    return ("xpath", f"//input[@placeholder={_text(text)}]")


def exact_text(text: str) -> tuple[str, str]:
    return ("xpath", f"//*[normalize-space()={_text(text)}]")


def metadata_value(label: str) -> tuple[str, str]:
    """The value cell of the metadata table row labelled ``label``."""
    return ("xpath", f"//tr[td[normalize-space()={_text(label)}]]/td[2]")


class DagsterUI:
    """The Dagster UI as a user sees it: found by visible text, role and placeholder, waited for explicitly."""

    def __init__(self, driver: Any, deployment: Deployment, evidence_dir: Path) -> None:
        self.driver, self.deployment, self.evidence_dir = driver, deployment, evidence_dir

    def open(self, path: str) -> None:
        self.driver.get(self.deployment.url + path)

    def until(self, condition: Callable[[Any], T], what: str, timeout: float = UI_TIMEOUT) -> T:
        # React re-renders replace elements, and a closing dialog can sit over a button for a moment: retry those
        ignored = (
            NoSuchElementException,
            StaleElementReferenceException,
            ElementClickInterceptedException,
            ElementNotInteractableException,
        )
        return WebDriverWait(self.driver, timeout, poll_frequency=0.25, ignored_exceptions=ignored).until(
            condition, what
        )

    def click(self, locator: tuple[str, str], what: str) -> Any:
        def clicked(driver: Any) -> Any:
            element = driver.find_element(*locator)
            if not (element.is_displayed() and element.is_enabled()):
                return False
            element.click()
            return element

        return self.until(clicked, f"{what} to be clickable")

    def confirm(self, element: Any, what: str) -> None:
        """Click a dialog's confirming button, already found, until the button is gone. A click that lands while
        the dialog is still opening is lost, and a dialog that asks a second question may keep the same button:
        each click gets 2 s to close the dialog, then the button is clicked again (every question here is one the
        test confirms anyway)."""

        def closed(driver: Any) -> bool:
            try:
                element.click()
            except StaleElementReferenceException:
                return True
            except (ElementClickInterceptedException, ElementNotInteractableException):
                return False  # still covered by the opening animation: clicked again at the next poll
            try:
                WebDriverWait(driver, 2, poll_frequency=0.2).until(ec.staleness_of(element))
            except TimeoutException:
                return False
            return True

        self.until(closed, f"{what} to close")

    def element(self, locator: tuple[str, str], what: str) -> Any:
        return self.until(
            lambda driver: [e for e in driver.find_elements(*locator) if e.is_displayed()][:1], f"{what} to show"
        )[0]

    def text_of(self, locator: tuple[str, str], expected: str, what: str) -> str:
        """Wait until the element at ``locator`` reads ``expected``; the failure names what it read instead."""
        seen: list[str] = []

        def reads(driver: Any) -> bool:
            seen[:] = [e.text.strip() for e in driver.find_elements(*locator)]
            return expected in seen

        try:
            self.until(reads, f"{what} to read {expected!r}")
        except TimeoutException as exc:
            raise AssertionError(f"{what}: expected {expected!r}, the page shows {seen or 'nothing'}") from exc
        return expected

    @contextmanager
    def evidence(self, step: str) -> Iterator[None]:
        """On any failure inside, save a screenshot and the page source under ``evidence_dir`` and fail with their
        paths and the servers' last log lines."""
        try:
            yield
        except Exception as exc:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
            png, html = self.evidence_dir / f"{stem}.png", self.evidence_dir / f"{stem}.html"
            try:
                self.driver.save_screenshot(str(png))
                html.write_text(self.driver.page_source)
                saved = f"screenshot {png}, page source {html}"
            except WebDriverException as lost:  # the browser itself is gone
                saved = f"no screenshot ({type(lost).__name__}: {lost})"
            message = getattr(exc, "msg", None) or str(exc)
            raise AssertionError(
                f"{step} failed: {type(exc).__name__}: {message}\n{saved}\n{self.deployment.log_tail(15)}"
            ) from exc

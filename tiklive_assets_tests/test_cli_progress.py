"""Progress of ``tiklive run``'s long steps, and the jobs its steps run through.

The reporting hook does nothing until the CLI installs a sink; the plain-line sink prints a bounded number of lines;
a real run against a sandbox (stderr a pipe, as in CI) says when it waits for the plan's rate window and shows a few
progress lines, never one per request; on a terminal the bar stands on the step's line and leaves the step's summary
line; every run it records carries its job's name (daily_capture, daily_warehouse) with the cheap checks evaluated
and the nightly ones not. The two real runs (piped, on a terminal) run at the same time, each against its own
sandbox and data root.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tiklive_assets import progress
from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer
from tiklive_assets.tikliveapi.ratelimit import RateLimiter, RatePlan

TIKLIVE = str(Path(sys.executable).with_name("tiklive"))
PROGRESS_LINE = re.compile(r"^  (\w+): (?:(\d+)(?:/(\d+))? (\w+), )?(\d+) requests?, \d+ s$")


class _Recorder:
    def __init__(self):
        self.events: list[tuple] = []

    def requested(self):
        self.events.append(("requested",))

    def start(self, name, total):
        self.events.append(("start", name, total))

    def advance(self, n=1):
        self.events.append(("advance", n))


def test_the_hook_does_nothing_until_a_sink_is_installed_and_the_previous_one_comes_back():
    progress.requested()  # no sink: nothing happens, nothing fails
    with progress.task("videos", total=3) as shown:
        shown.advance()
    outer, inner = _Recorder(), _Recorder()
    with progress.installed(outer):
        progress.requested()
        with progress.installed(inner), progress.task("videos", total=2) as shown:
            shown.advance()
            progress.requested()
        progress.requested()
    progress.requested()
    assert outer.events == [("requested",), ("requested",)]
    assert inner.events == [("start", "videos", 2), ("advance", 1), ("requested",)]


def test_plain_lines_are_bounded_by_the_interval_whatever_the_number_of_events():
    stream = io.StringIO()
    sink = progress.LineProgress("archived_videos", stream, interval=0.2)
    started = time.monotonic()
    sink.start("videos", 10)
    workers = [
        threading.Thread(target=lambda: [sink.requested() or time.sleep(0.0005) for _ in range(400)]) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for _ in range(10):
        sink.advance()
        time.sleep(0.08)
    for worker in workers:
        worker.join()
    took = time.monotonic() - started
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= took / 0.2 + 1, lines
    assert all(PROGRESS_LINE.match(line) for line in lines), lines
    last = PROGRESS_LINE.match(lines[-1])
    assert last.group(1) == "archived_videos" and last.group(4) == "videos" and last.group(3) == "10"
    assert sink.counts.requests == 1600 and sink.counts.done == 10


def test_a_step_shorter_than_the_interval_prints_nothing():
    stream = io.StringIO()
    sink = progress.LineProgress("account_profiles", stream, interval=30)
    for _ in range(50):
        sink.requested()
    assert stream.getvalue() == ""


def test_the_bar_counts_requests_then_the_loop_and_is_cleared_at_the_end():
    stream = io.StringIO()
    sink = progress.BarProgress("[3/9] archived_videos ...", stream, mininterval=0)  # every update drawn
    sink.requested()
    sink.start("videos", 2)
    sink.advance()
    sink.advance()
    sink.advance()  # more than were queued at the start: the total follows
    sink.requested()
    sink.close()
    drawn = stream.getvalue()
    assert "[3/9] archived_videos ..." in drawn and "3/3 videos" in drawn and "2 requests" in drawn
    assert drawn.endswith("\r")  # leave=False: the line is cleared for the step's summary


# -- a real run against a sandbox -----------------------------------------------------------------------------------


RUN_CONFIG = """\
limits:
  max_pages: 1
  max_videos_per_day: 6
accounts:
  - handle: alice123
    followers: false
    following: false
    comments:
      recent_videos: 2
      max_pages: 1
      reply_depth: 0
"""


def _env(tmp: Path, sandbox: SandboxServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
    env.update(
        HOME=str(tmp),
        TIKLIVE_HOME=str(tmp / "data"),
        TIKLIVE_CONFIG=str(tmp / "tiklive.yaml"),
        TIKLIVE_BASE_URL=sandbox.base_url,
        TIKLIVE_API_KEY=DEFAULT_API_KEY,
        **extra,
    )
    return env


def _fill_rate_window(home: Path, requests_per_minute: int, seconds_ago: float) -> None:
    """Spend the run's whole rate window (the sqlite backend under TIKLIVE_HOME) ``seconds_ago``, as another process
    would have: the run's next request waits for the rest of the window."""
    from pyrate_limiter import RateItem

    limiter = RateLimiter(RatePlan(requests_per_minute, 60.0), f"sqlite:///{home / 'ratelimit.sqlite'}")
    bucket = limiter._ensure().buckets()[0]
    stamp = bucket.now() - int(seconds_ago * 1000)
    for _ in range(requests_per_minute):
        assert bucket.put(RateItem("api", stamp))


def _recorded_runs(home: Path) -> list[tuple[str, set[str]]]:
    """Each run in the instance under ``home/dagster``: its job's name and the checks it evaluated."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster")))
    try:
        runs = []
        for run in instance.get_runs():
            records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            checks = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in records.records}
            runs.append((run.job_name, checks))
        return runs
    finally:
        instance.dispose()


@dataclass
class _PipedRun:
    home: Path  # TIKLIVE_HOME
    returncode: int
    out: str
    err: str
    took: float  # seconds, from the start to the end of the run


@dataclass
class _TerminalRun:
    returncode: int
    raw: bytes  # what the terminal received


def _run_piped(tmp_path: Path) -> _PipedRun:
    """``tiklive run`` with stdout and stderr pipes (as in CI), its first request meeting a spent rate window."""
    home = tmp_path / "data"
    home.mkdir()
    (tmp_path / "tiklive.yaml").write_text(RUN_CONFIG)
    # each API call 0.4 s, so every step (the six videos' details included, however parallel) outlasts several
    # progress intervals of 0.4 s, however fast the machine: a step shorter than one interval prints no line
    with SandboxServer(SandboxConfig(latency_ms=400)) as sandbox:
        started = time.monotonic()
        proc = subprocess.Popen(
            [TIKLIVE, "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path, sandbox, TIKLIVE_PROGRESS_SECONDS="0.4"),
        )
        try:
            head = []
            while not (head and head[-1].startswith("preflight ok")):  # the first request comes right after this
                line = proc.stdout.readline()
                assert line, (head, proc.poll())
                head.append(line)
            _fill_rate_window(home, 200, seconds_ago=53)  # ~7 s left in the window: the first request waits
            rest, err = proc.communicate(timeout=200)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        took = time.monotonic() - started
    return _PipedRun(home, proc.returncode, "".join(head) + rest, err, took)


def _run_on_a_terminal(tmp_path: Path) -> _TerminalRun:
    """``tiklive run`` with stdout and stderr on a pseudo-terminal 160 columns wide."""
    (tmp_path / "tiklive.yaml").write_text(RUN_CONFIG)
    with SandboxServer(SandboxConfig(latency_ms=120)) as sandbox:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal has a width
        proc = subprocess.Popen(
            [TIKLIVE, "run"],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            cwd=tmp_path,
            env=_env(tmp_path, sandbox, TERM="xterm"),
            close_fds=True,
        )
        os.close(follower)
        raw = b""
        try:
            deadline = time.monotonic() + 200
            while time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(leader, 65536)
                    except OSError:  # the run closed the terminal
                        break
                    if not chunk:
                        break
                    raw += chunk
                elif proc.poll() is not None:
                    break
            returncode = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(leader)
    return _TerminalRun(returncode, raw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[_PipedRun, _TerminalRun]:
    """The piped run and the terminal run, at the same time: each is mostly one busy process (a step, then its
    run record), so on two cores they overlap instead of queueing. Each has its own sandbox and data root."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tiklive-run") as pool:
        terminal = pool.submit(_run_on_a_terminal, tmp_path_factory.mktemp("terminal"))
        piped = pool.submit(_run_piped, tmp_path_factory.mktemp("piped"))
        return piped.result(), terminal.result()


@pytest.mark.timeout(300)  # both runs: the fixture starts them together
def test_a_piped_run_says_when_it_waits_shows_bounded_progress_and_records_its_runs_under_the_job_names(runs):
    run = runs[0]
    out, err, took = run.out, run.err, run.took
    assert run.returncode == 0, out + err
    # stdout as always: one line per step, then the summary
    steps = re.findall(r"^\[(\d)/9\] (\w+) \.\.\. done in [\d.]+s: ", out, re.MULTILINE)
    assert [name for _, name in steps] == [
        "account_profiles",
        "discovery_queue",
        "archived_videos",
        "follow_graph",
        "post_comments",
        "warehouse_tables",
        "parquet_exports",
        "marts",
        "account_csvs",
    ], out
    assert "videos captured:   6" in out
    # stderr: the wait, said once with its figures, and a few progress lines
    waits = [line for line in err.splitlines() if "for the plan's rate window" in line]
    assert len(waits) == 1 and re.fullmatch(r"  waiting \d+ s for the plan's rate window \(200/min\)", waits[0]), err
    lines = [line for line in err.splitlines() if PROGRESS_LINE.match(line)]
    assert lines, err
    assert len(lines) <= took / 0.4 + 9, (len(lines), took, err)  # at most one per interval and step
    videos = [PROGRESS_LINE.match(line) for line in lines if line.startswith("  archived_videos:")]
    assert videos and all(m.group(4) == "videos" and m.group(3) == "6" for m in videos), lines
    assert "\r" not in err  # no bar drawn into a log
    # the runs carry the job names, with the jobs' cheap checks and without the nightly ones
    recorded = _recorded_runs(run.home)
    assert sorted(job for job, _ in recorded) == ["daily_capture"] * 5 + ["daily_warehouse"] * 4, recorded
    evaluated = set().union(*(checks for _, checks in recorded))
    assert {
        "discovery_cursors_advancing",
        "dead_letter_ratio",
        "mirror_replicated",
        "posts_aweme_id_unique",
        "quarantine_ratio",
    } <= evaluated, evaluated
    assert not evaluated & {
        "restore_verification",
        "archive_days_non_empty",
        "videos_match_posts",
        "todays_partition_landed",
    }, evaluated


def _screen(raw: str) -> list[str]:
    """What a terminal shows at the end, roughly: each line as its last carriage return left it."""
    shown = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        shown.append(line.split("\r")[-1].rstrip())
    return [line for line in shown if line]


@pytest.mark.timeout(300)
def test_on_a_terminal_the_bar_stands_on_the_step_line_and_the_summary_line_stays(runs):
    run = runs[1]
    assert run.returncode == 0, run.raw.decode(errors="replace")[-3000:]
    text = run.raw.decode(errors="replace")
    assert re.search(r"archived_videos \.\.\.: +\d+%.*/6 videos", text), text  # the bar, with the day's videos
    screen = _screen(text)
    steps = [line for line in screen if re.match(r"^\[\d/9\] ", line)]
    assert len(steps) == 9 and all(re.match(r"^\[\d/9\] \w+ \.\.\. done in [\d.]+s: ", s) for s in steps), screen

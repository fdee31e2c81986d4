"""A newcomer's first hour, through the real ``tiklive`` entry point (subprocesses) against real sandbox servers:
check-key on the first tracked account, the rate-window wait said on screen, a run without framework warnings,
and the analyst's SQL shell over the marts."""

from __future__ import annotations

import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer
from tiklive_assets.tikliveapi.ratelimit import RateLimiter, RatePlan

TIKLIVE = str(Path(sys.executable).with_name("tiklive"))
WRONG_KEY = "wrong-Key-7e21c0d94ab3"


def _env(tmp: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without any TIKLIVE_ setting, HOME in the test's directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
    env["HOME"] = str(tmp)
    env.update(overrides)
    return env


def _run(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60, stdin: str | None = None):
    return subprocess.run(
        [TIKLIVE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, input=stdin
    )


def _tracking(path: Path, *accounts: str, extra: str = "") -> Path:
    listed = "".join(f"  - {a}\n" for a in accounts)
    path.write_text(("accounts:\n" + listed if accounts else "accounts: []\n") + extra)
    return path


# -- check-key -----------------------------------------------------------------------------------------------------


def test_check_key_looks_up_the_first_tracked_account(tmp_path, sandbox):
    _tracking(tmp_path / "tiklive.yaml", "bob", "alice123")
    result = _run(
        "check-key",
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_BASE_URL=sandbox.base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 0, result.stderr
    assert "key works" in result.stdout and "@bob (first tracked account in tiklive.yaml)" in result.stdout
    assert sandbox.stats()["by_endpoint"] == {"/userid/": 1, "/userinfo-by-id/": 1}


def test_check_key_without_tracked_accounts_falls_back_to_the_default_handle(tmp_path, sandbox):
    config = _tracking(tmp_path / "empty.yaml")
    result = _run(
        "check-key",
        "--config",
        str(config),
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_BASE_URL=sandbox.base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 0, result.stderr
    assert "@cristiano (default;" in result.stdout and "user 107955" in result.stdout


def test_check_key_an_unknown_handle_proves_the_key_was_accepted(tmp_path, sandbox):
    """A 404 on /userid/ is an answer the API only gives to a key it accepts: exit 0, one credit, said plainly."""
    _tracking(tmp_path / "tiklive.yaml", "nobody_has_this_handle_42")
    result = _run(
        "check-key",
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_BASE_URL=sandbox.base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "key works" in result.stdout and "accepted" in result.stdout
    assert "@nobody_has_this_handle_42" in result.stdout and "HTTP 404" in result.stdout
    assert "(1 credit(s) spent)" in result.stdout
    assert sandbox.stats()["by_status"] == {"404": 1}  # a 404 is never retried and nothing else is asked


def test_check_key_a_404_page_from_another_host_is_inconclusive(tmp_path):
    """A 404 proves the key only when the API gave it: a web server's HTML 404 page (a wrong TIKLIVE_BASE_URL)
    must not pass for an accepted key."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotTheApi(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            body = b"<html><body><h1>404 Not Found</h1></body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotTheApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = _run(
            "check-key",
            "--username",
            "bob",
            cwd=tmp_path,
            env=_env(
                tmp_path, TIKLIVE_BASE_URL=f"http://127.0.0.1:{server.server_port}", TIKLIVE_API_KEY=DEFAULT_API_KEY
            ),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not JSON" in result.stderr and "TIKLIVE_BASE_URL" in result.stderr and "key works" not in result.stdout


def test_check_key_a_wrong_key_on_the_tracked_account_exits_1_without_printing_it(tmp_path):
    _tracking(tmp_path / "tiklive.yaml", "nobody_has_this_handle_42")
    with SandboxServer(SandboxConfig(api_key="the-right-key")) as sb:
        result = _run(
            "check-key", cwd=tmp_path, env=_env(tmp_path, TIKLIVE_BASE_URL=sb.base_url, TIKLIVE_API_KEY=WRONG_KEY)
        )
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert "key rejected" in output and "HTTP 401" in output and "TIKLIVE_API_KEY" in output
        assert WRONG_KEY not in output
        assert sb.stats()["by_status"] == {"401": 1}


def test_check_key_a_forbidden_key_exits_1(tmp_path, sandbox):
    sandbox.fail_next(1, 403)
    result = _run(
        "check-key",
        "--username",
        "bob",
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_BASE_URL=sandbox.base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr and DEFAULT_API_KEY not in result.stdout + result.stderr


def test_check_key_a_server_failure_exits_2_saying_what_to_do(tmp_path, sandbox):
    sandbox.fail_next(2, 503)
    result = _run(
        "check-key",
        "--username",
        "bob",
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_BASE_URL=sandbox.base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "inconclusive" in result.stderr and "neither accepted nor rejected" in result.stderr
    assert "tiklive check-key" in result.stderr and DEFAULT_API_KEY not in result.stdout + result.stderr


# -- the rate-window wait, said before it starts -------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record):
        self.lines.append((time.monotonic(), record.getMessage()))


def _waits():
    handler = _Lines()
    logger = logging.getLogger("tiklive_assets.tikliveapi.ratelimit")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler, lambda: (logger.removeHandler(handler), logger.setLevel(old_level))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_long_wait_is_announced_once_before_it_starts_and_a_short_one_not_at_all(tmp_path, backend):
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/rl.sqlite"
    limiter = RateLimiter(RatePlan(4, 1.5), url, long_wait_seconds=0.8)
    handler, restore = _waits()
    try:
        started = time.monotonic()
        for _ in range(4):  # the plan's burst: no wait, nothing said
            limiter.acquire()
        assert handler.lines == []
        limiter.acquire()  # the window is full: ~1.6 s to its next free slot
        done = time.monotonic()
        assert done - started >= 1.5
        assert len(handler.lines) == 1
        said_at, message = handler.lines[0]
        assert message == "waiting 2 s for the plan's rate window (4 per 1.5 s)"
        assert said_at - started < 0.5  # said before blocking, not after
        short = RateLimiter(RatePlan(4, 0.5), "memory://", long_wait_seconds=5)
        for _ in range(5):
            short.acquire()
        assert len(handler.lines) == 1  # a wait below the threshold is not worth a line
    finally:
        restore()


def test_plan_describes_itself_as_people_state_it():
    assert RatePlan(200).describe() == "200/min"
    assert RatePlan(10, 2.0).describe() == "10 per 2 s"


# -- a real run: no framework warnings, the wait on screen, then the SQL shell over its marts ---------------------


SMALL_RUN = """\
limits:
  max_pages: 1
  max_videos_per_day: 2
accounts:
  - handle: alice123
    followers: false
    following: false
    comments:
      recent_videos: 1
      max_pages: 1
      reply_depth: 0
"""


def _fill_rate_window(home: Path, requests_per_minute: int, seconds_ago: float) -> None:
    """Fill the run's own rate window (the sqlite backend under TIKLIVE_HOME) as if a previous process had spent the
    whole plan ``seconds_ago``: the run's first request must then wait for the rest of the window."""
    limiter = RateLimiter(RatePlan(requests_per_minute, 60.0), f"sqlite:///{home / 'ratelimit.sqlite'}")
    bucket = limiter._ensure().buckets()[0]
    from pyrate_limiter import RateItem

    stamp = bucket.now() - int(seconds_ago * 1000)
    for _ in range(requests_per_minute):
        assert bucket.put(RateItem("api", stamp))


@pytest.mark.timeout(180)
def test_a_sandbox_run_prints_no_framework_warning_says_when_it_waits_and_sql_reads_its_marts(tmp_path):
    home = tmp_path / "data"
    home.mkdir()
    (tmp_path / "tiklive.yaml").write_text(SMALL_RUN)
    proc = subprocess.Popen(
        [TIKLIVE, "run", "--sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    try:
        head = []
        while not (head and head[-1].startswith("preflight ok")):  # the first API request comes right after this
            line = proc.stdout.readline()
            assert line, (head, proc.poll())
            head.append(line)
        # another process spent the whole plan 51 s ago: ~9 s left in the window, so the next requests wait (the
        # margin covers the step's start-up on a loaded host: below 2 s a wait is not announced)
        _fill_rate_window(home, 200, seconds_ago=51)
        rest, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    output = "".join(head) + rest + err
    assert proc.returncode == 0, output
    assert "Warning" not in output, output  # BetaWarning, SupersessionWarning, DeprecationWarning ...
    waits = [line for line in err.splitlines() if "for the plan's rate window" in line]
    assert len(waits) == 1, err
    assert waits[0].strip().startswith("waiting ") and waits[0].endswith(" s for the plan's rate window (200/min)")
    assert 2 <= int(waits[0].split()[1]) <= 10
    # the analyst's next command: the marts this run built, read-only
    query = _run(
        "sql",
        "--csv",
        "-c",
        "SELECT handle FROM follower_growth",
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_HOME=str(home)),
    )
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines() == ["handle", "alice123"]


# -- tiklive sql ---------------------------------------------------------------------------------------------------


@pytest.fixture
def marts(tmp_path) -> Path:
    """A marts file shaped like the real one: views over a Parquet file."""
    import duckdb

    home = tmp_path / "data"
    home.mkdir()
    parquet = tmp_path / "growth.parquet"
    with duckdb.connect() as con:
        con.execute(f"""COPY (SELECT * FROM (VALUES ('alice123', 76942, NULL), ('bob', 143127, 12))
                        t(handle, followers, follower_delta)) TO '{parquet}' (FORMAT parquet)""")
    with duckdb.connect(str(home / "marts.duckdb")) as con:
        con.execute(f"CREATE VIEW follower_growth AS SELECT * FROM read_parquet('{parquet}')")
        con.execute("CREATE VIEW top_hashtags AS SELECT 'cats' AS hashtag, 82 AS posts")
    return home


def test_sql_one_shot_prints_a_table_or_csv(tmp_path, marts):
    env = _env(tmp_path, TIKLIVE_HOME=str(marts))
    table = _run(
        "sql",
        "-c",
        "SELECT handle, followers, follower_delta FROM follower_growth ORDER BY handle",
        cwd=tmp_path,
        env=env,
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "handle   | followers | follower_delta",
        "---------+-----------+---------------",
        "alice123 |     76942 |           NULL",
        "bob      |    143127 |             12",
        "(2 rows)",
    ]
    as_csv = _run(
        "sql",
        "--csv",
        "--home",
        str(marts),
        "-c",
        "SELECT * FROM follower_growth ORDER BY handle",
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines() == ["handle,followers,follower_delta", "alice123,76942,", "bob,143127,12"]


def test_sql_one_shot_error_exits_1_without_a_traceback(tmp_path, marts):
    env = _env(tmp_path, TIKLIVE_HOME=str(marts))
    bad = _run("sql", "-c", "SELECT nope FROM follower_growth", cwd=tmp_path, env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: Binder Error") and "nope" in bad.stderr
    assert "Traceback" not in bad.stderr
    write = _run("sql", "-c", "CREATE TABLE x AS SELECT 1", cwd=tmp_path, env=env)
    assert write.returncode == 1 and "read-only" in write.stderr  # the marts cannot be changed from here


def test_sql_without_marts_says_how_to_get_them(tmp_path):
    result = _run("sql", "-c", "SELECT 1", cwd=tmp_path, env=_env(tmp_path, TIKLIVE_HOME=str(tmp_path / "none")))
    assert result.returncode == 1
    assert "no marts at" in result.stderr and "tiklive run --sandbox" in result.stderr


def test_sql_shell_reads_statements_and_commands_from_stdin(tmp_path, marts):
    script = (
        "\n".join(
            [
                ".tables",
                "SELECT handle,",
                "       followers",
                "FROM follower_growth WHERE handle = 'bob';",
                "SELEC 1;",
                ".mode csv",
                "SELECT * FROM top_hashtags;",
                ".mode xml",
                ".schema top_hashtags",
                ".quit",
                "SELECT 'never reached';",
            ]
        )
        + "\n"
    )
    result = _run("sql", cwd=tmp_path, env=_env(tmp_path, TIKLIVE_HOME=str(marts)), stdin=script)
    assert result.returncode == 1  # piped input with a failed statement: scripts see the failure
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["follower_growth", "top_hashtags"]
    assert lines[1:5] == ["handle | followers", "-------+----------", "bob    |    143127", "(1 row)"]
    assert lines[5:7] == ["hashtag,posts", "cats,82"]
    assert lines[7].startswith("column_name") and "hashtag     | VARCHAR" in result.stdout
    assert "never reached" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and "syntax error" in errors[0] and "unknown mode 'xml'" in errors[1]
    assert "Traceback" not in result.stderr
    ok = _run("sql", cwd=tmp_path, env=_env(tmp_path, TIKLIVE_HOME=str(marts)), stdin="SELECT 42 AS answer;\n")
    assert ok.returncode == 0 and "42" in ok.stdout


@pytest.mark.timeout(60)
def test_sql_shell_in_a_terminal_prompts_and_keeps_its_history(tmp_path, marts):
    """In a real pseudo-terminal: the prompt, continuation lines, and ~/.tiklive_sql_history written on .quit."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [TIKLIVE, "sql"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env=_env(tmp_path, TIKLIVE_HOME=str(marts), TERM="dumb"),
        close_fds=True,
    )
    os.close(follower)
    seen = b""

    def read_until(marker: bytes, timeout: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(leader, 4096)
                except OSError:
                    break

    try:
        read_until(b"tiklive> ")
        assert b"read-only" in seen
        os.write(leader, b"SELECT count(*) AS n\r")
        read_until(b"...> ")
        os.write(leader, b"FROM follower_growth;\r")
        read_until(b"(1 row)")
        os.write(leader, b".quit\r")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    history = (tmp_path / ".tiklive_sql_history").read_text()
    assert "SELECT count(*) AS n" in history and "FROM follower_growth;" in history

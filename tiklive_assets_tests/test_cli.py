"""The ``tiklive`` command, run as a real subprocess (the venv's entry point) against real sandbox servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer

TIKLIVE = str(Path(sys.executable).with_name("tiklive"))
WRONG_KEY = "wrong-Key-7e21c0d94ab3"


def _env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKLIVE_")}
    for key, value in overrides.items():
        if value is not None:
            env[key] = value
    return env


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([TIKLIVE, *args], capture_output=True, text=True, env=env or _env(), timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_entry_point_exists():
    assert Path(TIKLIVE).is_file(), f"{TIKLIVE} missing: is the package installed in this venv?"


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), ["run", "sandbox", "check-key", "TIKLIVE_API_KEY", "TIKLIVE_BASE_URL"]),
        (("run",), ["--date", "--sandbox", "--config", "--home"]),
        (("sandbox",), ["--port", "--api-key", "--rate-limit", "--error-rate"]),
        (("check-key",), ["--username", "--base-url", "TIKLIVE_API_KEY"]),
    ],
)
def test_help_exits_zero_and_documents_the_options(args, expected):
    result = _run(*args, "--help")
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


def test_unknown_command_exits_2():
    result = _run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_check_key_against_the_sandbox_spends_two_credits(sandbox):
    result = _run(
        "check-key",
        "--username",
        "cristiano",
        env=_env(TIKLIVE_BASE_URL=sandbox.base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 0, result.stderr
    assert "key works" in result.stdout
    assert "@cristiano is user 107955" in result.stdout
    assert "(2 credits spent)" in result.stdout
    stats = sandbox.stats()
    assert stats["by_endpoint"] == {"/userid/": 1, "/userinfo-by-id/": 1}
    assert stats["by_status"] == {"200": 2}


def test_check_key_with_a_wrong_key_exits_1_without_printing_it():
    with SandboxServer(SandboxConfig(api_key="the-right-key")) as sb:
        result = _run("check-key", env=_env(TIKLIVE_BASE_URL=sb.base_url, TIKLIVE_API_KEY=WRONG_KEY))
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert "TIKLIVE_API_KEY" in output
        assert WRONG_KEY not in output
        assert sb.stats()["by_status"] == {"401": 1}  # rejected keys are never retried


def test_check_key_without_a_key_exits_1_before_any_request(sandbox):
    result = _run("check-key", env=_env(TIKLIVE_BASE_URL=sandbox.base_url))
    assert result.returncode == 1
    assert "TIKLIVE_API_KEY is not set" in result.stderr
    assert sandbox.stats()["api_requests"] == 0


def test_check_key_base_url_flag_overrides_the_environment(sandbox):
    result = _run(
        "check-key",
        "--base-url",
        sandbox.base_url,
        "--username",
        "bob",
        env=_env(TIKLIVE_BASE_URL=f"http://127.0.0.1:{_free_port()}", TIKLIVE_API_KEY=DEFAULT_API_KEY),
    )
    assert result.returncode == 0, result.stderr
    assert "@bob is user 6800000000000000002" in result.stdout
    assert sandbox.stats()["api_requests"] == 2


@pytest.mark.timeout(60)
def test_sandbox_command_serves_the_api_and_check_key_works_against_it():
    port = _free_port()
    proc = subprocess.Popen(
        [TIKLIVE, "sandbox", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    try:
        first = proc.stdout.readline()  # printed once the socket is bound and about to serve
        assert f"listening on http://127.0.0.1:{port}" in first, (first, proc.poll())
        base_url = f"http://127.0.0.1:{port}"
        response = requests.get(
            f"{base_url}/userid/", params={"username": "cristiano"}, headers={"X-Api-Key": DEFAULT_API_KEY}, timeout=10
        )
        assert response.status_code == 200
        assert response.json() == {"id": "107955"}
        result = _run("check-key", env=_env(TIKLIVE_BASE_URL=base_url, TIKLIVE_API_KEY=DEFAULT_API_KEY))
        assert result.returncode == 0, result.stderr
        assert "(2 credits spent)" in result.stdout
        stats = requests.get(f"{base_url}/__sandbox__/stats/", timeout=10).json()
        assert stats["by_endpoint"] == {"/userid/": 2, "/userinfo-by-id/": 1}
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_research_command_is_dispatched(tmp_path, capsys):
    from tiklive_assets.cli import main

    code = main(
        [
            "research",
            "--sandbox",
            "--no-progress",
            "--users",
            "tagesschau",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-31",
            "--home",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert "tagesschau" in capsys.readouterr().out


def test_replay_reports_quarantined_objects_loads_the_rest_and_fails_only_on_damaged_bytes(
    tmp_path: Path, monkeypatch, capsys
):
    from datetime import date

    from tiklive_assets.cli import main
    from tiklive_assets.sandbox import Corpus
    from tiklive_assets.storage import LocalStore
    from tiklive_assets_tests.support.archive import put_raw, write_archive_day

    day = date(2026, 5, 29)
    store = LocalStore(tmp_path / "archive")
    write_archive_day(store, day, Corpus(clock=lambda: 1780056000.0))
    put_raw(store, day, "post-detail", "7000000000000000123", b'{"aweme_id": "7000000000000000123", "play')
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    monkeypatch.delenv("TIKLIVE_WAREHOUSE_URL", raising=False)
    assert main(["replay", "--from", str(day), "--to", str(day)]) == 0  # one odd object never fails a day
    captured = capsys.readouterr()
    assert "1 object(s) quarantined" in captured.err and "post-detail/7000000000000000123" in captured.err
    assert "posts" in captured.out
    import duckdb

    def rows() -> int:
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
            return db.execute("SELECT count(*) FROM post_metrics_history WHERE source = 'post-detail'").fetchone()[0]

    before = rows()
    detail = next(  # a post's detail (not a 404 answer, whose slug has a suffix), in name order on any filesystem
        p
        for p in sorted((store.root / "tiklive-raw/2026/05/29/post-detail").glob("7*.json.gz"))
        if "7000000000000000123" not in p.name and "-" not in p.name
    )
    detail.write_bytes(b"not gzip at all")  # an object that fed rows is damaged
    assert main(["replay", "--from", str(day), "--to", str(day)]) == 1
    err = capsys.readouterr().err
    assert "damaged (not gzip)" in err and "left as it was" in err and detail.name in err
    assert rows() == before  # the day kept its rows
    assert main(["replay", "--from", str(day), "--to", str(day), "--force"]) == 1
    assert rows() < before  # forced: replaced from what is readable


def test_cursors_forget_user_clears_a_cached_user_id(tmp_path: Path):
    from tiklive_assets.state import StateDB

    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        state.cache_user_id("alice123", "6800000000000000001")
    result = _run("cursors", "forget-user", "@alice123", "--home", str(tmp_path))
    assert result.returncode == 0 and "6800000000000000001 cleared" in result.stdout
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        assert state.cached_user_id("alice123") is None
    again = _run("cursors", "forget-user", "alice123", "--home", str(tmp_path))
    assert again.returncode == 0 and "nothing to clear" in again.stdout

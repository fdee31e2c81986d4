"""`tiklive status`: the queue, claims by owner (alive or stale), what is left and why, walks in progress, dead
letters, today's credits; read-only, exit 0."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tiklive_assets.cli import main
from tiklive_assets.state import ClaimOwner, StateDB


def _home_with_everything(home: Path) -> None:
    today = datetime.now(UTC).date()
    with StateDB.from_url(f"sqlite:///{home / 'state.sqlite'}") as db:
        db.enqueue([(str(n), "hashtag:1001", None) for n in range(1, 6)])
        live = ClaimOwner.this_process("run-live-0001", 10)
        db.register_owner(live)
        db.claim_pending(1, owner=live)  # id 1: held by this (live) process
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        dead = dataclasses.replace(ClaimOwner.this_process("run-killed-02", 10), pid=proc.pid, pid_start=None)
        db.register_owner(dead)
        db.claim_pending(1, owner=dead)  # id 2: claimed by a killed run
        db.note_failure("3", "DownloadFailed: CDN answered HTTP 500")
        db.mark_downloaded("4")
        db.mark_dead("5", "video deleted", 404)
        db.set_cursor(f"challenge-posts:1001:{today}", "30", 1)  # a walk of today, not complete
        db.set_cursor(f"user-posts:77:{today}", "0", 1, values={f"complete:user-posts:77:{today}": "1"})
        db.reserve_credit(today, "/post-detail/", None)


def test_status_names_everything_left_behind_and_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / "home"
    _home_with_everything(home)
    assert main(["status", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "queue: pending 3, resolved 0, downloaded 1, dead 1" in out
    assert "ALIVE run run-live-0001" in out and "STALE run run-killed-02" in out and "process gone" in out
    assert "left pending or claimed: 3" in out
    assert "1 (pending, 1 attempt(s)): held by a live run" in out
    assert "2 (pending, 1 attempt(s)): claimed by a run that stopped" in out
    assert "3 (pending, 0 attempt(s)): failed 0 time(s): DownloadFailed" in out
    assert "challenge-posts:1001:" in out and "user-posts:77:" not in out  # only walks not complete
    assert "dead letters: video deleted: 1" in out
    assert "credits today" in out and "/post-detail/ 1" in out


def test_status_of_an_empty_home_and_its_help(tmp_path, capsys):
    assert main(["status", "--home", str(tmp_path / "fresh")]) == 0
    assert "left pending or claimed: 0" in capsys.readouterr().out
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from tiklive_assets.cli import main; sys.exit(main())", "status", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    for words in ("claims by owner", "dead letters", "credits", "DAGSTER_HOME", "--ids", "--home"):
        assert words in " ".join(proc.stdout.split()), words


def test_status_reads_the_last_runs_from_the_instance_tiklive_run_keeps(tmp_path, capsys, monkeypatch):
    """Without DAGSTER_HOME, the instance is TIKLIVE_HOME/dagster, where `tiklive run` and `tiklive ui` record."""
    import dagster as dg

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / "home"
    _home_with_everything(home)
    assert main(["status", "--home", str(home)]) == 0
    assert "last runs: none recorded yet" in capsys.readouterr().out

    @dg.asset(name="archived_videos")
    def archived_videos() -> None:
        return None

    (home / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home / "dagster")) as instance:
        run_id = dg.materialize([archived_videos], instance=instance).run_id
    assert main(["status", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id[:8]}" in out and "discovery_queue    never" in out

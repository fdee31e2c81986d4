"""`tiklive run` evaluates the assets' cheap checks and its summary lists every one that failed."""

import os
import subprocess
import sys
from pathlib import Path

from tiklive_assets.state import StateDB


def test_tiklive_run_lists_a_failing_cheap_check_in_its_summary(tmp_path):
    home, config = tmp_path / "home", tmp_path / "tiklive.yaml"
    config.write_text(
        "plan: {requests_per_minute: 100000}\n"
        "limits: {max_pages: 1, max_videos_per_day: 2}\n"
        "accounts:\n  - handle: bob\n    follow_max_pages: 1\n    comments: {recent_videos: 1, max_pages: 1}\n"
    )
    home.mkdir()
    state = StateDB.from_url(f"sqlite:///{home / 'state.sqlite'}")
    try:  # an earlier day left ten dead letters: far over the ratio the dead_letter_ratio check allows
        ids = [f"73100000000000000{i:02d}" for i in range(10)]
        state.enqueue([(i, "test", "bob") for i in ids])
        for i in ids:
            state.mark_dead(i, "video not found (deleted)", 404)
    finally:
        state.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
    env.update(TIKLIVE_HOME=str(home), TIKLIVE_CONFIG=str(config), TIKLIVE_RATELIMIT_URL="memory://")
    tiklive = Path(sys.executable).parent / "tiklive"
    run = subprocess.run([str(tiklive), "run", "--sandbox"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]  # the data landed: the steps succeeded
    summary = run.stdout[run.stdout.index("summary for") :]
    assert "FAILED checks:     1" in summary, summary
    [line] = [line for line in summary.splitlines() if "dead_letter_ratio on archived_videos" in line]
    assert "dead_letter_ratio: 0.8" in line or "dead_letter_ratio: 0.9" in line or "dead_letter_ratio: 1.0" in line, (
        line
    )
    assert "all passed" not in summary

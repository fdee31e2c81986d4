"""Drift is surfaced (failed check naming endpoint and cursor) and reset to a known-good value."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from tiklive_assets.capture.cursors import cursor_statuses, reset_cursor
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.capture.checks import discovery_cursors_advancing
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
)
from tiklive_assets.sandbox import DEFAULT_API_KEY
from tiklive_assets.state import StateDB


def test_stuck_cursor_is_detected_and_reset(tmp_path):
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    scope = "user-posts:107955:2026-11-24"
    for value in ("1700000000000", "1690000000000", "1690000000000", "1690000000000"):
        state.set_cursor(scope, value, 1)
    [status] = cursor_statuses(state)
    assert status.stuck and status.value == "1690000000000"
    assert reset_cursor(state, scope, back=3) == "1700000000000"
    assert state.get_cursor(scope).value == "1700000000000"
    assert not cursor_statuses(state)[0].stuck
    with pytest.raises(KeyError):
        reset_cursor(state, "user-posts:nope:2026-11-24", "0")


def test_drifting_paginator_fails_the_check_with_endpoint_and_cursor(sandbox, tmp_path):
    config = tmp_path / "tiklive.yaml"
    config.write_text(
        "plan: {requests_per_minute: 100000}\nlimits: {max_pages: 5, max_videos_per_day: 500}\nhashtags: ['1001']\n"
    )
    resources = {
        "tiklive_api": TikLiveApiResource(
            api_key=DEFAULT_API_KEY, base_url=sandbox.base_url, ratelimit_url="memory://"
        ),
        "archive_store": ArchiveStoreResource(local_root=str(tmp_path / "archive")),
        "data_root": DataRootResource(home=str(tmp_path)),
        "tracking": TrackingConfigResource(path=str(config)),
    }
    sandbox.set_drift("/challenge-posts/")
    today = datetime.now(UTC).date().isoformat()
    result = dg.materialize(
        [*CAPTURE_ASSETS, discovery_cursors_advancing],
        selection=dg.AssetSelection.assets("discovery_queue"),
        partition_key=today,
        resources=resources,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    [drifting] = evaluation.metadata["drifting"].value
    assert drifting["scope"] == f"challenge-posts:1001:{today}" and "challenge-posts" in drifting["why"]
    assert sandbox.stats()["by_endpoint"]["/challenge-posts/"] <= 2  # stopped within its page limit

    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    reset_cursor(state, drifting["scope"], "0")
    assert not cursor_statuses(state)[0].drift


def test_cursors_command_lists_and_resets(tmp_path, capsys):
    from tiklive_assets.cli import main

    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    scope = "music-posts:9001:2026-11-24"
    for value in ("30", "60", "60", "60"):
        state.set_cursor(scope, value, 2)
    assert main(["cursors", "list", "--home", str(tmp_path)]) == 1  # a stuck cursor makes `list` exit non-zero
    assert "STUCK" in capsys.readouterr().out
    assert main(["cursors", "reset", scope, "--back", "3", "--home", str(tmp_path)]) == 0
    assert "reset to '30'" in capsys.readouterr().out
    assert state.get_cursor(scope).value == "30"
    assert main(["cursors", "list", "--prefix", "music-posts", "--home", str(tmp_path)]) == 0
    assert main(["cursors", "reset", "nope:1:2026-11-24", "--value", "0", "--home", str(tmp_path)]) == 2

"""Daily partitions start on the project's first day (TIKLIVE_FIRST_DAY), read at import without opening a file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tiklive_assets.defs.partitions import DEFAULT_FIRST_DAY, first_day


def test_first_day_defaults_and_reads_the_variable() -> None:
    assert first_day({}) == DEFAULT_FIRST_DAY
    assert first_day({"TIKLIVE_FIRST_DAY": ""}) == DEFAULT_FIRST_DAY
    assert first_day({"TIKLIVE_FIRST_DAY": " 2026-11-20 "}) == "2026-11-20"


def test_a_bad_first_day_names_the_variable_and_the_format() -> None:
    with pytest.raises(ValueError, match=r"TIKLIVE_FIRST_DAY='2026-13-01' is not a date.*YYYY-MM-DD"):
        first_day({"TIKLIVE_FIRST_DAY": "2026-13-01"})


def test_the_loaded_definitions_start_on_the_first_day(tmp_path) -> None:
    """Every daily asset (capture and warehouse) starts there, in a fresh process as the webserver loads them;
    the working directory has no tiklive.yaml, so nothing is read from disk."""
    code = (
        "from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS\n"
        "from tiklive_assets.defs.warehouse.assets import WAREHOUSE_ASSETS\n"
        "starts = {a.partitions_def.get_first_partition_key() for a in CAPTURE_ASSETS + WAREHOUSE_ASSETS}\n"
        "print(sorted(starts))\n"
    )
    env = {**os.environ, "TIKLIVE_FIRST_DAY": "2026-11-20", "TIKLIVE_CONFIG": str(tmp_path / "missing.yaml")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['2026-11-20']"

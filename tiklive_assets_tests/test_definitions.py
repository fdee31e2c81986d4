"""The code location loads the way production loads it: from the source tree, through `dagster` itself."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_dagster_definitions_validate_from_the_source_tree():
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "tiklive_assets.definitions"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_every_domain_contributes_and_nothing_is_missing():
    from tiklive_assets.definitions import defs

    definitions = defs()
    repo = definitions.get_repository_def()
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {"daily_capture", "capture_new_videos", "janitor_job", "nightly_verification"} <= jobs
    schedules = {s.name for s in definitions.schedules}
    assert {"daily_capture_schedule", "hourly_janitor_schedule", "nightly_verification_schedule"} <= schedules
    sensors = {s.name for s in definitions.sensors}
    assert {"new_posts_sensor", "pending_queue_sensor", "run_failure_alert", "failed_check_alert"} <= sensors
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert {"archived_videos", "discovery_queue", "warehouse/posts", "exports/parquet"} <= keys


def test_the_warehouses_never_import_the_clients():
    """STYLE.md: the warehouse parses archived objects only; importing a client is the first sign it is not replayable."""
    code = (
        "import sys, tiklive_assets.warehouse, tiklive_assets.research.warehouse, tiklive_assets.verification.restore;"
        "bad = [m for m in sys.modules if m.startswith(('tiklive_assets.tikliveapi', 'tiklive_assets.research.client',"
        " 'tiklive_assets.sandbox', 'tiklive_assets.defs'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_composition_roots_import_defs():
    """STYLE.md: defs/ wires everything together; nothing but definitions.py, defs/ and the CLI imports it."""
    package = REPO / "tiklive_assets"
    offenders = [
        str(path.relative_to(REPO))
        for path in package.rglob("*.py")
        if "tiklive_assets.defs" in path.read_text()
        and not path.is_relative_to(package / "defs")
        and not path.is_relative_to(package / "cli")
        and path != package / "definitions.py"
    ]
    assert offenders == []

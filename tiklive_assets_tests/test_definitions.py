"""The code location loads the way production loads it: from the source tree, through `dagster` itself."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_dagster_definitions_validate_from_the_source_tree():
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "tiklive_assets.definitions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
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
    assert {
        "archived_videos",
        "discovery_queue",
        "warehouse_posts",
        "parquet_exports",
        "account_csvs",
        "mart_follower_growth",
    } <= keys


def test_the_warehouses_never_import_the_clients():
    """STYLE.md: the warehouse parses archived objects only; importing a client is the first sign it is not replayable.
    The endpoint declarations are the one exception: pure data (which parser reads which endpoint), no client."""
    code = (
        "import sys, tiklive_assets.warehouse, tiklive_assets.research.warehouse, tiklive_assets.verification.restore;"
        "allowed = {'tiklive_assets.tikliveapi', 'tiklive_assets.tikliveapi.endpoints'};"
        "bad = [m for m in sys.modules if m.startswith(('tiklive_assets.tikliveapi', 'tiklive_assets.research.client',"
        " 'tiklive_assets.sandbox', 'tiklive_assets.defs')) and m not in allowed];"
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


# -- what the data team reads in the UI --

BARE_ENDPOINT = re.compile(r"(?<![\w.])/[a-z]+(?:-[a-z]+)+/")  # e.g. a raw API path such as /post-detail/
INTERNAL_DOC = re.compile(r"\bseeds?[ _-]?0\d\d\b", re.IGNORECASE)  # a project document, not a random seed


def _graph(env: dict[str, str] | None = None) -> dict:
    """The catalog as a fresh process loads it under ``env`` (kinds follow the environment at load time)."""
    code = (
        "import json; from tiklive_assets.definitions import defs; d = defs(); r = d.get_repository_def();"
        "print(json.dumps({k.to_user_string(): {'kinds': sorted(a.specs_by_key[k].kinds),"
        " 'owners': a.specs_by_key[k].owners, 'tags': dict(a.specs_by_key[k].tags),"
        " 'group': a.specs_by_key[k].group_name, 'description': a.specs_by_key[k].description or '',"
        " 'columns': [c.name for c in getattr(a.specs_by_key[k].metadata.get('dagster/column_schema'), 'columns', [])],"
        " 'freshness': type(a.specs_by_key[k].freshness_policy).__name__} for k, a in r.assets_defs_by_key.items()}))"
    )
    import json
    import os

    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_asset_has_an_owner_tags_and_a_description_that_stands_alone():
    graph = _graph()
    for key, asset in graph.items():
        assert asset["owners"] == ["team:data-engineering"], key
        assert asset["tags"]["domain"] == "tiktok" and asset["tags"]["layer"], key
        assert len(asset["description"]) > 30, key
        assert not INTERNAL_DOC.search(asset["description"]), key
        assert not BARE_ENDPOINT.search(asset["description"]), (key, asset["description"])
        assert "/" not in key, f"{key}: asset names stand alone, without a prefix"
    layers = {key: asset["tags"]["layer"] for key, asset in graph.items()}
    assert layers["archived_videos"] == "raw" and layers["warehouse_posts"] == "warehouse"
    assert layers["parquet_exports"] == "export" and layers["mart_follower_growth"] == "mart"


def test_kinds_follow_the_configured_backends():
    embedded = _graph({"TIKLIVE_ARCHIVE_BUCKET": "", "TIKLIVE_WAREHOUSE_URL": ""})
    assert embedded["archived_videos"]["kinds"] == ["local-disk", "tikliveapi"]
    assert embedded["warehouse_posts"]["kinds"] == ["duckdb"]
    production = _graph({"TIKLIVE_ARCHIVE_BUCKET": "tiklive", "TIKLIVE_WAREHOUSE_URL": "postgresql://db/warehouse"})
    assert production["archived_videos"]["kinds"] == ["s3", "tikliveapi"]
    assert production["warehouse_posts"]["kinds"] == ["postgres"]
    assert production["research_tables"]["kinds"] == ["postgres"]
    r2 = _graph(
        {"TIKLIVE_ARCHIVE_BUCKET": "tiklive", "TIKLIVE_S3_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com"}
    )
    assert r2["discovery_queue"]["kinds"] == ["r2", "tikliveapi"]
    for graph in (embedded, production, r2):
        assert not any(kind in ("archive", "warehouse") for a in graph.values() for kind in a["kinds"])


def test_tables_carry_their_column_schema_and_daily_assets_their_freshness():
    from tiklive_assets.warehouse import TABLES

    graph = _graph()
    from tiklive_assets.warehouse import MART_COLUMNS, MART_DESCRIPTIONS

    for table in TABLES:
        assert graph[f"warehouse_{table.name}"]["columns"] == table.column_names
    for mart, columns in MART_COLUMNS.items():
        assert graph[f"mart_{mart}"]["columns"] == [name for name, _, _ in columns]
        assert graph[f"mart_{mart}"]["description"] == MART_DESCRIPTIONS[mart]
        assert "one row per" in MART_DESCRIPTIONS[mart].lower()  # the grain, stated
    for key, asset in graph.items():
        if asset["group"] in ("capture", "warehouse"):
            assert asset["freshness"] == "CronFreshnessPolicy", key


def test_every_job_schedule_sensor_and_check_is_described_for_the_data_team():
    from tiklive_assets.definitions import defs

    definitions = defs()
    repo = definitions.get_repository_def()
    described = [(f"job {job.name}", job.description) for job in repo.get_all_jobs() if not job.name.startswith("__")]
    described += [(f"schedule {s.name}", s.description) for s in repo.schedule_defs]
    described += [(f"sensor {s.name}", s.description) for s in repo.sensor_defs]
    described += [
        (f"check {spec.key.to_user_string()}", spec.description)
        for checks in repo.asset_checks_defs_by_key.values()
        for spec in checks.check_specs
    ]
    missing = [name for name, text in described if not text or len(text) < 30]
    assert missing == []
    cites = [name for name, text in described if INTERNAL_DOC.search(text) or BARE_ENDPOINT.search(text)]
    assert cites == []

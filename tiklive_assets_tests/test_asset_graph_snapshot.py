"""The asset graph as a reviewed file: a change to keys, groups, partitions, dependencies, checks, kinds, owners
or tags shows up as a diff of ``snapshots/asset_graph.json`` in the pull request, not as a surprise in the UI.

After an intended change: ``TIKLIVE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest
tiklive_assets_tests/test_asset_graph_snapshot.py``, then review and commit the new file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
# The embedded deployment's graph (kinds follow the backends, so the snapshot fixes them), with a fixed first day
ENV = {
    "TIKLIVE_ARCHIVE_BUCKET": "",
    "TIKLIVE_WAREHOUSE_URL": "",
    "TIKLIVE_S3_ENDPOINT_URL": "",
    "TIKLIVE_FIRST_DAY": "2026-05-01",
}

DUMP = r"""
import json
from tiklive_assets.definitions import defs

repo = defs().get_repository_def()
graph = repo.asset_graph
assets = {}
for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
    node = graph.get(key)
    spec = repo.assets_defs_by_key[key].specs_by_key[key]
    partitions = node.partitions_def
    assets[key.to_user_string()] = {
        "group": node.group_name,
        "partitions": None if partitions is None else {
            "type": type(partitions).__name__, "start": partitions.start.date().isoformat(),
            "cron": partitions.cron_schedule, "end_offset": partitions.end_offset},
        "deps": sorted(dep.to_user_string() for dep in node.parent_keys),
        "checks": sorted(check.name for check in node.check_keys),
        "kinds": sorted(spec.kinds),
        "owners": list(spec.owners),
        "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith("dagster/kind/")},
        "freshness": type(spec.freshness_policy).__name__ if spec.freshness_policy else None,
        "backfill_policy": str(node.backfill_policy.policy_type.value) if node.backfill_policy else None,
    }
jobs = sorted(job.name for job in repo.get_all_jobs() if not job.name.startswith("__"))
print(json.dumps({"assets": assets, "jobs": jobs,
                  "schedules": sorted((s.name, s.cron_schedule, s.job_name) for s in repo.schedule_defs),
                  "sensors": sorted(s.name for s in repo.sensor_defs)}, indent=2, sort_keys=True))
"""


def current_graph() -> str:
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", DUMP],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **ENV},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_asset_graph_matches_its_reviewed_snapshot():
    graph = current_graph()
    if os.environ.get("TIKLIVE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(graph)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with TIKLIVE_UPDATE_SNAPSHOTS=1 to write {SNAPSHOT}"
    expected = json.loads(SNAPSHOT.read_text())
    actual = json.loads(graph)
    changed = sorted(
        k
        for k in expected["assets"].keys() | actual["assets"].keys()
        if expected["assets"].get(k) != actual["assets"].get(k)
    )
    assert actual == expected, (
        f"the asset graph changed (assets: {', '.join(changed) or 'none'}; or jobs/schedules/sensors). If intended, "
        "rerun with TIKLIVE_UPDATE_SNAPSHOTS=1 and commit tiklive_assets_tests/snapshots/asset_graph.json"
    )

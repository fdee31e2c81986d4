"""``tiklive run``: materialize one day's pipeline in-process, step by step with progress, then summarize it.

The same assets and resources the daily schedule materializes; only the instance differs (a SQLite instance under
``TIKLIVE_HOME/dagster`` unless ``DAGSTER_HOME`` names one).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import date

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.config import ConfigError, load_config
from tiklive_assets.defs.archive.assets import CAPTURE_ASSETS
from tiklive_assets.defs.resources import default_resources

STEPS = CAPTURE_ASSETS


def _instance(root: settings.DataRoot) -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    path = root.home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(tempdir=str(path))


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    out: dict = {}
    for event in result.get_asset_materialization_events():
        for key, value in event.materialization.metadata.items():
            out[key] = getattr(value, "value", value)
    return out


def run_day(day: date, *, started: float | None = None, out=sys.stdout) -> int:
    started = started or time.monotonic()
    root = settings.DataRoot.from_env()
    try:
        config = load_config(settings.config_path())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"capturing {day} into {root.home}: {len(config.accounts)} accounts, {len(config.hashtags)} hashtags, "
          f"{len(config.keywords)} keywords, {len(config.music)} sounds", file=out)
    resources = default_resources()
    instance = _instance(root)
    totals: dict[str, dict] = {}
    failed: list[str] = []
    for number, asset in enumerate(STEPS, start=1):
        name = asset.key.to_user_string()
        step_start = time.monotonic()
        print(f"[{number}/{len(STEPS)}] {name} ...", end="", flush=True, file=out)
        result = dg.materialize(
            STEPS, selection=[asset.key], partition_key=day.isoformat(), resources=resources,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            instance=instance, raise_on_error=False, tags={"tiklive/launched_by": "cli"},
        )
        metadata = _metadata(result)
        totals[name] = metadata
        took = time.monotonic() - step_start
        if result.success:
            print(f" done in {took:.1f}s: {metadata.get('credits_spent', 0)} credits, "
                  f"{metadata.get('objects_written', 0)} objects written", file=out)
        else:
            failed.append(name)
            print(f" FAILED in {took:.1f}s", file=out)
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                    error = event.step_failure_data.error
                    print(f"    {error.cause.message.strip() if error.cause else error.message.strip()}", file=out)
    _summary(day, root, totals, failed, time.monotonic() - started, out)
    return 1 if failed else 0


def _summary(day: date, root: settings.DataRoot, totals: dict, failed: list[str], took: float, out) -> None:
    videos = totals.get("archived_videos", {})
    credits = sum(int(m.get("credits_spent", 0) or 0) for m in totals.values())
    dead = videos.get("dead_letters_by_reason") or {}
    print("", file=out)
    print(f"summary for {day} ({took:.1f}s):", file=out)
    print(f"  videos captured:   {videos.get('videos_downloaded', 0)} "
          f"({videos.get('video_bytes', 0) / 1e6:.1f} MB, {videos.get('re_resolved_expired_urls', 0)} expired URLs re-resolved)", file=out)
    print(f"  new ids queued:    {totals.get('discovery_queue', {}).get('new_ids', 0)}", file=out)
    print(f"  credits spent:     {credits}", file=out)
    print(f"  dead letters:      {sum(dead.values())}" + (f" ({', '.join(f'{r}: {n}' for r, n in dead.items())})" if dead else ""), file=out)
    archive = next((m.get("archive") for m in totals.values() if m.get("archive")), str(root.archive))
    print(f"  raw archive:       {archive}/tiklive-raw/{day:%Y/%m/%d}/", file=out)
    print(f"  videos and covers: {archive}/videos/dt={day}/ and {archive}/covers/dt={day}/", file=out)
    print(f"  state database:    {root.state_url}", file=out)
    if failed:
        print(f"  FAILED steps:      {', '.join(failed)} (see the messages above; rerun to resume)", file=out)

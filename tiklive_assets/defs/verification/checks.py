"""Asset checks of the archive and warehouse. Cheap ones travel with their assets; heavy ones run nightly.

Failures list what failed (keys, tables, days) in their metadata and reach the alert sensor.
"""

import os
import time
from datetime import UTC, datetime

import dagster as dg

from tiklive_assets.defs.archive.assets import archived_videos, discovery_queue
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource
from tiklive_assets.defs.warehouse.assets import DUCKDB_POOL  # checks that open the warehouse queue with its writers
from tiklive_assets.defs.warehouse.resources import WarehouseResource
from tiklive_assets.verification.integrity import due_day, duplicate_post_ids, empty_archive_days, video_consistency
from tiklive_assets.verification.restore import verify_random_day

POSTS = dg.AssetKey(["warehouse", "posts"])
RESTORE_TOLERANCE = float(os.environ.get("TIKLIVE_RESTORE_TOLERANCE", "0"))  # relative, per table
LANDED_BY_HOUR = int(os.environ.get("TIKLIVE_LANDED_BY_HOUR", "6"))  # UTC hour today's capture must have landed by
WINDOW_DAYS = 30


@dg.asset_check(asset=POSTS, blocking=False, pool=DUCKDB_POOL, description="aweme_id is unique in posts (cheap; runs with the table).")
def posts_aweme_id_unique(data_root: DataRootResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open(data_root.root().home) as wh:
        duplicates = duplicate_post_ids(wh)
    return dg.AssetCheckResult(passed=not duplicates, metadata={
        "duplicated_ids": dg.MetadataValue.json([{"aweme_id": a, "rows": n} for a, n in duplicates]),
    })


@dg.asset_check(asset=POSTS, pool=DUCKDB_POOL, description="Nightly restore test (a backup never restored is a rumour): "
                "replay a random day of the last 30 into a scratch DuckDB; every object is intact gzip and every table "
                "(quarantine included) matches the warehouse within tolerance.")
def restore_verification(context: dg.AssetCheckExecutionContext, data_root: DataRootResource,
                         archive_store: ArchiveStoreResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    seed = int(os.environ.get("TIKLIVE_RESTORE_SEED") or time.time_ns() % 2**31)
    started = time.monotonic()
    with warehouse.open(data_root.root().home) as wh:
        report = verify_random_day(archive_store.open(), wh, datetime.now(UTC).date(), seed,
                                   tolerance=RESTORE_TOLERANCE, window_days=WINDOW_DAYS)
    metadata = {
        "seed": seed,
        "day": str(report.day) if report.day else "none in the last 30 days",
        "objects_parsed": report.objects,
        "seconds": round(time.monotonic() - started, 2),
        "tolerance": RESTORE_TOLERANCE,
        "tables": dg.MetadataValue.json({t.table: {"replayed": t.replayed, "in_warehouse": t.in_warehouse,
                                                   "missing_keys": t.missing_keys, "values_differ": t.values_differ}
                                         for t in report.tables}),
        "failing_tables": dg.MetadataValue.json([t.table for t in report.failing_tables]),
        "unreadable_objects": dg.MetadataValue.json(report.unreadable[:100]),
    }
    if report.day is None:
        return dg.AssetCheckResult(passed=False, metadata=metadata, description="no archived day in the last 30 to verify")
    return dg.AssetCheckResult(passed=report.passed, metadata=metadata, severity=dg.AssetCheckSeverity.ERROR)


@dg.asset_check(asset=discovery_queue, description="Every past day of the last 30 has a non-empty raw archive.")
def archive_days_non_empty(archive_store: ArchiveStoreResource) -> dg.AssetCheckResult:
    empty = empty_archive_days(archive_store.open(), datetime.now(UTC).date(), WINDOW_DAYS)
    return dg.AssetCheckResult(passed=not empty, metadata={"empty_days": dg.MetadataValue.json([str(d) for d in empty])})


@dg.asset_check(asset=archived_videos, pool=DUCKDB_POOL, description="No archived media without a posts row, and no "
                "downloaded posts row without its media: a video's MP4, or a photo post's images (<id>-<n>.jpg, with "
                "its <id>.mp3 sound), which count as archived media, not as a missing MP4.")
def videos_match_posts(data_root: DataRootResource, archive_store: ArchiveStoreResource,
                       warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open(data_root.root().home) as wh:
        result = video_consistency(archive_store.open(), wh, datetime.now(UTC).date(), WINDOW_DAYS)
    return dg.AssetCheckResult(passed=result.ok, metadata={
        "mp4_without_post": dg.MetadataValue.json(result.mp4_without_post[:100]),
        "post_without_mp4": dg.MetadataValue.json(result.post_without_mp4[:100]),
        "photo_posts": result.photo_posts,
    })


@dg.asset_check(asset=archived_videos, description=f"The latest day whose deadline ({LANDED_BY_HOUR:02d}:00 UTC) has "
                "passed was captured: today's after that hour, yesterday's before it (so the 04:30 run checks something).")
def todays_partition_landed(data_root: DataRootResource) -> dg.AssetCheckResult:
    now = datetime.now(UTC)
    day = due_day(now, LANDED_BY_HOUR)
    state = data_root.open_state()
    try:
        done = state.get_value(f"asset-complete:archived_videos:{day.isoformat()}") is not None
    finally:
        state.close()
    return dg.AssetCheckResult(passed=done, metadata={
        "day": str(day), "by_hour_utc": LANDED_BY_HOUR,
        "status": "landed" if done else f"{day}'s capture had not landed by {LANDED_BY_HOUR:02d}:00 UTC",
    })


NIGHTLY_CHECKS = [restore_verification, archive_days_non_empty, videos_match_posts, todays_partition_landed]

nightly_verification_job = dg.define_asset_job(
    "nightly_verification",
    selection=dg.AssetSelection.checks(*NIGHTLY_CHECKS),
    description="Check-only job: restore verification and archive/warehouse integrity (heavy checks, run nightly).",
)


@dg.schedule(job=nightly_verification_job, cron_schedule="30 4 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_verification_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return dg.RunRequest(run_key=f"nightly-verification-{day}")

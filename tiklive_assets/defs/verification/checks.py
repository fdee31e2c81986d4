"""Asset checks of the archive and warehouse. Cheap ones travel with their assets; heavy ones run nightly.

Failures list what failed (keys, tables, days) in their metadata and reach the alert sensor.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.defs.capture.assets import archived_videos, discovery_queue
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource
from tiklive_assets.defs.scheduling import asset_job, tick_schedule
from tiklive_assets.defs.warehouse.assets import DUCKDB_POOL  # checks that open the warehouse queue with its writers
from tiklive_assets.defs.warehouse.resources import WarehouseResource
from tiklive_assets.verification.integrity import (
    due_day,
    duplicate_post_ids,
    empty_archive_days,
    first_archived_day,
    video_consistency,
)
from tiklive_assets.verification.restore import verify_random_day

POSTS = dg.AssetKey("warehouse_posts")
WINDOW_DAYS = 30
NIGHTLY_JOB = "nightly_verification"


@dg.asset_check(
    asset=POSTS,
    blocking=False,
    pool=DUCKDB_POOL,
    description="aweme_id is unique in posts (cheap; runs with the table).",
)
def posts_aweme_id_unique(data_root: DataRootResource, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open(data_root.root().home) as wh:
        duplicates = duplicate_post_ids(wh)
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={
            "duplicated_ids": dg.MetadataValue.json([{"aweme_id": a, "rows": n} for a, n in duplicates]),
        },
    )


def _severity(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckSeverity:
    """ERROR in the nightly job, so a failed verification fails its run (the checks are blocking) and the runs page
    turns red; WARN when a capture or warehouse run evaluates the same check, so an old gap in the archive is
    reported and alerted but never blocks today's capture or load."""
    try:
        job = context.run.job_name
    except Exception:  # noqa: BLE001 - invoked directly (a test, a script): judge it as the nightly job would
        return dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckSeverity.ERROR if job == NIGHTLY_JOB else dg.AssetCheckSeverity.WARN


@dg.asset_check(
    asset=POSTS,
    pool=DUCKDB_POOL,
    blocking=True,
    description="Nightly restore test (a backup never "
    "restored is a rumour): replay a random archived day of the last 30 (today on a fresh install, when "
    "no earlier day is archived) into a scratch DuckDB; every object is intact gzip and every table "
    "(quarantine included) matches the warehouse within tolerance; a sample of its raw objects, loose or packed "
    "in bundles (a compacted day), is read back one at a time and must match byte for byte the sha256 recorded "
    "when it was packed. The day and seed are in the metadata.",
)
def restore_verification(
    context: dg.AssetCheckExecutionContext,
    data_root: DataRootResource,
    archive_store: ArchiveStoreResource,
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    seed = settings.restore_seed()
    if seed is None:  # a fresh sample each night; TIKLIVE_RESTORE_SEED fixes it
        seed = time.time_ns() % 2**31
    tolerance = settings.restore_tolerance()  # relative row-count difference a table may show
    started = time.monotonic()
    today = datetime.now(UTC).date()
    with warehouse.open(data_root.root().home) as wh:
        report = verify_random_day(archive_store.open(), wh, today, seed, tolerance=tolerance, window_days=WINDOW_DAYS)
        held = (
            wh.query("SELECT count(*) FROM posts WHERE dt >= ?", [today - timedelta(days=WINDOW_DAYS)])[0][0]
            if report.day is None
            else 0
        )
    metadata: dict[str, Any] = {
        "seed": seed,
        "day": str(report.day) if report.day else f"none archived in the last {WINDOW_DAYS} days",
        "objects_parsed": report.objects,
        "seconds": round(time.monotonic() - started, 2),
        "tolerance": tolerance,
        "tables": dg.MetadataValue.json(
            {
                t.table: {
                    "replayed": t.replayed,
                    "in_warehouse": t.in_warehouse,
                    "missing_keys": t.missing_keys,
                    "values_differ": t.values_differ,
                }
                for t in report.tables
            }
        ),
        "failing_tables": dg.MetadataValue.json([t.table for t in report.failing_tables]),
        "unreadable_objects": dg.MetadataValue.json(report.unreadable[:100]),
        "objects_sampled": report.sampled,
        "bundled_objects_sampled": report.sampled_bundled,
        "sample_failures": dg.MetadataValue.json(report.sample_failures[:100]),
    }
    severity = _severity(context)
    if report.day is None:
        # No history is not a failed restore; a warehouse holding rows the archive cannot replay is.
        if held:
            return dg.AssetCheckResult(
                passed=False,
                metadata=metadata,
                severity=severity,
                description=(
                    f"the warehouse holds {held} posts of the last {WINDOW_DAYS} days but the archive has no day in "
                    "them to replay: the archive is the truth, so check the archive store's settings and bucket"
                ),
            )
        return dg.AssetCheckResult(
            passed=True,
            metadata=metadata,
            description=(
                f"nothing verified: no day of the last {WINDOW_DAYS} is archived and the warehouse holds none of them"
            ),
        )
    if report.passed:
        what = (
            f"verified {report.day}: {report.objects} objects replayed, {len(report.tables)} tables match, "
            f"{report.sampled} objects ({report.sampled_bundled} from bundles) restore byte for byte"
        )
    else:
        what = (
            f"{report.day} does not restore: {len(report.unreadable)} unreadable objects, failing tables "
            f"{', '.join(t.table for t in report.failing_tables) or 'none'}, "
            f"{len(report.sample_failures)} sampled object(s) that do not restore byte for byte"
        )
    return dg.AssetCheckResult(passed=report.passed, metadata=metadata, severity=severity, description=what)


@dg.asset_check(
    asset=discovery_queue,
    blocking=True,
    description="Every day from the first capture to yesterday has "
    "a non-empty raw archive (today is not judged while its capture may still run): a missing day is "
    "data that can never be fetched again, so it is reported until it is explained.",
)
def archive_days_non_empty(
    context: dg.AssetCheckExecutionContext, archive_store: ArchiveStoreResource
) -> dg.AssetCheckResult:
    store = archive_store.open()
    today = datetime.now(UTC).date()
    first = first_archived_day(store)
    empty = empty_archive_days(store, today, first)
    checked = (today - first).days if first else 0
    if first is None:
        what = "nothing archived yet: no day is due"
    elif empty:
        what = f"{len(empty)} of {checked} days since the first capture ({first}) have no archive"
    else:
        what = (
            f"all {checked} days from {first} to yesterday are archived"
            if checked
            else f"the first capture is today ({first}): no earlier day is due"
        )
    return dg.AssetCheckResult(
        passed=not empty,
        severity=_severity(context),
        description=what,
        metadata={
            "first_capture": str(first) if first else "none",
            "days_checked": checked,
            "empty_days_count": len(empty),
            "empty_days": dg.MetadataValue.json([str(d) for d in empty[:100]]),
        },
    )


@dg.asset_check(
    asset=archived_videos,
    pool=DUCKDB_POOL,
    blocking=True,
    description="No archived media without a posts row, and no "
    "downloaded posts row without its media: a video's MP4, or a photo post's images (<id>-<n>.jpg, with "
    "its <id>.mp3 sound), which count as archived media, not as a missing MP4.",
)
def videos_match_posts(
    context: dg.AssetCheckExecutionContext,
    data_root: DataRootResource,
    archive_store: ArchiveStoreResource,
    warehouse: WarehouseResource,
) -> dg.AssetCheckResult:
    with warehouse.open(data_root.root().home) as wh:
        result = video_consistency(archive_store.open(), wh, datetime.now(UTC).date(), WINDOW_DAYS)
    if result.ok:
        what = (
            f"every archived video of the last {WINDOW_DAYS} days has its posts row and every downloaded post "
            f"its media ({result.photo_posts} photo posts among them)"
        )
    else:
        what = (
            f"{len(result.mp4_without_post)} archived media file(s) without a posts row, "
            f"{len(result.post_without_mp4)} downloaded post(s) without their media (the last {WINDOW_DAYS} days): "
            "replay the days named to restore the rows, or restore the media from the secondary store"
        )
    return dg.AssetCheckResult(
        passed=result.ok,
        severity=_severity(context),
        description=what,
        metadata={
            "mp4_without_post": dg.MetadataValue.json(result.mp4_without_post[:100]),
            "post_without_mp4": dg.MetadataValue.json(result.post_without_mp4[:100]),
            "photo_posts": result.photo_posts,
        },
    )


@dg.asset_check(
    asset=archived_videos,
    blocking=True,
    description="The latest day whose deadline (TIKLIVE_LANDED_BY_HOUR, default 06:00 UTC) has passed was "
    "captured: today's after that hour, yesterday's before it (so the 04:30 run checks something). A day before "
    "the first capture is not due.",
)
def todays_partition_landed(
    context: dg.AssetCheckExecutionContext, data_root: DataRootResource, archive_store: ArchiveStoreResource
) -> dg.AssetCheckResult:
    by_hour = settings.landed_by_hour()
    day = due_day(datetime.now(UTC), by_hour)
    with data_root.state() as state:
        done = state.get_value(f"asset-complete:archived_videos:{day.isoformat()}") is not None
    first = None if done else first_archived_day(archive_store.open())
    if done:
        status = "landed"
    elif first is not None and day < first:
        status = f"nothing due yet: {day} is before the first capture ({first})"
    else:
        status = f"{day}'s capture had not landed by {by_hour:02d}:00 UTC"
    passed = done or (first is not None and day < first)
    return dg.AssetCheckResult(
        passed=passed,
        severity=_severity(context),
        description=status,
        metadata={
            "day": str(day),
            "by_hour_utc": by_hour,
            "status": status,
        },
    )


NIGHTLY_CHECKS = [restore_verification, archive_days_non_empty, videos_match_posts, todays_partition_landed]

nightly_verification_job = asset_job(
    NIGHTLY_JOB,
    dg.AssetSelection.checks(*NIGHTLY_CHECKS),
    description="Check-only job, nightly: restore verification and archive/warehouse integrity. The checks are "
    "blocking, so any that fails fails the run (red on the runs page) and reaches the alert sensor.",
)

nightly_verification_schedule = tick_schedule(
    nightly_verification_job,
    "30 4 * * *",
    name="nightly_verification_schedule",
    run_key="nightly-verification",
    description="At 04:30 UTC: restores a random archived day into a scratch database and compares it with "
    "the warehouse, and checks that no day is missing and every video has its file. A failure turns the "
    "run red and is posted to the alert webhook.",
)

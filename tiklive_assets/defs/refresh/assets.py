"""The refresh asset, partitioned by ingest day, and the hourly schedule that materializes today's partition.

Hourly, because the first ages (1 h and 6 h after posting by default) are only worth something near on time: a
daily run would take a 1-hour point up to a day late. Each tick asks only for the points that came due since the
last one (a few credits), and every (video, age) point is taken once, so a tick evaluated twice, or a rerun, pays
for nothing again.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from tiklive_assets.capture.refresh import RefreshReport, refresh_videos
from tiklive_assets.defs.capture.assets import API_POOL, CAPTURE_RETRY, archived_videos, finish, guard_partition
from tiklive_assets.defs.partitions import daily
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    CaptureResources,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
    budget_failure,
)
from tiklive_assets.defs.scheduling import asset_job, utc_schedule

GROUP = "capture"


class RefreshConfig(dg.Config):
    as_of: str | None = Field(
        None,
        description="the instant (ISO 8601, UTC when no offset) at which videos' ages are measured; default: now. "
        "Only earlier ages than this are taken",
    )

    def now(self) -> datetime:
        if not self.as_of:
            return datetime.now(UTC)
        when = datetime.fromisoformat(self.as_of)
        return when if when.tzinfo else when.replace(tzinfo=UTC)


def _metadata(report: RefreshReport) -> dict:
    return {
        "videos_followed_new": report.enrolled,
        "points_due": report.due,
        "refreshed": report.refreshed,
        "refreshed_by_priority": dg.MetadataValue.json(report.by_priority),
        "tombstones_by_reason": dg.MetadataValue.json(report.gone),
        "failed": dg.MetadataValue.json(report.failed[:50]),
        "ages_skipped_late": report.skipped_late,
        "left_by_allotment": report.left_by_allotment,
        "refresh_credits": report.credits,
        "refresh_credits_today": report.spent_today,
        "daily_allotment": report.allotment,
        "claims_recovered": report.claims_recovered,
        "purged_objects": report.purged_objects,
        "purge_kept_by_legal_hold": report.purge_held,
    }


@dg.asset(
    partitions_def=daily,
    group_name=GROUP,
    pool=API_POOL,
    retry_policy=CAPTURE_RETRY,
    kinds={"tikliveapi", "archive"},
    deps=[archived_videos],
    description="Tracked videos re-resolved (their detail, 1 credit) at set ages after posting (refresh.ages_hours; "
    "default 1 h, 6 h, 24 h, 3 d, 7 d, 30 d), once per age per video, within refresh.daily_credits a day, tracked "
    "accounts' videos first, then the most viewed. Each answer is archived raw under its own key (the age in its "
    "slug) before it is read, so the warehouse gets one more point of the video's engagement curve; a video that "
    "answers not found or private is tombstoned and never asked again. Materialized hourly: the early ages need it.",
)
def refreshed_posts(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    if (skipped := guard_partition(context, data_root, "refreshed_posts")) is not None:
        return skipped
    if not tracking.load().refresh.enabled:
        context.log.info("refresh.enabled is false: nothing refreshed")
        return dg.MaterializeResult(metadata={"status": "disabled (refresh.enabled: false)", "credits_spent": 0})
    with CaptureResources(tiklive_api, archive_store, data_root, tracking).session(context) as session:
        report = refresh_videos(session, now=config.now())
        if report.systemic_error:
            raise dg.Failure(
                description=f"refresh stopped: {report.systemic_error}. The points not taken stay due; the next run "
                "takes them once the cause is fixed.",
                allow_retries=False,
                metadata={**_metadata(report), "credits_spent": session.credits_spent},
            )
        if report.budget_stop is not None:
            raise budget_failure(report.budget_stop, session, {"refreshed": dg.MetadataValue.int(report.refreshed)})
        context.log.info(
            "refresh: %d point(s) due, %d refreshed, %d tombstoned, %d left by the allotment (%d/%d credits today)",
            report.due,
            report.refreshed,
            sum(report.gone.values()),
            report.left_by_allotment,
            report.spent_today,
            report.allotment,
        )
        return finish(session, "refreshed_posts", {"status": "refreshed", **_metadata(report)})


refresh_job = asset_job(
    "refresh_posts",
    dg.AssetSelection.assets(refreshed_posts),
    description="Re-resolves tracked videos whose next age after posting has come (engagement curves, tombstones).",
)


@utc_schedule(
    refresh_job,
    "20 * * * *",
    name="hourly_refresh_schedule",
    description="Every hour at :20: re-resolves the tracked videos that reached one of refresh.ages_hours since the "
    "last tick (today's partition). Hourly because the first ages (1 h, 6 h) are only useful near on time; each "
    "(video, age) is paid for once, so a repeated tick costs nothing.",
)
def hourly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    when = context.scheduled_execution_time.astimezone(UTC)
    return dg.RunRequest(run_key=f"refresh-{when:%Y-%m-%dT%H}", partition_key=when.date().isoformat())

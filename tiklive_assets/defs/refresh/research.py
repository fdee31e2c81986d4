"""Research records refreshed within the platform's terms: a daily schedule collects again every Research API
window done more than ``research.refresh_days`` days ago (default 15)."""

from datetime import UTC

import dagster as dg

from tiklive_assets.defs.research.schedules import research_videos_job
from tiklive_assets.defs.resources import DataRootResource, TrackingConfigResource
from tiklive_assets.defs.scheduling import utc_schedule
from tiklive_assets.research.refresh import stale_windows

STALE_RUN_CONFIG = {"ops": {"research_video_archive": {"config": {"refresh": True}}}}


@utc_schedule(
    research_videos_job,
    "40 0 * * *",
    name="research_refresh_schedule",
    description="At 00:40 UTC, after the quota resets and stopped windows resumed: collects again each Research API "
    "window done more than research.refresh_days days ago (the platform's terms: records at most 15 days old). The "
    "new search replaces the window's earlier one, so videos it no longer returns leave the research tables.",
)
def research_refresh_schedule(
    context: dg.ScheduleEvaluationContext, data_root: DataRootResource, tracking: TrackingConfigResource
):
    research = tracking.load().research
    if research is None:
        return dg.SkipReason("no research section in the tracking config")
    now = context.scheduled_execution_time.astimezone(UTC)
    with data_root.state() as state:
        windows = stale_windows(state, research.refresh_days, now)
    if not windows:
        return dg.SkipReason(f"no Research API window is older than {research.refresh_days} days")
    return [
        dg.RunRequest(
            run_key=f"research-refresh-{window.key}-{now.date().isoformat()}",
            run_config=STALE_RUN_CONFIG,
            tags={
                "dagster/asset_partition_range_start": window.start.isoformat(),
                "dagster/asset_partition_range_end": window.end.isoformat(),
            },
        )
        for window in windows
    ]

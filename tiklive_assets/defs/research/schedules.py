"""Resume Research API windows a quota stop left open, as soon as the quota resets (00:00 UTC)."""

from datetime import UTC

import dagster as dg

from tiklive_assets.defs.research.assets import research_video_archive
from tiklive_assets.defs.resources import DataRootResource
from tiklive_assets.defs.scheduling import asset_job, utc_schedule
from tiklive_assets.research.quota import ResearchState
from tiklive_assets.research.windows import Window

RESUMABLE = {"daily_quota_limit_exceeded", "daily_quota", "run_cap"}  # stops that a new UTC day or run lifts

research_videos_job = asset_job(
    "research_videos",
    dg.AssetSelection.assets(research_video_archive),
    description="Collect Research API videos for a range of create-date partitions (one search per ≤30-day window).",
)


@utc_schedule(
    research_videos_job,
    "10 0 * * *",
    description="At 00:10 UTC, just after the Research API's daily quota resets: resumes each collection "
    "window an earlier run left open (quota spent, search expired) from its saved cursor.",
)
def research_resume_schedule(context: dg.ScheduleEvaluationContext, data_root: DataRootResource):
    """One run per window that a stop (daily quota, expired search) left open: it resumes from its saved cursor."""
    with data_root.state() as state:  # other stops need a person
        stopped = {
            w.window_key for w in ResearchState(state).windows() if w.status == "open" and w.stop_reason in RESUMABLE
        }
    if not stopped:
        return dg.SkipReason("no Research API window is waiting to resume")
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return [_resume(key, Window.from_key(key), day) for key in sorted(stopped)]


def _resume(key: str, window: Window, day: str) -> dg.RunRequest:
    """The run that materializes ``window``'s create-date partitions again, once per window and day."""
    return dg.RunRequest(
        run_key=f"research-resume-{key}-{day}",
        tags={
            "dagster/asset_partition_range_start": window.start.isoformat(),
            "dagster/asset_partition_range_end": window.end.isoformat(),
        },
    )

"""Capture jobs and schedules: today's capture every day, the janitor every hour."""


from datetime import UTC, timedelta

import dagster as dg

from tiklive_assets.capture.janitor import sweep
from tiklive_assets.defs.archive.assets import CAPTURE_ASSETS
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource

daily_capture_job = dg.define_asset_job(
    "daily_capture",
    selection=dg.AssetSelection.assets(*CAPTURE_ASSETS),
    description="Today's capture: profiles, discovery, videos, follow graph, comments.",
)


@dg.schedule(job=daily_capture_job, cron_schedule="15 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_capture_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Materialize today's partition once a day (the API only serves the present)."""
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return dg.RunRequest(run_key=f"daily-capture-{day}", partition_key=day)


@dg.op(description="Remove .part files and abort multipart uploads older than an hour; age out old dead letters.")
def sweep_incomplete_writes(context: dg.OpExecutionContext, archive_store: ArchiveStoreResource, data_root: DataRootResource,
                            tracking: TrackingConfigResource) -> None:
    retention = timedelta(days=tracking.load().capture.dead_letter_retention_days)
    state = data_root.open_state()
    try:
        report = sweep(archive_store.open(), state, data_root.scratch, older_than=timedelta(hours=1),
                       dead_letter_retention=retention)
    finally:
        state.close()
    context.log.info(
        "janitor: %d .part files removed, %d multipart uploads aborted, %d dead letters aged out",
        report.parts_removed, report.uploads_aborted, report.dead_letters_aged_out,
    )


@dg.job(description="Hourly janitor (seed 001's fifth process).")
def janitor_job() -> None:
    sweep_incomplete_writes()


@dg.schedule(job=janitor_job, cron_schedule="0 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def hourly_janitor_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    stamp = context.scheduled_execution_time.astimezone(UTC).strftime("%Y-%m-%dT%H")
    return dg.RunRequest(run_key=f"janitor-{stamp}")



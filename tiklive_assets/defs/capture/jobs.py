"""Capture jobs and schedules: today's capture every day, the janitor and the mirror repair every hour."""

from datetime import timedelta

import dagster as dg

from tiklive_assets.capture.janitor import sweep
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.defs.scheduling import HOUR, asset_job, tick_schedule
from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS

daily_capture_job = asset_job(
    "daily_capture",
    dg.AssetSelection.assets(*CAPTURE_ASSETS),
    without_checks=NIGHTLY_CHECKS,  # the heavy verification checks run once a night, not in every capture
    description="Today's capture: profiles, discovery, videos, follow graph, comments.",
)

# today's partition once a day: the API only serves the present
daily_capture_schedule = tick_schedule(
    daily_capture_job,
    "15 3 * * *",
    name="daily_capture_schedule",
    run_key="daily-capture",
    partition_days_back=0,
    description="Captures today's partition at 03:15 UTC, so it has landed by 06:00: TikLiveAPI serves only "
    "the present, so a day not captured on the day is lost. Rerunning it fetches only what is new.",
)


@dg.op(
    description="Remove .part files, swap temporaries and multipart uploads older than an hour (a live writer's "
    "are younger); age out old dead letters."
)
def sweep_incomplete_writes(
    context: dg.OpExecutionContext,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> None:
    retention = timedelta(days=tracking.load().capture.dead_letter_retention_days)
    root = data_root.root()
    with data_root.state() as state:
        report = sweep(
            archive_store.open(),
            state,
            data_root.scratch,
            older_than=timedelta(hours=1),
            dead_letter_retention=retention,
            temp_dirs=[root.exports, root.home],  # interrupted swaps
        )
    context.log.info(
        "janitor: %d .part files removed, %d multipart uploads aborted, %d dead letters aged out",
        report.parts_removed,
        report.uploads_aborted,
        report.dead_letters_aged_out,
    )


@dg.job(
    description="Hourly janitor: removes what killed processes left (.part downloads, incomplete multipart "
    "uploads, temporaries of interrupted Parquet/CSV/marts swaps) and ages out old dead letters."
)
def janitor_job() -> None:
    sweep_incomplete_writes()


hourly_janitor_schedule = tick_schedule(
    janitor_job,
    "0 * * * *",
    name="hourly_janitor_schedule",
    run_key="janitor",
    stamp=HOUR,
    description="Every hour on the hour: clears what interrupted runs left behind (partial downloads, "
    "unfinished uploads, temporary files) and ages out old dead letters.",
)


@dg.op(
    description="Copy every key the secondary store missed (journaled in the primary under _mirror/unreplicated/) "
    "from the primary to the secondary, then drop its marker. Keys the secondary still refuses stay journaled."
)
def repair_mirror(
    context: dg.OpExecutionContext, archive_store: ArchiveStoreResource, data_root: DataRootResource
) -> dg.Output:
    from tiklive_assets.storage import MirroredStore
    from tiklive_assets.storage.mirror import repair

    store = archive_store.open()
    if not isinstance(store, MirroredStore):
        context.log.info("no secondary store configured (%s): nothing to repair", store.describe())
        return dg.Output(None, metadata={"secondary": "none configured"})
    report = repair(store, scratch=data_root.scratch)
    metadata: dict[str, dg.MetadataValue | int] = {
        "journaled": report.journaled,
        "copied": report.copied,
        "already_there": report.already_there,
        "gone_from_primary": report.gone,
        "diverged": dg.MetadataValue.json(report.diverged[:100]),
        "still_missing": dg.MetadataValue.json(report.failed[:100]),
    }
    context.log.info(
        "mirror repair: %d journaled, %d copied, %d still missing", report.journaled, report.copied, len(report.failed)
    )
    if report.failed:
        # Fails the run (visible in the UI and to alerts) but never retried here: the next hourly run tries again.
        raise dg.Failure(
            description=f"{len(report.failed)} key(s) are still missing from {store.secondary.describe()} and stay "
            f"journaled (first: {report.failed[0]}); check TIKLIVE_ARCHIVE_SECONDARY_BUCKET and "
            "TIKLIVE_SECONDARY_S3_ENDPOINT_URL. The next hourly mirror_repair run tries again.",
            metadata=metadata,
            allow_retries=False,
        )
    return dg.Output(None, metadata=metadata)


@dg.job(description="Copy keys the secondary store missed from the primary (hourly; `tiklive mirror repair` by hand).")
def mirror_repair() -> None:
    repair_mirror()


hourly_mirror_repair_schedule = tick_schedule(
    mirror_repair,
    "30 * * * *",
    name="hourly_mirror_repair_schedule",
    run_key="mirror-repair",
    stamp=HOUR,
    description="Every hour at :30: copies archive objects the secondary store missed, so the backup "
    "copy catches up within the hour (does nothing without a secondary bucket).",
)

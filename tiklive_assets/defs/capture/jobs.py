"""Capture jobs and schedules: today's capture every day, the janitor and the mirror repair every hour.

Today's capture is one run, or ``capture.workers`` runs of the same partition that split the day between them
(claims in the state database: each walk and each queued video is taken by one run before its first request, so
the runs together send what one run sends, under the plan's one rate window). The schedule only queues them; the
Dagster instance decides how many run at once:

* the run queue (``concurrency.runs.max_concurrent_runs`` in dagster.yaml) bounds runs of every kind;
* every capture step is in the ``tiklive_api`` pool, whose limit (``dagster instance concurrency set tiklive_api
  N``; ``concurrency.pools.default_limit`` for pools without one) bounds capture steps across all runs, and the
  queued run coordinator keeps a capture run queued while every slot is taken or waited for. With a limit of 1 the
  workers take turns on the one slot, which gains nothing over one run; give the pool at least ``workers`` slots;
* one host: the default state database and rate window (SQLite files under TIKLIVE_HOME) are shared by every run
  of the host, so raising the pool limit to ``workers`` is all it takes;
* many hosts (a run launcher that starts runs elsewhere): every run must share the state database
  (TIKLIVE_STATE_URL=postgresql://...), the rate window (TIKLIVE_RATELIMIT_URL=redis://... or postgresql://...)
  and the archive (S3), or the runs would buy the same pages and overrun the plan.

A backfill launched from the UI, or a run launched by hand, is one run per partition whatever ``capture.workers``
says: only the schedule's tick multiplies runs.
"""

from datetime import timedelta

import dagster as dg

from tiklive_assets.capture.janitor import sweep
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.defs.scheduling import HOUR, asset_job, tick_schedule
from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS
from tiklive_assets.tracking import ConfigError

daily_capture_job = asset_job(
    "daily_capture",
    dg.AssetSelection.assets(*CAPTURE_ASSETS),
    without_checks=NIGHTLY_CHECKS,  # the heavy verification checks run once a night, not in every capture
    description="Today's capture: profiles, discovery, videos, follow graph, comments.",
)


def capture_workers() -> int:
    """``capture.workers`` of the tracking config, read at each tick. A config that cannot be read counts as one
    worker: that run fails at its preflight with the file, line and field, where the run-failure alert sees it (a
    schedule tick that failed instead would launch nothing, and say so only on the schedule's page)."""
    try:
        return TrackingConfigResource().load().capture.workers
    except ConfigError:
        return 1


# today's partition once a day: the API only serves the present
daily_capture_schedule = tick_schedule(
    daily_capture_job,
    "15 3 * * *",
    name="daily_capture_schedule",
    run_key="daily-capture",
    partition_days_back=0,
    workers=capture_workers,
    description="Captures today's partition at 03:15 UTC, so it has landed by 06:00: TikLiveAPI serves only "
    "the present, so a day not captured on the day is lost. Rerunning it fetches only what is new. With "
    "capture.workers above 1 it queues that many runs of the day (tag tiklive/worker), which split the work and "
    "run together as far as the tiklive_api pool limit allows; a backfill stays one run per partition.",
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

"""The shape every job and schedule of the project shares, written once.

A routine job leaves out the heavy checks that run once a night in their own job. A schedule ticks in UTC and
runs from the start (a newcomer need not switch it on); a tick requests one run under a key named for the tick
(or for the partition it materializes), so a tick evaluated twice never launches a second run. A schedule may ask
for several runs a tick (``workers``: the daily capture's workers); each has a key of its own, and the tick still
launches each of them once.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, timedelta
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

DAY = "%Y-%m-%d"  # one run a day: the run key names the day
HOUR = "%Y-%m-%dT%H"  # one run an hour: the run key names the hour
WORKER_TAG = "tiklive/worker"  # "i/N": the run is worker i of the N a tick launched for the same partition

ScheduleTarget = dg.JobDefinition | UnresolvedAssetJobDefinition


def asset_job(
    name: str,
    selection: dg.AssetSelection,
    *,
    description: str,
    without_checks: Sequence[dg.AssetChecksDefinition] = (),
) -> UnresolvedAssetJobDefinition:
    """An asset job over ``selection`` less ``without_checks`` (the nightly ones, which run in their own job)."""
    if without_checks:
        selection = selection - dg.AssetSelection.checks(*without_checks)
    return dg.define_asset_job(name, selection=selection, description=description)


def utc_schedule(
    job: ScheduleTarget, cron: str, *, description: str, name: str | None = None
) -> Callable[[Callable[..., Any]], dg.ScheduleDefinition]:
    """The decorator of a schedule with a body of its own: ``cron`` read in UTC, running by default."""
    return dg.schedule(
        job=job,
        name=name,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


def tick_schedule(
    job: ScheduleTarget,
    cron: str,
    *,
    name: str,
    run_key: str,
    description: str,
    stamp: str = DAY,
    partition_days_back: int | None = None,
    workers: Callable[[], int] | None = None,
) -> dg.ScheduleDefinition:
    """One run per tick, keyed ``<run_key>-<the tick's time as stamp>``.

    With ``partition_days_back`` the run materializes the daily partition that many days before the tick (0: the
    tick's own day, 1: yesterday) and its key names that day instead.

    With ``workers`` (called at each tick, so a changed setting counts from the next tick) the tick requests that
    many runs of the same partition, tagged ``tiklive/worker: i/N``. The first keeps the one-run key, worker ``i``
    adds ``-worker-<i>``: a tick evaluated twice launches none of them again, and going from one worker to three
    adds two runs, never a second first one. The runs are queued together; how many run at once is the instance's
    run queue and pool limits, not the schedule's."""

    @utc_schedule(job, cron, description=description, name=name)
    def _tick(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | list[dg.RunRequest]:
        when = context.scheduled_execution_time.astimezone(UTC)
        if partition_days_back is None:
            key, partition = f"{run_key}-{when.strftime(stamp)}", None
        else:
            partition = (when - timedelta(days=partition_days_back)).date().isoformat()
            key = f"{run_key}-{partition}"
        if workers is None:
            return dg.RunRequest(run_key=key, partition_key=partition)
        count = max(1, workers())
        requests = [
            dg.RunRequest(
                run_key=key if i == 1 else f"{key}-worker-{i}",
                partition_key=partition,
                tags={WORKER_TAG: f"{i}/{count}"},
            )
            for i in range(1, count + 1)
        ]
        return requests if count > 1 else requests[0]

    return _tick

"""Alert sensors: every failed run, and every failed asset check, becomes one notification.

The check sensor reads finished runs, then each run's check evaluations. Run status changes are indexed with one
global, increasing storage id on every supported event log (the shipped run-sharded SQLite mirrors them into its
index shard; Postgres stores everything in one table), so a storage-id cursor over them is exact on both. A cursor
over check evaluations themselves is not: on SQLite their ids are per run and the storage refuses such a query.
"""

import time
from collections.abc import Iterable
from typing import Literal

import dagster as dg

from tiklive_assets.alerts import notify

TICK_BUDGET_SECONDS = 40.0
RUNS_PER_TICK = 100
FinishedEventType = Literal[
    dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED
]
FINISHED: tuple[FinishedEventType, ...] = (
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
)


def check_evaluations(records: Iterable[dg.EventLogRecord]) -> list[dg.AssetCheckEvaluation]:
    """The check evaluations carried by ASSET_CHECK_EVALUATION event records, in their order."""
    evaluations = []
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event is not None else None
        if isinstance(data, dg.AssetCheckEvaluation):
            evaluations.append(data)
    return evaluations


def run_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The assets a run materialized or checked, as the UI spells them."""
    keys = set(run.asset_selection or ()) | {check.asset_key for check in run.asset_check_selection or ()}
    if not keys:  # an ad-hoc materialize records no selection: read the assets its events name
        keys = set(instance.get_asset_keys_for_run(run.run_id))
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        keys |= {evaluation.asset_key for evaluation in check_evaluations(records)}
    return sorted(key.to_user_string() for key in keys)


def describe_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """``job nightly_verification, partition 2026-11-30``; a run with no job of its own (the CLI's materialize,
    the UI's "Materialize" button: Dagster names those ``__ASSET_JOB``/``__ephemeral_asset_job__``) is called
    "materialization of <assets>", which is what the data team clicked or ran."""
    partition = run.tags.get("dagster/partition")
    if run.job_name.startswith("__"):
        assets = run_assets(instance, run)
        shown = ", ".join(assets[:6]) + (f" and {len(assets) - 6} more" if len(assets) > 6 else "")
        what = f"materialization of {shown or 'no asset'}"
    else:
        what = f"job {run.job_name}"
    return what + (f", partition {partition}" if partition else "")


@dg.run_failure_sensor(
    name="run_failure_alert",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed run (job or assets, partition, error) to TIKLIVE_ALERT_WEBHOOK_URL, or to the "
    "log when no webhook is set, so a failing schedule is seen the same day.",
)
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    error = context.failure_event.message or "see the run's logs"
    if run.job_name.startswith("__"):  # Dagster's message names its internal job: say what it was instead
        error = error.replace(f'run for "{run.job_name}"', "the materialization").replace(
            run.job_name, "materialization"
        )
    notify(f"tiklive run failed: {describe_run(context.instance, run)}", [f"run id {run.run_id}", error[:500]])


def _latest_status_change(instance: dg.DagsterInstance) -> int:
    latest = 0
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(event_type, limit=1, ascending=False)
        if result.records:
            latest = max(latest, result.records[0].storage_id)
    return latest


def _finished_after(instance: dg.DagsterInstance, after: int) -> list[dg.EventLogRecord]:
    """Finished runs' status events after storage id ``after``, oldest first. When a type fills its page, only the
    ids up to that page's last are complete: the rest waits for the next tick rather than being skipped."""
    records: list[dg.EventLogRecord] = []
    complete_up_to: int | None = None
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=RUNS_PER_TICK,
            ascending=True,
        )
        records.extend(result.records)
        if len(result.records) == RUNS_PER_TICK:
            last = result.records[-1].storage_id
            complete_up_to = last if complete_up_to is None else min(complete_up_to, last)
    records.sort(key=lambda record: record.storage_id)
    return [r for r in records if complete_up_to is None or r.storage_id <= complete_up_to]


@dg.sensor(
    name="failed_check_alert",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed asset check (restore verification, archive and warehouse integrity, drift, "
    "dead letters) to TIKLIVE_ALERT_WEBHOOK_URL or the log, once the run that evaluated it has "
    "finished: a verification that fails silently for weeks is the incident this prevents.",
)
def failed_check_alert(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    instance = context.instance
    if context.cursor is None:  # first tick: start from now rather than alerting the whole history at once
        context.update_cursor(str(_latest_status_change(instance)))
        return dg.SkipReason("alerting on check failures from now on")
    started, runs, failed = time.monotonic(), 0, 0
    for status in _finished_after(instance, int(context.cursor)):
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break  # a slow webhook: the rest waits for the next tick, and nothing is alerted twice
        run_id = status.event_log_entry.run_id
        run = instance.get_run_by_id(run_id)
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        for evaluation in check_evaluations(records):
            if evaluation.passed:
                continue
            failed += 1
            severity = getattr(evaluation.severity, "value", "ERROR")
            where = describe_run(instance, run) if run else f"run {run_id}"
            if evaluation.partition and run and evaluation.partition != run.tags.get("dagster/partition"):
                where += f", partition {evaluation.partition}"
            details = [f"{where} (run id {run_id}, severity {severity})"]
            if evaluation.description:
                details.append(evaluation.description[:300])
            details += [
                f"{key}: {str(getattr(value, 'value', value))[:300]}"
                for key, value in list(evaluation.metadata.items())[:8]
            ]
            notify(f"tiklive check failed: {evaluation.check_name} on {evaluation.asset_key.to_user_string()}", details)
        runs += 1
        context.update_cursor(str(status.storage_id))  # per run: a tick cut short never repeats an alert
    return dg.SkipReason(f"{runs} finished runs read, {failed} failed checks alerted")

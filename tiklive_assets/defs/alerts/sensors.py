"""Alert sensors: every failed run, and every failed asset check, becomes one notification."""

import time

import dagster as dg

from tiklive_assets.alerts import notify

TICK_BUDGET_SECONDS = 40.0


@dg.run_failure_sensor(
    name="run_failure_alert", monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed run (job, partition, error) to TIKLIVE_ALERT_WEBHOOK_URL or the log.",
)
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "-")
    error = context.failure_event.message or "see the run's logs"
    notify(f"tiklive run failed: {run.job_name} (partition {partition})", [f"run id {run.run_id}", error[:500]])


@dg.sensor(
    name="failed_check_alert", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts each failed asset check (restore verification, drift, integrity) to the webhook or the log.",
)
def failed_check_alert(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    if context.cursor is None:  # first tick: start from now rather than alerting the whole history at once
        latest = context.instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), ascending=False, limit=1)
        context.update_cursor(str(latest[0].storage_id) if latest else "0")
        return dg.SkipReason("alerting on check failures from now on")
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=int(context.cursor)),
        ascending=True, limit=200,
    )
    started, failed, read = time.monotonic(), 0, 0
    for record in records:
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break  # a slow webhook: the rest waits for the next tick, and nothing is alerted twice
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed:
            failed += 1
            details = [f"{key}: {getattr(value, 'value', value)}" for key, value in list(evaluation.metadata.items())[:8]]
            notify(f"tiklive check failed: {evaluation.asset_key.to_user_string()} / {evaluation.check_name}", details)
        read += 1
        context.update_cursor(str(record.storage_id))  # per record: a tick cut short never repeats an alert
    return dg.SkipReason(f"{read} check evaluations read, {failed} failed and alerted")

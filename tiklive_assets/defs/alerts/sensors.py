"""Alert sensors: every failed run, and every failed asset check, becomes one notification."""

import dagster as dg

from tiklive_assets.alerts import notify


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
    after = int(context.cursor) if context.cursor else None
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        ascending=True, limit=200,
    )
    failed = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed:
            failed += 1
            details = [f"{key}: {getattr(value, 'value', value)}" for key, value in list(evaluation.metadata.items())[:8]]
            notify(f"tiklive check failed: {evaluation.asset_key.to_user_string()} / {evaluation.check_name}", details)
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return dg.SkipReason(f"{len(records)} check evaluations read, {failed} failed and alerted")

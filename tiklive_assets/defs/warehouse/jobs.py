"""The warehouse job and schedule: each closed day (yesterday, UTC) is derived from its archive after midnight."""

from datetime import UTC, timedelta

import dagster as dg

from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS
from tiklive_assets.defs.warehouse.assets import GROUP

daily_warehouse_job = dg.define_asset_job(
    "daily_warehouse",
    # the heavy verification checks run once a night in their own job, not in every day's load
    selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.checks(*NIGHTLY_CHECKS),
    description="Derive a day's warehouse tables, Parquet exports, marts and CSVs from its raw archive.",
)


@dg.schedule(
    job=daily_warehouse_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Loads yesterday (UTC) into the warehouse, the Parquet exports, the marts and the CSVs at "
    "00:30 UTC, once its archive is closed, so the data team has it by 01:00.",
)
def daily_warehouse_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Yesterday's partition, once its archive is closed, well before the 04:30 nightly verification."""
    day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"daily-warehouse-{day}", partition_key=day)

"""The warehouse job and schedule: each closed day (yesterday, UTC) is derived from its archive after midnight."""

import dagster as dg

from tiklive_assets.defs.scheduling import asset_job, tick_schedule
from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS
from tiklive_assets.defs.warehouse.assets import GROUP
from tiklive_assets.defs.warehouse.index_check import archive_index_complete

daily_warehouse_job = asset_job(
    "daily_warehouse",
    dg.AssetSelection.groups(GROUP),
    description="Derive a day's warehouse tables, Parquet exports, marts and CSVs from its raw archive.",
    without_checks=[*NIGHTLY_CHECKS, archive_index_complete],  # heavy checks: nightly or weekly, in their own jobs
)

# Yesterday's partition, once its archive is closed, well before the 04:30 nightly verification
daily_warehouse_schedule = tick_schedule(
    daily_warehouse_job,
    "30 0 * * *",
    name="daily_warehouse_schedule",
    run_key="daily-warehouse",
    description="Loads yesterday (UTC) into the warehouse, the Parquet exports, the marts and the CSVs at "
    "00:30 UTC, once its archive is closed, so the data team has it by 01:00.",
    partition_days_back=1,
)

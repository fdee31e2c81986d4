"""Research partitions are module constants: one daily partition per video CREATE date (UTC), not ingest date.

The Research API answers for the past, so a backfill over these partitions is real collection. The backfill
policy packs a UI backfill into runs of at most 30 consecutive days: one run, one window, one search.
"""

import dagster as dg

from tiklive_assets.research.windows import MAX_WINDOW_DAYS

CREATE_DATE_START = "2023-01-01"
create_date = dg.DailyPartitionsDefinition(start_date=CREATE_DATE_START, timezone="UTC")
window_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_WINDOW_DAYS)

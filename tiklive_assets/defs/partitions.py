"""Partitions are module constants: one daily partition per ingest date (UTC)."""

import dagster as dg

DAILY_START = "2025-06-01"
daily = dg.DailyPartitionsDefinition(start_date=DAILY_START, timezone="UTC", end_offset=1)

"""Partitions are module constants: one daily partition per ingest date (UTC), from the project's first day.

The partitions start on the first day this project captured (``TIKLIVE_FIRST_DAY``, YYYY-MM-DD, UTC), not months
before any data: the asset pages then show how much of the project's own history is filled, and the backfill
dialog opens on days that can hold data. A day before it was never captured, and TikLiveAPI only serves the
present, so it cannot be fetched later either. The webserver, the daemon and the code server all load these
definitions at import time, so the setting is an environment variable (read here, no file opened).
"""

from collections.abc import Mapping
from datetime import date

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.settings import FIRST_DAY

DEFAULT_FIRST_DAY = "2026-05-01"


def first_day(environ: Mapping[str, str] | None = None) -> str:
    """The first daily partition: ``TIKLIVE_FIRST_DAY`` when set, else ``DEFAULT_FIRST_DAY``."""
    text = settings.first_day_text(environ) or DEFAULT_FIRST_DAY
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(
            f"{FIRST_DAY}={text!r} is not a date: set it to the project's first capture day as YYYY-MM-DD "
            f"(for example {DEFAULT_FIRST_DAY}), or unset it for the default"
        ) from None


DAILY_START = first_day()
daily = dg.DailyPartitionsDefinition(start_date=DAILY_START, timezone="UTC", end_offset=1)

"""What every mart module shares: the column text format, markdown tables and sparklines for metadata, and the
charted window. The core marts live in :mod:`.marts`; marts about one subject may live in their own module
(``marts_<subject>.py``) declaring ``MARTS``, ``MART_SQL``, ``EXAMPLE_QUERIES``, ``MART_COLUMNS``, ``GRAIN`` and
``CHARTS`` as :mod:`.marts` does; :mod:`.marts` merges them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import date, timedelta

SPARK = "▁▂▃▄▅▆▇█"
CHART_DAYS = 30  # the charts and sparklines show the last 30 days up to the partition's day

Rows = Callable[[str], list[tuple]]  # a query against the mart as of the charted day -> its rows
Chart = Callable[[Rows, str, date, int], tuple[str, str]]  # (rows, mart, day, rows to list) -> (table, chart)


def since(up_to: date) -> date:
    """The first day of the charted window ending on ``up_to``."""
    return up_to - timedelta(days=CHART_DAYS - 1)


def columns(text: str) -> list[tuple[str, str, str]]:
    """(name, type, meaning) of each column of ``text``: ``name (TYPE): meaning``, continued on deeper lines."""
    columns: list[tuple[str, str, str]] = []
    for line in textwrap.dedent(text).strip().splitlines():
        if line.startswith(" "):  # the meaning goes on
            name, kind, meaning = columns.pop()
            columns.append((name, kind, f"{meaning} {line.strip()}"))
            continue
        name, _, rest = line.partition(" (")
        kind, _, meaning = rest.partition("): ")
        columns.append((name, kind, meaning.strip()))
    return columns


def sparkline(values: list[float | int | None]) -> str:
    """``▁▃▅█``: one character per value, scaled between the series' minimum and maximum."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1
    return "".join(
        " " if v is None else SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in values
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    # a '|' or a line break in a sound's title would break the row
    return text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines.extend("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)

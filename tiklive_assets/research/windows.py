"""Create-date windows: a date range split into consecutive inclusive windows of at most 30 days.

The Research API takes ``start_date``..``end_date`` (both inclusive) spanning at most 30 days. Windows are built
by adding days to dates (never by month arithmetic), so leap days and month ends are neither lost nor repeated.
``pack_days`` turns any set of create-date partitions into as few windows as the limit allows: consecutive days
share a window, a gap starts a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MAX_WINDOW_DAYS = 30


@dataclass(frozen=True, order=True)
class Window:
    start: date
    end: date  # inclusive

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window end {self.end} is before its start {self.start}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def key(self) -> str:
        """``YYYYMMDD-YYYYMMDD``: names the window in archive slugs and progress records."""
        return f"{self.start:%Y%m%d}-{self.end:%Y%m%d}"

    @classmethod
    def from_key(cls, key: str) -> Window:
        a, b = key.split("-")
        return cls(datetime.strptime(a, "%Y%m%d").date(), datetime.strptime(b, "%Y%m%d").date())

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def split_range(start: date, end: date, max_days: int = MAX_WINDOW_DAYS) -> list[Window]:
    """Consecutive inclusive windows covering ``start``..``end`` exactly, each at most ``max_days`` days."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    windows = []
    cursor = start
    while cursor <= end:
        window_end = min(cursor + timedelta(days=max_days - 1), end)
        windows.append(Window(cursor, window_end))
        cursor = window_end + timedelta(days=1)
    return windows


def pack_days(days: Iterable[date | str], max_days: int = MAX_WINDOW_DAYS) -> list[Window]:
    """As few windows as possible covering exactly ``days`` (ISO strings or dates, any order, duplicates ok)."""
    ordered = sorted({d if isinstance(d, date) else date.fromisoformat(str(d)) for d in days})
    windows: list[Window] = []
    run_start: date | None = None
    prev: date | None = None
    for day in ordered:
        if run_start is not None and prev is not None and day == prev + timedelta(days=1):
            prev = day
            continue
        if run_start is not None and prev is not None:
            windows.extend(split_range(run_start, prev, max_days))
        run_start = prev = day
    if run_start is not None and prev is not None:
        windows.extend(split_range(run_start, prev, max_days))
    return windows

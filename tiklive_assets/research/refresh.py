"""The platform's terms for research records: refreshed at least every ``research.refresh_days`` days, and records
the API no longer returns deleted.

A collection window is done once its search reached the last page; its ``updated_at`` in the state database is when
that happened. :func:`stale_windows` names the done windows older than ``refresh_days``: collecting one again
(``refresh``) makes a new generation of it, and the research tables keep only a window's latest complete
generation, so a video the new search no longer returns (deleted, made private) leaves ``research_videos`` and its
counters at the next load, while the raw pages stay in the archive as collected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tiklive_assets.research.quota import ResearchState
from tiklive_assets.research.windows import Window
from tiklive_assets.state import StateDB


def stale_windows(state: StateDB, refresh_days: int, now: datetime | None = None) -> list[Window]:
    """Done windows last collected more than ``refresh_days`` days before ``now``, oldest first, each once."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=refresh_days)).astimezone(UTC).isoformat(timespec="microseconds")
    research = ResearchState(state)
    with research._tx() as tx:
        rows = tx.fetchall(
            "SELECT window_key, MIN(updated_at) FROM research_windows WHERE status = 'done' AND updated_at < ? "
            "GROUP BY window_key ORDER BY MIN(updated_at), window_key",
            [cutoff],
        )
    return [Window.from_key(row[0]) for row in rows]

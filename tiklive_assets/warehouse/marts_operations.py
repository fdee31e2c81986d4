"""Marts about running the archive (each day's completeness, and what it costs).

Declared here and merged by :mod:`.marts`; :mod:`.mart_text` describes the shape.
"""

from __future__ import annotations

from datetime import date

from . import completeness
from .mart_text import Chart, Rows, columns, markdown_table, since

MARTS: tuple[str, ...] = ("daily_completeness",)
MART_SQL: dict[str, str] = {"daily_completeness": completeness.DAILY_SQL}
EXAMPLE_QUERIES: dict[str, str] = {
    "daily_completeness": "SELECT day, new_ids, resolved, dead, unresolved, problems FROM daily_completeness "
    "WHERE problems <> '' ORDER BY day DESC",
}
MART_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "daily_completeness": columns(
        f"""
        day (DATE): Archive day (UTC).
        listed (BIGINT): Distinct posts the discovery walks (accounts' posts, hashtags, searches, sounds) listed.
        new_ids (BIGINT): Of those, posts first seen that day (never listed or resolved on an earlier day): what
            the day was expected to resolve.
        resolved (BIGINT): Posts whose detail was captured that day (a refresh's re-resolution of an older post is
            not counted).
        downloaded (BIGINT): Posts whose media was stored under that day's videos/ prefix.
        dead (BIGINT): Posts whose detail answered 404 that day.
        unresolved (BIGINT): New posts neither resolved nor dead that day (over a source's daily cap, or left for
            the next run).
        sources_walked (BIGINT): Discovery sources whose walk listed at least one post.
        silent_sources (BIGINT): Sources that brought no new id while they usually do (on more than half of the
            days they listed something in the previous {completeness.BASELINE_DAYS}, at least
            {completeness.MIN_BASELINE_DAYS} of them).
        walks_cut_short (BIGINT): Walks that ended on their first page while they usually go further (same
            baseline).
        missing_profiles (BIGINT): Accounts with a profile snapshot in the previous
            {completeness.BASELINE_DAYS} days and none that day.
        problems (VARCHAR): 'kind name: problem' for each, '; '-separated (accounts by handle, other sources by
            id or search); empty when the day is complete.
        """
    ),
}
GRAIN: dict[str, str] = {
    "daily_completeness": "Completeness per archive day: what the day was expected to capture (new posts listed) "
    "against what it captured (resolved, downloaded, dead), and the sources that fell silent against their own "
    f"baseline of the previous {completeness.BASELINE_DAYS} days; one row per archive day with at least one "
    "archived API response.",
}


def _daily_completeness(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    found = rows(
        "SELECT day, new_ids, resolved, downloaded, dead, unresolved, "
        "silent_sources + walks_cut_short + missing_profiles, problems FROM daily_completeness ORDER BY day"
    )
    body = [(str(d), n, r, w, x, u, p or "complete") for d, n, r, w, x, u, _, p in found[-limit:]]
    table = markdown_table(["day", "new ids", "resolved", "downloaded", "dead", "unresolved", "problems"], body)
    first = since(up_to)
    shown = [(d, n, r, x, u, k) for d, n, r, _, x, u, k, _ in found if d >= first]
    return table, charts.completeness(shown, up_to)


CHARTS: dict[str, Chart] = {"daily_completeness": _daily_completeness}

"""Marts about engagement over a post's life (curves of its counters by age, and deleted content).

Declared here and merged by :mod:`.marts`; :mod:`.mart_text` describes the shape.

* ``engagement_curves``  per refreshed video and refresh age: its counters then, and whether it was deleted since
* ``deleted_content``    per video or account seen missing after it was captured: when first, and why
"""

from __future__ import annotations

from datetime import date

from .mart_text import Chart, Rows, columns, markdown_table, since, sparkline

MARTS: tuple[str, ...] = ("engagement_curves", "deleted_content")

# A refresh's answer is archived as post-detail/<aweme_id>-refresh<hours>h.json.gz (a copy kept beside it carries
# a .conflict-<sha> suffix after that): the key names the age the point was taken for.
_REFRESH_KEY = r"/post-detail/[0-9]+-refresh([0-9]+(?:\.[0-9]+)?)h\.json\.gz"

MART_SQL: dict[str, str] = {
    "engagement_curves": f"""
        SELECT m.aweme_id, p.author_handle, m.age_hours,
               round((epoch(m.captured_at) - p.create_time) / 3600.0, 2) AS hours_since_post,
               m.captured_at, m.play_count AS views, m.digg_count AS likes, m.comment_count AS comments,
               m.share_count AS shares, coalesce(t.deleted, false) AS deleted, m.source_key, m.dt AS day
        FROM (
            SELECT *, CAST(regexp_extract(source_key, '{_REFRESH_KEY}', 1) AS DOUBLE) AS age_hours
            FROM post_metrics_history
            WHERE regexp_matches(source_key, '{_REFRESH_KEY}')
            QUALIFY row_number() OVER (PARTITION BY aweme_id, age_hours ORDER BY captured_at, source_key) = 1
        ) m
        LEFT JOIN posts p USING (aweme_id)
        LEFT JOIN (SELECT DISTINCT id AS aweme_id, true AS deleted FROM tombstones WHERE kind = 'video') t
            USING (aweme_id)""",
    "deleted_content": """
        WITH gone AS (
            SELECT kind, id, any_value(handle) AS handle, arg_min(reason, captured_at) AS reason,
                   arg_min(http_status, captured_at) AS http_status, min(captured_at) AS first_seen_missing,
                   min(dt) AS first_day, max(dt) AS last_day, count(*) AS days_seen_missing,
                   arg_min(source_key, captured_at) AS source_key
            FROM tombstones GROUP BY kind, id
        )
        SELECT g.kind, g.id, coalesce(g.handle, p.author_handle, u.handle) AS handle, g.reason, g.http_status,
               g.first_seen_missing, g.first_day, g.last_day, g.days_seen_missing, p.play_count AS last_views,
               g.source_key
        FROM gone g
        LEFT JOIN posts p ON g.kind = 'video' AND p.aweme_id = g.id
        LEFT JOIN users u ON g.kind = 'account' AND u.user_id = g.id""",
}

EXAMPLE_QUERIES: dict[str, str] = {
    "engagement_curves": "SELECT aweme_id, age_hours, views, likes, deleted FROM engagement_curves "
    "ORDER BY aweme_id, age_hours",
    "deleted_content": "SELECT kind, id, handle, reason, first_seen_missing FROM deleted_content "
    "ORDER BY first_seen_missing DESC",
}

MART_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "engagement_curves": columns(
        """
        aweme_id (VARCHAR): The post's id.
        author_handle (VARCHAR): The author's handle (newest known).
        age_hours (DOUBLE): The refresh age the point was taken for: hours after posting (one of refresh.ages_hours).
        hours_since_post (DOUBLE): Hours from publication to the capture as it happened, rounded to 0.01 (a point is
            taken at the first refresh run after its age).
        captured_at (TIMESTAMP WITH TIME ZONE): When the counters were captured (the archived answer's fetch time).
        views (BIGINT): Views at that capture.
        likes (BIGINT): Likes at that capture.
        comments (BIGINT): Comments at that capture.
        shares (BIGINT): Shares at that capture.
        deleted (BOOLEAN): Whether a later refresh found the video deleted or private (see deleted_content).
        source_key (VARCHAR): The archived answer the point comes from.
        day (DATE): Archive day (UTC) of the capture.
        """
    ),
    "deleted_content": columns(
        """
        kind (VARCHAR): 'video' (a refresh answered not found or private) or 'account' (its daily profile capture
            did).
        id (VARCHAR): The video's aweme_id, or the account's user id (its handle when the handle no longer resolves).
        handle (VARCHAR): The account's handle, or the video's author's; NULL when never captured.
        reason (VARCHAR): The API's message the first time it was seen missing.
        http_status (INTEGER): 404, or 200 when the API said so inside a successful answer.
        first_seen_missing (TIMESTAMP WITH TIME ZONE): The first archived answer saying it is gone.
        first_day (DATE): Archive day (UTC) of that answer.
        last_day (DATE): The latest archive day on which it answered gone.
        days_seen_missing (BIGINT): Archive days on which it answered gone.
        last_views (BIGINT): A video's newest captured view count before it went; NULL for an account.
        source_key (VARCHAR): The archived answer of first_seen_missing (kept: it is the record of the deletion).
        """
    ),
}

GRAIN: dict[str, str] = {
    "engagement_curves": "Engagement over a video's life: one row per refreshed video per refresh age (hours after "
    "posting), each backed by the archived detail answer of that refresh.",
    "deleted_content": "Content that vanished after it was captured: one row per video or account whose refresh or "
    "profile capture answered not found or private, with when it was first seen missing.",
}

CURVE_LINES = 8  # lines beyond these make the chart unreadable


def _engagement_curves(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    found = rows(
        "SELECT coalesce(author_handle, '?'), aweme_id, max(views) AS peak, bool_or(deleted), "
        "list(age_hours ORDER BY age_hours), list(views ORDER BY age_hours) "
        f"FROM engagement_curves GROUP BY ALL ORDER BY peak DESC NULLS LAST, aweme_id LIMIT {limit}"
    )
    body = [
        (h, a, len(ages), peak, "yes" if gone else "", sparkline(list(views)))
        for h, a, peak, gone, ages, views in found
    ]
    table = markdown_table(["author", "video", "points", "views (last)", "deleted", "views by age"], body)
    lines = {
        f"@{h} …{a[-6:]}": [(x, y, bool(gone)) for x, y in zip(ages, views, strict=True) if y is not None]
        for h, a, _, gone, ages, views in found[:CURVE_LINES]
    }
    return table, charts.engagement_curves({label: points for label, points in lines.items() if points}, up_to)


def _deleted_content(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    first = since(up_to)
    per_day = rows(
        "SELECT first_day, count(*) FILTER (WHERE kind = 'video'), count(*) FILTER (WHERE kind = 'account') "
        "FROM deleted_content GROUP BY first_day ORDER BY first_day"
    )
    found = rows(
        "SELECT kind, id, handle, reason, first_seen_missing FROM deleted_content "
        f"ORDER BY first_seen_missing DESC, kind, id LIMIT {limit}"
    )
    body = [(k, i, h, r, str(when)) for k, i, h, r, when in found]
    table = markdown_table(["kind", "id", "handle", "reason", "first seen missing"], body)
    return table, charts.deleted_by_day([(d, v, a) for d, v, a in per_day if d >= first], up_to)


CHARTS: dict[str, Chart] = {"engagement_curves": _engagement_curves, "deleted_content": _deleted_content}

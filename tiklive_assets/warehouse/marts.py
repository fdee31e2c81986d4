"""DuckDB marts: views over the Parquet exports, in their own file an analyst opens while the pipeline writes.

``build_marts(exports, marts_path)`` writes ``TIKLIVE_HOME/marts.duckdb``: one view per warehouse table over
all exported days (entity tables reduced to their newest day), and the marts:

* ``follower_growth``        per account per day: followers (last capture of the day) and the delta to the previous day
* ``video_virality``         per capture of a video: views per hour since it was posted
* ``daily_archive_summary``  per day: videos archived, their bytes, credits, dead letters (and by reason)
* ``top_hashtags``           hashtags by number of posts, with their total plays
* ``top_sounds``             sounds by number of posts, with their total plays

The file holds views only (the data stays in Parquet), and is rebuilt under a temporary name then renamed into
place, so an analyst's read-only connection never meets a lock or a half-built file; the live warehouse is
never opened. Open it with ``tiklive sql`` (a read-only shell) or ``duckdb.connect(path, read_only=True)``.

``MART_DESCRIPTIONS`` and ``MART_COLUMNS`` state each mart's grain and columns for the catalog (a test holds the
columns to what DuckDB describes). ``mart_chart`` shows a mart as it stood on one day, the mart's SQL over the
exported days up to it (:func:`as_of_sql`): a PNG chart (:mod:`.charts`) above a table, for Dagster metadata.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

from tiklive_assets.crashpoints import crashpoint

from . import marts_engagement, marts_operations, schema
from .exports import parquet_glob
from .mart_text import CHART_DAYS, SPARK, Chart, Rows, columns, markdown_table, since, sparkline  # noqa: F401

MARTS = ("follower_growth", "video_virality", "daily_archive_summary", "top_hashtags", "top_sounds")

MART_SQL = {
    "follower_growth": """
        SELECT day, user_id, handle, followers,
               followers - lag(followers) OVER (PARTITION BY user_id ORDER BY day) AS follower_delta
        FROM (
            SELECT dt AS day, user_id, arg_max(handle, captured_at) AS handle,
                   arg_max(follower_count, captured_at) AS followers
            FROM user_snapshots GROUP BY dt, user_id
        )""",
    "video_virality": """
        SELECT m.aweme_id, p.author_handle, m.dt AS day, m.captured_at, m.play_count, p.create_time,
               round((epoch(m.captured_at) - p.create_time) / 3600.0, 2) AS hours_since_post,
               round(m.play_count / greatest((epoch(m.captured_at) - p.create_time) / 3600.0, 1.0), 1)
                   AS views_per_hour,
               m.source
        FROM post_metrics_history m JOIN posts p USING (aweme_id)""",
    "daily_archive_summary": """
        WITH days AS (SELECT DISTINCT dt FROM credits_ledger),
        videos AS (SELECT dt, count(*) AS videos_archived, sum(bytes)::BIGINT AS video_bytes
                   FROM posts_by_day WHERE storage_key LIKE 'videos/dt=' || strftime(dt, '%Y-%m-%d') || '/%'
                   GROUP BY dt),
        credits AS (SELECT dt, sum(requests)::BIGINT AS credits, sum(bytes)::BIGINT AS raw_bytes
                    FROM credits_ledger GROUP BY dt),
        dead AS (SELECT dt, count(*) AS dead_letters FROM dead_letters GROUP BY dt),
        reasons AS (SELECT dt, string_agg(reason || ': ' || n, ', ' ORDER BY n DESC, reason) AS dead_letters_by_reason
                    FROM (SELECT dt, reason, count(*) AS n FROM dead_letters GROUP BY dt, reason) GROUP BY dt)
        SELECT days.dt AS day, coalesce(videos_archived, 0) AS videos_archived, coalesce(video_bytes, 0) AS video_bytes,
               coalesce(credits, 0) AS credits, coalesce(raw_bytes, 0) AS raw_bytes,
               coalesce(dead_letters, 0) AS dead_letters, coalesce(dead_letters_by_reason, '') AS dead_letters_by_reason
        FROM days LEFT JOIN videos USING (dt) LEFT JOIN credits USING (dt) LEFT JOIN dead USING (dt)
        LEFT JOIN reasons USING (dt)""",
    "top_hashtags": """
        SELECT h.hashtag, count(DISTINCT h.aweme_id) AS posts, sum(p.play_count)::BIGINT AS total_plays,
               max(h.dt) AS last_seen
        FROM (SELECT DISTINCT hashtag, aweme_id, max(dt) OVER (PARTITION BY hashtag, aweme_id) AS dt FROM hashtags) h
        JOIN posts p USING (aweme_id)
        GROUP BY h.hashtag""",
    "top_sounds": """
        SELECT p.music_id, m.title, m.author, count(*) AS posts, sum(p.play_count)::BIGINT AS total_plays
        FROM posts p LEFT JOIN music m USING (music_id)
        WHERE p.music_id IS NOT NULL
        GROUP BY p.music_id, m.title, m.author""",
}

EXAMPLE_QUERIES = {
    "follower_growth": "SELECT * FROM follower_growth ORDER BY handle, day",
    "video_virality": "SELECT author_handle, aweme_id, max(views_per_hour) AS peak FROM video_virality "
    "GROUP BY ALL ORDER BY peak DESC LIMIT 10",
    "daily_archive_summary": "SELECT * FROM daily_archive_summary ORDER BY day DESC",
    "top_hashtags": "SELECT * FROM top_hashtags ORDER BY posts DESC, total_plays DESC LIMIT 10",
    "top_sounds": "SELECT * FROM top_sounds ORDER BY posts DESC, total_plays DESC LIMIT 10",
}


# Each mart's columns in the view's order, one a line: name (DuckDB type): meaning; a line indented further
# continues the meaning. A test holds them equal to DESCRIBE of each view.
MART_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "follower_growth": columns(
        """
        day (DATE): Archive day (UTC) of the profile captures.
        user_id (VARCHAR): The account's TikTok user id (stable across handle changes).
        handle (VARCHAR): The account's handle at its last capture that day.
        followers (BIGINT): Follower count at the day's last profile capture.
        follower_delta (BIGINT): followers minus the account's followers on its previous captured day; NULL on its
            first captured day.
        """
    ),
    "video_virality": columns(
        """
        aweme_id (VARCHAR): The post's id.
        author_handle (VARCHAR): The author's handle (newest known).
        day (DATE): Archive day (UTC) of the capture.
        captured_at (TIMESTAMP WITH TIME ZONE): When the counters were captured (the archived response's store time).
        play_count (BIGINT): Views at that capture.
        create_time (BIGINT): When the post was published, in Unix seconds (UTC).
        hours_since_post (DOUBLE): Hours from publication to the capture, rounded to 0.01.
        views_per_hour (DOUBLE): play_count divided by hours_since_post (at least 1 hour): the average rate since
            publication, rounded to 0.1.
        source (VARCHAR): Where the counters came from: 'user-posts' (an account's listing) or 'post-detail' (the
            post's own page).
        """
    ),
    "daily_archive_summary": columns(
        """
        day (DATE): Archive day (UTC).
        videos_archived (BIGINT): Posts whose media (MP4, or a photo post's images and sound) was stored under that
            day's videos/ prefix.
        video_bytes (BIGINT): Bytes of that media.
        credits (BIGINT): API credits spent, one per archived response (404s and error bodies included; retries of
            rate-limited or failed requests are not archived, so not counted).
        raw_bytes (BIGINT): Bytes of the day's archived API responses, as stored (gzip).
        dead_letters (BIGINT): Posts the API reported gone that day (their detail answered 404).
        dead_letters_by_reason (VARCHAR): 'reason: count' pairs, most frequent first; empty when none.
        """
    ),
    "top_hashtags": columns(
        """
        hashtag (VARCHAR): The hashtag, lowercase, without '#'.
        posts (BIGINT): Distinct captured posts whose title carries it.
        total_plays (BIGINT): Sum of those posts' newest play counts.
        last_seen (DATE): The latest archive day on which a captured post carried it.
        """
    ),
    "top_sounds": columns(
        """
        music_id (VARCHAR): The sound's id.
        title (VARCHAR): The sound's title; NULL when no captured post described the sound.
        author (VARCHAR): The sound's author, as TikTok names it; NULL like title.
        posts (BIGINT): Captured posts using the sound.
        total_plays (BIGINT): Sum of those posts' newest play counts.
        """
    ),
}

_GRAIN = {
    "follower_growth": "Follower growth: one row per account per archive day on which its profile was captured "
    "(the day's last capture counts).",
    "video_virality": "How fast posts gather views: one row per capture of a post's counters (from a listing or "
    "the post's own page), with the post's publication time.",
    "daily_archive_summary": "What each archive day captured and cost: one row per archive day with at least one "
    "archived API response.",
    "top_hashtags": "Hashtags by reach: one row per hashtag found in the title of a captured post, over all days.",
    "top_sounds": "Sounds by reach: one row per sound used by at least one captured post, over all days.",
}


def default_marts_path(home: Path) -> Path:
    return Path(home) / "marts.duckdb"


def _newest(spec: schema.Table) -> str:
    """An entity table as of its newest day: one row per key from ``<name>_by_day``, sticky columns kept."""
    key = ", ".join(spec.key)
    newest = f"SELECT * FROM {spec.name}_by_day QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY dt DESC) = 1"
    if not spec.sticky:
        return newest
    known = ", ".join(f"arg_max({c}, dt) FILTER (WHERE {c} IS NOT NULL) AS {c}" for c in spec.sticky)
    replace = ", ".join(f"coalesce(n.{c}, k.{c}) AS {c}" for c in spec.sticky)
    return (
        f"SELECT n.* REPLACE ({replace}) FROM ({newest}) n "
        f"LEFT JOIN (SELECT {key}, {known} FROM {spec.name}_by_day GROUP BY {key}) k USING ({key})"
    )


def _table_views(exports: Path) -> list[str]:
    return table_views(lambda table: str(parquet_glob(exports, table)))


def table_views(glob_of: Callable[[str], str]) -> list[str]:
    """Every table's views over the Parquet files ``glob_of(table)`` names (a local path or an ``s3://`` URL,
    already quoted for SQL): the day's rows of a window table; the newest row per key of the others."""
    statements = []
    for spec in schema.TABLES:
        raw = f"read_parquet('{glob_of(spec.name)}', hive_partitioning = false, union_by_name = true)"
        if spec.mode == "window":
            statements.append(f"CREATE VIEW {spec.name} AS SELECT * FROM {raw}")
            continue
        statements.append(f"CREATE VIEW {spec.name}_by_day AS SELECT * FROM {raw}")
        statements.append(f"CREATE VIEW {spec.name} AS {_newest(spec)}")
    return statements


def exports_connection(exports: Path):
    """An in-memory DuckDB connection with every table's view over ``exports``, as the marts file holds them (for
    a computation over the exports that needs no marts file, such as the completeness check)."""
    import duckdb

    con = duckdb.connect()
    for statement in _table_views(exports):
        con.execute(statement)
    return con


def as_of_sql(mart: str, query: str) -> str:
    """``query`` run against ``mart`` as it stood on day ``$day``: the mart's SQL over the exported days <= $day.

    Every table is shadowed by a CTE of the same name (history and event tables cut at ``$day``, entity tables
    reduced to their newest row up to ``$day``), so an earlier partition's chart and row count show what that day
    showed, not the newest counters.
    """
    if mart not in MART_SQL:
        raise KeyError(f"unknown mart {mart!r}; known: {', '.join(MARTS)}")
    ctes = []
    for spec in schema.TABLES:
        if spec.mode == "window":
            ctes.append(f"{spec.name} AS (SELECT * FROM main.{spec.name} WHERE dt <= $day)")
        else:
            ctes.append(f"{spec.name}_by_day AS (SELECT * FROM main.{spec.name}_by_day WHERE dt <= $day)")
            ctes.append(f"{spec.name} AS ({_newest(spec)})")
    ctes.append(f"{mart} AS ({MART_SQL[mart]})")
    return "WITH " + ",\n".join(ctes) + "\n" + query


def build_marts(exports: Path, marts_path: Path) -> Path:
    """(Re)write the marts file: views over ``exports``; swapped into place atomically."""
    import duckdb

    from .backends import WarehouseError
    from .exports import exported_days

    missing = [spec.name for spec in schema.TABLES if not exported_days(exports, spec.name)]
    if missing:
        raise WarehouseError(
            f"no Parquet exports of {', '.join(missing)} under {exports}: materialize parquet_exports for at least "
            "one day first (or `tiklive replay --exports`)"
        )
    marts_path = Path(marts_path).absolute()
    marts_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{marts_path.name}.", suffix=".tmp", dir=marts_path.parent)
    os.close(fd)
    os.unlink(tmp)  # duckdb creates the file itself
    try:
        con = duckdb.connect(tmp)
        try:
            for statement in _table_views(exports):
                con.execute(statement)
            for name, sql in MART_SQL.items():
                con.execute(f"CREATE VIEW {name} AS {sql}")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        crashpoint("marts.swap")
        os.replace(tmp, marts_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".wal").unlink(missing_ok=True)
    return marts_path


def query_marts(marts_path: Path, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of a read-only query against the marts file."""
    import duckdb

    con = duckdb.connect(str(marts_path), read_only=True)
    try:
        used = {name: value for name, value in (params or {}).items() if f"${name}" in sql}
        relation = con.sql(sql, params=used or None)
        return relation.columns, relation.fetchall()
    finally:
        con.close()


CHART_LINES = {"follower_growth": 8, "video_virality": 6}  # lines beyond these make a chart unreadable


def mart_row_count(marts_path: Path, mart: str, up_to: date) -> int:
    """Rows the mart held as of ``up_to`` (as :func:`mart_chart` counts them), without drawing anything."""
    _, ((count,),) = query_marts(marts_path, as_of_sql(mart, f"SELECT count(*) FROM {mart}"), {"day": up_to})
    return count


def mart_chart(marts_path: Path, mart: str, up_to: date, limit: int = 10) -> tuple[int, str]:
    """(rows the mart held as of ``up_to``, markdown: a PNG chart of it above a table) for Dagster metadata.

    "As of" is the mart over the exported days up to and including ``up_to`` only (:func:`as_of_sql`), so each
    partition of a backfill shows what that day showed. A mart with nothing up to that day still gives a chart,
    one saying "no data".
    """
    import duckdb

    con = duckdb.connect(str(marts_path), read_only=True)
    try:

        def rows(query: str) -> list[tuple]:
            return con.execute(as_of_sql(mart, query), {"day": up_to}).fetchall()

        ((total,),) = rows(f"SELECT count(*) FROM {mart}")  # an unknown mart is refused here
        table, image = _CHARTS[mart](rows, mart, up_to, limit)
    finally:
        con.close()
    return total, f"{image}\n\n{table}"


def _follower_growth(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    first = since(up_to)
    found = rows(
        "SELECT coalesce(arg_max(handle, day), user_id), user_id, list(day ORDER BY day), "
        "list(followers ORDER BY day), list(follower_delta ORDER BY day) "
        "FROM follower_growth GROUP BY user_id ORDER BY 1, user_id"
    )
    body = [
        (h, f[-1], d[-1], sparkline([n for day, n in zip(ds, f, strict=True) if day >= first]))
        for h, _, ds, f, d in found
    ]
    table = markdown_table(["account", "followers", "Δ since previous capture", "followers, last 30 days"], body)
    handles = Counter(h for h, *_ in found)  # a handle two accounts held in turn keeps both lines apart
    series = {
        h if handles[h] == 1 else f"{h} ({user})": [
            (day, n) for day, n in zip(ds, f, strict=True) if day >= first and n is not None
        ]
        for h, user, ds, f, _ in found
    }
    series = {h: points for h, points in series.items() if points}
    shown = sorted(series, key=lambda h: (-abs(series[h][-1][1] - series[h][0][1]), h))
    image = charts.follower_growth({h: series[h] for h in sorted(shown[: CHART_LINES[mart]])}, up_to, of=len(series))
    return table, image


def _video_virality(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    found = rows(
        "SELECT author_handle, aweme_id, max(views_per_hour) AS peak, "
        "list(hours_since_post ORDER BY captured_at), list(views_per_hour ORDER BY captured_at) "
        f"FROM video_virality GROUP BY ALL ORDER BY peak DESC, aweme_id LIMIT {limit}"
    )
    body = [(h, a, p, sparkline(v[-CHART_DAYS:])) for h, a, p, _, v in found]
    table = markdown_table(["author", "video", "peak views/hour", "views/hour per capture"], body)
    lines = {
        f"@{h} …{a[-6:]}": [(x, y) for x, y in zip(hs, v, strict=True) if x is not None and y is not None]
        for h, a, _, hs, v in found[: CHART_LINES[mart]]
    }
    return table, charts.video_virality({label: points for label, points in lines.items() if points}, up_to)


def _daily_archive_summary(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    first = since(up_to)
    found = rows(
        "SELECT day, videos_archived, video_bytes, credits, raw_bytes, dead_letters, "
        "dead_letters_by_reason FROM daily_archive_summary ORDER BY day"
    )
    body = [(str(d), v, f"{b / 1e6:.1f} MB", c, n, why) for d, v, b, c, _, n, why in found[-limit:]]
    if found:  # the month's credits and their projection, under the days
        body += _credits_forecast(rows, up_to)
    table = markdown_table(["day", "videos", "bytes", "credits", "dead letters", "by reason"], body)
    return table, charts.archive_summary([(d, c, b, r) for d, _, b, c, r, _, _ in found if d >= first], up_to)


def _credits_forecast(rows: Rows, up_to: date) -> list[tuple]:
    """Two rows under the days: the month's credits up to ``up_to`` (from the ledger of archived responses) and
    its projection (what the month spent, plus the mean of the last 7 complete days for each day left)."""
    from .cost import TREND_DAYS, credits_forecast

    by_day: dict[date, dict[str, int]] = {}
    for day, endpoint, credits in rows(
        f"SELECT dt, endpoint, sum(requests)::BIGINT FROM credits_ledger WHERE dt > $day - {2 * TREND_DAYS + 31} "
        "GROUP BY ALL"
    ):
        by_day.setdefault(day, {})[endpoint] = credits

    class Archived:
        @staticmethod
        def credits_spent(day: date) -> dict[str, int]:
            return by_day.get(day, {})

    forecast = credits_forecast(Archived(), up_to)
    change = "" if forecast.change is None else f" ({forecast.change:+.0%} against the {TREND_DAYS} before)"
    sources = ", ".join(f"{source} {n:,}" for source, n in forecast.by_source.items()) or "none"
    return [
        (f"**{up_to:%Y-%m} so far**", "", "", forecast.spent, "", f"credits by source: {sources}"),
        (
            f"**{up_to:%Y-%m} projected**",
            "",
            "",
            forecast.projected,
            "",
            f"{forecast.per_day:,.1f} credits a day over the last {TREND_DAYS} days{change}; storage: "
            "cost_forecast, `tiklive cost`",
        ),
    ]


def _ranking(rows: Rows, mart: str, up_to: date, limit: int) -> tuple[str, str]:
    from . import charts

    hashtags = mart == "top_hashtags"
    name = "'#' || hashtag" if hashtags else "coalesce(title || ' · ' || author, title, music_id)"
    found = rows(
        f"SELECT {name} AS name, posts, total_plays FROM {mart} "
        f"ORDER BY posts DESC, total_plays DESC, name LIMIT {limit}"
    )
    peak = max((r[1] for r in found), default=1) or 1
    body = [(n, p, t, "█" * max(1, round(p / peak * 20))) for n, p, t in found]
    table = markdown_table(["#hashtag" if hashtags else "sound", "posts", "total plays", "posts"], body)
    return table, charts.ranking(f"Top {'hashtags' if hashtags else 'sounds'} by posts", found, up_to)


# mart -> what draws it: (its rows as of the day, the mart, the day, rows to list) -> (markdown table, chart)
_CHARTS: dict[str, Chart] = {
    "follower_growth": _follower_growth,
    "video_virality": _video_virality,
    "daily_archive_summary": _daily_archive_summary,
    "top_hashtags": _ranking,
    "top_sounds": _ranking,
}

# marts declared in their own modules, merged into the registries above
for _module in (marts_engagement, marts_operations):
    MARTS += _module.MARTS
    MART_SQL.update(_module.MART_SQL)
    EXAMPLE_QUERIES.update(_module.EXAMPLE_QUERIES)
    MART_COLUMNS.update(_module.MART_COLUMNS)
    _GRAIN.update(_module.GRAIN)
    _CHARTS.update(_module.CHARTS)

MART_DESCRIPTIONS: dict[str, str] = {
    mart: "\n".join(
        [
            _GRAIN[mart],
            "",
            *(f"- `{name}` ({kind}): {meaning}" for name, kind, meaning in MART_COLUMNS[mart]),
            "",
            f"A view named `{mart}` in TIKLIVE_HOME/marts.duckdb over the Parquet exports (the data stays in Parquet); "
            "open it read-only with `tiklive sql`.",
        ]
    )
    for mart in MARTS
}

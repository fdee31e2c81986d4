"""DuckDB marts: views over the Parquet exports, in their own file an analyst opens while the pipeline writes.

``build_marts(exports, marts_path)`` writes ``TIKLIVE_HOME/marts.duckdb``: one view per warehouse table over
all exported days (entity tables reduced to their newest day), and the marts:

* ``follower_growth``        per account per day: followers (last capture of the day) and the delta to the previous day
* ``video_virality``         per capture of a video: views per hour since it was posted
* ``daily_archive_summary``  per day: videos archived, their bytes, credits, dead letters (and by reason)
* ``top_hashtags``           hashtags by number of posts, with their total plays
* ``top_sounds``             sounds by number of posts, with their total plays

The file holds views only (the data stays in Parquet), and is rebuilt under a temporary name then renamed into
place, so an analyst's ``duckdb marts.duckdb`` never meets a lock or a half-built file; the live warehouse is
never opened. Open it with ``duckdb -readonly TIKLIVE_HOME/marts.duckdb`` or
``duckdb.connect(path, read_only=True)``.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

from tiklive_assets.crashpoints import crashpoint

from . import schema
from .exports import parquet_glob

MARTS = ("follower_growth", "video_virality", "daily_archive_summary", "top_hashtags", "top_sounds")
SPARK = "▁▂▃▄▅▆▇█"

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
               round(m.play_count / greatest((epoch(m.captured_at) - p.create_time) / 3600.0, 1.0), 1) AS views_per_hour,
               m.source
        FROM post_metrics_history m JOIN posts p USING (aweme_id)""",
    "daily_archive_summary": """
        WITH days AS (SELECT DISTINCT dt FROM credits_ledger),
        videos AS (SELECT dt, count(*) AS videos_archived, sum(bytes) AS video_bytes
                   FROM posts_by_day WHERE storage_key LIKE 'videos/dt=' || strftime(dt, '%Y-%m-%d') || '/%'
                   GROUP BY dt),
        credits AS (SELECT dt, sum(requests) AS credits, sum(bytes) AS raw_bytes FROM credits_ledger GROUP BY dt),
        dead AS (SELECT dt, count(*) AS dead_letters FROM dead_letters GROUP BY dt),
        reasons AS (SELECT dt, string_agg(reason || ': ' || n, ', ' ORDER BY n DESC, reason) AS dead_letters_by_reason
                    FROM (SELECT dt, reason, count(*) AS n FROM dead_letters GROUP BY dt, reason) GROUP BY dt)
        SELECT days.dt AS day, coalesce(videos_archived, 0) AS videos_archived, coalesce(video_bytes, 0) AS video_bytes,
               coalesce(credits, 0) AS credits, coalesce(raw_bytes, 0) AS raw_bytes,
               coalesce(dead_letters, 0) AS dead_letters, coalesce(dead_letters_by_reason, '') AS dead_letters_by_reason
        FROM days LEFT JOIN videos USING (dt) LEFT JOIN credits USING (dt) LEFT JOIN dead USING (dt)
        LEFT JOIN reasons USING (dt)""",
    "top_hashtags": """
        SELECT h.hashtag, count(DISTINCT h.aweme_id) AS posts, sum(p.play_count) AS total_plays,
               max(h.dt) AS last_seen
        FROM (SELECT DISTINCT hashtag, aweme_id, max(dt) OVER (PARTITION BY hashtag, aweme_id) AS dt FROM hashtags) h
        JOIN posts p USING (aweme_id)
        GROUP BY h.hashtag""",
    "top_sounds": """
        SELECT p.music_id, m.title, m.author, count(*) AS posts, sum(p.play_count) AS total_plays
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


def default_marts_path(home: Path) -> Path:
    return Path(home) / "marts.duckdb"


def _table_views(exports: Path) -> list[str]:
    statements = []
    for spec in schema.TABLES:
        raw = f"read_parquet('{parquet_glob(exports, spec.name)}', hive_partitioning = false, union_by_name = true)"
        if spec.mode == "window":
            statements.append(f"CREATE VIEW {spec.name} AS SELECT * FROM {raw}")
            continue
        statements.append(f"CREATE VIEW {spec.name}_by_day AS SELECT * FROM {raw}")
        key = ", ".join(spec.key)
        newest = (f"SELECT * FROM {spec.name}_by_day "
                  f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY dt DESC) = 1")
        if spec.sticky:
            known = ", ".join(f"arg_max({c}, dt) FILTER (WHERE {c} IS NOT NULL) AS {c}" for c in spec.sticky)
            replace = ", ".join(f"coalesce(n.{c}, k.{c}) AS {c}" for c in spec.sticky)
            statements.append(
                f"CREATE VIEW {spec.name} AS SELECT n.* REPLACE ({replace}) FROM ({newest}) n "
                f"LEFT JOIN (SELECT {key}, {known} FROM {spec.name}_by_day GROUP BY {key}) k USING ({key})"
            )
        else:
            statements.append(f"CREATE VIEW {spec.name} AS {newest}")
    return statements


def build_marts(exports: Path, marts_path: Path) -> Path:
    """(Re)write the marts file: views over ``exports``; swapped into place atomically."""
    import duckdb

    from .backends import WarehouseError
    from .exports import exported_days

    missing = [spec.name for spec in schema.TABLES if not exported_days(exports, spec.name)]
    if missing:
        raise WarehouseError(
            f"no Parquet exports of {', '.join(missing)} under {exports}: materialize exports/parquet for at least "
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


def sparkline(values: list[float | int | None]) -> str:
    """``▁▃▅█``: one character per value, scaled between the series' minimum and maximum."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1
    return "".join(" " if v is None else SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))]
                   for v in values)


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if v is None else (f"{v:,}" if isinstance(v, int) else str(v)) for v in row) + " |")
    return "\n".join(lines)


def mart_chart(marts_path: Path, mart: str, up_to: date, limit: int = 10) -> tuple[int, str]:
    """(rows in the mart up to ``up_to``, a small markdown chart of it) for Dagster metadata."""
    day = {"day": up_to}
    if mart == "follower_growth":
        _, rows = query_marts(marts_path, "SELECT handle, list(followers ORDER BY day), list(follower_delta ORDER BY day), "
                              "count(*) FROM follower_growth WHERE day <= $day GROUP BY handle ORDER BY handle", day)
        body = [(h, f[-1], d[-1], sparkline(f[-30:])) for h, f, d, _ in rows]
        return sum(r[3] for r in rows), markdown_table(["account", "followers", "Δ last day", "followers, last 30 days"], body)
    if mart == "video_virality":
        _, rows = query_marts(marts_path, "SELECT author_handle, aweme_id, max(views_per_hour) AS peak, "
                              "list(views_per_hour ORDER BY captured_at) FROM video_virality WHERE day <= $day "
                              f"GROUP BY ALL ORDER BY peak DESC, aweme_id LIMIT {limit}", day)
        (total,), = query_marts(marts_path, "SELECT count(*) FROM video_virality WHERE day <= $day", day)[1]
        body = [(h, a, p, sparkline(s[-30:])) for h, a, p, s in rows]
        return total, markdown_table(["author", "video", "peak views/hour", "views/hour per capture"], body)
    if mart == "daily_archive_summary":
        _, rows = query_marts(marts_path, "SELECT day, videos_archived, video_bytes, credits, dead_letters, "
                              "dead_letters_by_reason FROM daily_archive_summary WHERE day <= $day ORDER BY day", day)
        trend = sparkline([r[1] for r in rows[-30:]])
        body = [(str(d), v, f"{b / 1e6:.1f} MB", c, n, why) for d, v, b, c, n, why in rows[-limit:]]
        table = markdown_table(["day", "videos", "bytes", "credits", "dead letters", "by reason"], body)
        return len(rows), f"videos archived per day: `{trend}`\n\n{table}"
    if mart in ("top_hashtags", "top_sounds"):
        label = "#hashtag" if mart == "top_hashtags" else "sound"
        name = "'#' || hashtag" if mart == "top_hashtags" else "coalesce(title, music_id)"
        seen = "last_seen <= $day" if mart == "top_hashtags" else "TRUE"
        _, rows = query_marts(marts_path, f"SELECT {name}, posts, total_plays FROM {mart} WHERE {seen} "
                              f"ORDER BY posts DESC, total_plays DESC LIMIT {limit}", day)
        (total,), = query_marts(marts_path, f"SELECT count(*) FROM {mart}")[1]
        peak = max((r[1] for r in rows), default=1) or 1
        body = [(n, p, t, "█" * max(1, round(p / peak * 20))) for n, p, t in rows]
        return total, markdown_table([label, "posts", "total plays", "posts"], body)
    raise KeyError(f"unknown mart {mart!r}; known: {', '.join(MARTS)}")

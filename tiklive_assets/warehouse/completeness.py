"""Completeness per archive day and source: what a day was expected to capture against what it captured.

A day that silently brings nothing is the costliest failure an archive has: the API only serves the present, so a
day missed is lost. Everything here is derived from the Parquet exports (themselves derived from the raw archive
alone), so a replayed day gives the same answer.

Per day: ids listed by the discovery walks, of which new (never listed or resolved on an earlier day), resolved
(a ``/post-detail/`` answer; a refresh's re-resolution of an older post is not one), downloaded (media stored
under that day's ``videos/`` prefix), dead (the detail answered 404) and new ids neither resolved nor dead that
day. Per source, one row per day and source expected:

* a **walk** is one discovery source (an account's posts, a hashtag, a keyword search, a sound), named by its
  listing's archive slug; its pages are the pages that listed at least one post (as the archive index and the
  metrics history name them), its new ids those first seen that day;
* an account's **profile**: whether the day holds a profile snapshot of it.

The rule ("usually" is a baseline over the previous ``BASELINE_DAYS`` = 7 days, the source's own):

* ``no new ids``: a walk that brought no new id (or listed nothing at all) while on more than half of the days
  it listed something in the baseline, at least ``MIN_BASELINE_DAYS`` = 2 of them, it brought new ids;
* ``first page only``: a walk that ended on its first page while on more than half of its baseline days (at least
  2) it went further;
* ``no profile snapshot``: an account with a profile snapshot on a day of the baseline and none that day.

A source is expected on a day when it was walked on that day or on one of the previous 7; a brand-new source has
no baseline and never fails, and a source that stopped being walked leaves the baseline after 7 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

BASELINE_DAYS = 7  # the days before a day that make a source's baseline
MIN_BASELINE_DAYS = 2  # baseline days a source needs (days it listed something) before it can fail
OK = "ok"
NO_NEW_IDS = "no new ids"
FIRST_PAGE_ONLY = "first page only"
NO_PROFILE = "no profile snapshot"
PROBLEMS = (NO_NEW_IDS, FIRST_PAGE_ONLY, NO_PROFILE)

# the discovery walks: listing endpoint -> the kind of tracked source it serves (tiklive.yaml's sections)
WALKS = {"user-posts": "account", "challenge-posts": "hashtag", "search-video": "keyword", "music-posts": "music"}
PROFILE = "profile"
# a listing page's slug: <entity>-cursor<N>, whatever follows (a conflict copy's suffix)
_PAGE = r"'/([^/]+)-cursor([0-9]+)\.json\.gz'"
_FIRST_DETAIL = r"'/post-detail/[0-9]+\.json\.gz'"  # a post's first detail; a refresh's slug has a suffix
_ENDPOINT = r"'^[^/]+/[0-9]{4}/[0-9]{2}/[0-9]{2}/([^/]+)/'"  # a raw key's endpoint
_WALK_LIST = ", ".join(f"'{endpoint}'" for endpoint in WALKS)
_KIND = "CASE endpoint " + " ".join(f"WHEN '{e}' THEN '{k}'" for e, k in WALKS.items()) + " END"

# Per day and source: the CTEs below, over the warehouse's table views (post_metrics_history, archive_index,
# dead_letters, user_snapshots, users, credits_ledger); ``source_days`` holds one row per day and expected source.
SOURCE_CTES = f"""
    cl_days AS (SELECT DISTINCT dt FROM credits_ledger),
    cl_pages AS (
        SELECT dt, source_key AS key, aweme_id FROM post_metrics_history WHERE source IN ({_WALK_LIST})
        UNION
        SELECT dt, key, aweme_id FROM archive_index
        WHERE aweme_id <> '' AND regexp_extract(key, {_ENDPOINT}, 1) IN ({_WALK_LIST})),
    cl_listed AS (
        SELECT dt, regexp_extract(key, {_ENDPOINT}, 1) AS endpoint, regexp_extract(key, {_PAGE}, 1) AS entity,
               regexp_extract(key, {_PAGE}, 2) AS page, aweme_id
        FROM cl_pages),
    cl_first AS (
        SELECT aweme_id, min(dt) AS first_dt
        FROM (SELECT dt, aweme_id FROM post_metrics_history UNION ALL SELECT dt, aweme_id FROM cl_listed)
        GROUP BY aweme_id),
    cl_walks AS (
        SELECT l.dt, l.endpoint, l.entity, count(DISTINCT l.page) AS pages, count(DISTINCT l.aweme_id) AS listed,
               count(DISTINCT l.aweme_id) FILTER (WHERE f.first_dt = l.dt) AS new_ids
        FROM cl_listed l JOIN cl_first f USING (aweme_id) WHERE l.entity <> '' GROUP BY ALL),
    cl_expected AS (
        SELECT DISTINCT d.dt, w.endpoint, w.entity FROM cl_days d
        JOIN cl_walks w ON w.dt BETWEEN d.dt - {BASELINE_DAYS} AND d.dt),
    cl_baseline AS (
        SELECT e.dt, e.endpoint, e.entity, count(b.dt) AS baseline_days,
               count(b.dt) FILTER (WHERE b.new_ids > 0) AS baseline_new_days,
               count(b.dt) FILTER (WHERE b.pages > 1) AS baseline_deep_days
        FROM cl_expected e LEFT JOIN cl_walks b
          ON b.endpoint = e.endpoint AND b.entity = e.entity AND b.dt >= e.dt - {BASELINE_DAYS} AND b.dt < e.dt
        GROUP BY ALL),
    cl_profiles AS (SELECT DISTINCT dt, user_id FROM user_snapshots),
    cl_profile_baseline AS (
        SELECT d.dt, p.user_id, count(*) AS baseline_days FROM cl_days d
        JOIN cl_profiles p ON p.dt >= d.dt - {BASELINE_DAYS} AND p.dt < d.dt GROUP BY ALL),
    source_days AS (
        SELECT b.dt AS day, {_KIND} AS kind, b.endpoint, b.entity,
               CASE WHEN b.endpoint = 'user-posts' THEN coalesce(u.handle, b.entity) ELSE b.entity END AS name,
               coalesce(w.pages, 0)::BIGINT AS pages, coalesce(w.listed, 0)::BIGINT AS listed,
               coalesce(w.new_ids, 0)::BIGINT AS new_ids, b.baseline_days::BIGINT AS baseline_days,
               b.baseline_new_days::BIGINT AS baseline_new_days, b.baseline_deep_days::BIGINT AS baseline_deep_days,
               CASE
                 WHEN coalesce(w.new_ids, 0) = 0 AND b.baseline_days >= {MIN_BASELINE_DAYS}
                      AND b.baseline_new_days * 2 > b.baseline_days THEN '{NO_NEW_IDS}'
                 WHEN w.pages = 1 AND b.baseline_days >= {MIN_BASELINE_DAYS}
                      AND b.baseline_deep_days * 2 > b.baseline_days THEN '{FIRST_PAGE_ONLY}'
                 ELSE '{OK}' END AS status
        FROM cl_baseline b LEFT JOIN cl_walks w USING (dt, endpoint, entity)
        LEFT JOIN users u ON b.endpoint = 'user-posts' AND u.user_id = b.entity
        UNION ALL
        SELECT e.dt, '{PROFILE}', '{PROFILE}', e.user_id, coalesce(u.handle, e.user_id),
               (p.user_id IS NOT NULL)::BIGINT, NULL, NULL, e.baseline_days::BIGINT, NULL, NULL,
               CASE WHEN p.user_id IS NULL THEN '{NO_PROFILE}' ELSE '{OK}' END
        FROM cl_profile_baseline e LEFT JOIN cl_profiles p USING (dt, user_id) LEFT JOIN users u USING (user_id)
        UNION ALL
        SELECT p.dt, '{PROFILE}', '{PROFILE}', p.user_id, coalesce(u.handle, p.user_id), 1, NULL, NULL, 0, NULL,
               NULL, '{OK}'
        FROM cl_profiles p LEFT JOIN users u USING (user_id)
        WHERE NOT EXISTS (SELECT 1 FROM cl_profile_baseline e WHERE e.dt = p.dt AND e.user_id = p.user_id))"""

# The daily_completeness mart: one row per archive day with at least one archived API response.
DAILY_SQL = f"""
        WITH {SOURCE_CTES},
        cl_day_listed AS (
            SELECT l.dt, count(DISTINCT l.aweme_id) AS listed,
                   count(DISTINCT l.aweme_id) FILTER (WHERE f.first_dt = l.dt) AS new_ids
            FROM cl_listed l JOIN cl_first f USING (aweme_id) GROUP BY l.dt),
        cl_resolved AS (  -- a post's first detail (its slug is its id), not a refresh's re-resolution
            SELECT DISTINCT dt, aweme_id FROM post_metrics_history
            WHERE source = 'post-detail' AND regexp_matches(source_key, {_FIRST_DETAIL})),
        cl_dead AS (SELECT DISTINCT dt, aweme_id FROM dead_letters),
        cl_new AS (SELECT DISTINCT l.dt, l.aweme_id FROM cl_listed l JOIN cl_first f USING (aweme_id)
                   WHERE f.first_dt = l.dt),
        cl_unresolved AS (
            SELECT n.dt, count(*) AS unresolved FROM cl_new n
            WHERE NOT EXISTS (SELECT 1 FROM cl_resolved r WHERE r.dt = n.dt AND r.aweme_id = n.aweme_id)
              AND NOT EXISTS (SELECT 1 FROM cl_dead x WHERE x.dt = n.dt AND x.aweme_id = n.aweme_id)
            GROUP BY n.dt),
        cl_downloaded AS (
            SELECT dt, count(*) AS downloaded FROM posts_by_day
            WHERE storage_key LIKE 'videos/dt=' || strftime(dt, '%Y-%m-%d') || '/%' GROUP BY dt),
        cl_sources AS (
            SELECT day AS dt, count(*) FILTER (WHERE kind <> '{PROFILE}' AND pages > 0) AS sources_walked,
                   count(*) FILTER (WHERE status = '{NO_NEW_IDS}') AS silent_sources,
                   count(*) FILTER (WHERE status = '{FIRST_PAGE_ONLY}') AS walks_cut_short,
                   count(*) FILTER (WHERE status = '{NO_PROFILE}') AS missing_profiles,
                   string_agg(kind || ' ' || name || ': ' || status, '; ' ORDER BY kind, name)
                       FILTER (WHERE status <> '{OK}') AS problems
            FROM source_days GROUP BY day)
        SELECT d.dt AS day, coalesce(l.listed, 0)::BIGINT AS listed, coalesce(l.new_ids, 0)::BIGINT AS new_ids,
               (SELECT count(*) FROM cl_resolved r WHERE r.dt = d.dt) AS resolved,
               coalesce(w.downloaded, 0)::BIGINT AS downloaded,
               (SELECT count(*) FROM cl_dead x WHERE x.dt = d.dt) AS dead,
               coalesce(u.unresolved, 0)::BIGINT AS unresolved,
               coalesce(s.sources_walked, 0)::BIGINT AS sources_walked,
               coalesce(s.silent_sources, 0)::BIGINT AS silent_sources,
               coalesce(s.walks_cut_short, 0)::BIGINT AS walks_cut_short,
               coalesce(s.missing_profiles, 0)::BIGINT AS missing_profiles,
               coalesce(s.problems, '') AS problems
        FROM cl_days d LEFT JOIN cl_day_listed l USING (dt) LEFT JOIN cl_downloaded w USING (dt)
        LEFT JOIN cl_unresolved u USING (dt) LEFT JOIN cl_sources s USING (dt)"""

SOURCE_DAYS_SQL = f"WITH {SOURCE_CTES}\nSELECT * FROM source_days WHERE day = $day ORDER BY kind, name"


@dataclass(frozen=True)
class SourceDay:
    """One expected source on one day (a walk, or an account's profile), with its baseline and status."""

    day: date
    kind: str  # account, hashtag, keyword, music (walks) or profile
    endpoint: str
    entity: str  # the walk's slug entity (user id, challenge id, search, sound id) or the profile's user id
    name: str  # the handle of an account, else the entity
    pages: int
    listed: int | None
    new_ids: int | None
    baseline_days: int
    baseline_new_days: int | None
    baseline_deep_days: int | None
    status: str

    @property
    def failed(self) -> bool:
        return self.status != OK

    def label(self) -> str:
        """``account @bob``, ``hashtag 1001``, ``profile of @bob``."""
        if self.kind == PROFILE:
            return f"profile of @{self.name}"
        return f"account @{self.name}" if self.kind == "account" else f"{self.kind} {self.name}"

    def why(self) -> str:
        """The failure in words, with the baseline that made it one."""
        window = f"of the previous {BASELINE_DAYS} days"
        if self.status == NO_NEW_IDS:
            listed = "listed nothing" if not self.listed else f"listed {self.listed} id(s), none new"
            return (
                f"{self.label()} brought no new ids on {self.day} ({listed}); it brought new ids on "
                f"{self.baseline_new_days} of its {self.baseline_days} walked days {window}"
            )
        if self.status == FIRST_PAGE_ONLY:
            return (
                f"{self.label()}'s walk ended on its first page on {self.day}; it went further on "
                f"{self.baseline_deep_days} of its {self.baseline_days} walked days {window}"
            )
        if self.status == NO_PROFILE:
            return (
                f"{self.label()} has no profile snapshot on {self.day}; it had one on {self.baseline_days} "
                f"day(s) {window}"
            )
        return f"{self.label()}: {self.status}"

    def as_json(self) -> dict:
        return {
            "source": self.label(),
            "endpoint": self.endpoint,
            "entity": self.entity,
            "pages": self.pages,
            "listed": self.listed,
            "new_ids": self.new_ids,
            "baseline_days": self.baseline_days,
            "baseline_new_days": self.baseline_new_days,
            "baseline_deep_days": self.baseline_deep_days,
            "status": self.status,
        }


def source_days(exports: Path, day: date) -> list[SourceDay]:
    """Every source expected on ``day`` (walked that day or in its baseline), from the Parquet exports up to it."""
    from .marts import exports_connection

    con = exports_connection(exports)
    try:
        rows = con.execute(SOURCE_DAYS_SQL, {"day": day}).fetchall()
    finally:
        con.close()
    return [SourceDay(*row) for row in rows]


def day_totals(exports: Path, day: date) -> dict[str, object]:
    """The ``daily_completeness`` row of ``day`` (column -> value), or {} when the day captured nothing."""
    from .marts import exports_connection

    con = exports_connection(exports)
    try:
        cursor = con.execute(f"SELECT * FROM ({DAILY_SQL}) WHERE day = $day", {"day": day})
        rows = cursor.fetchall()
        names = [column[0] for column in cursor.description or ()]
        return dict(zip(names, rows[0], strict=True)) if rows else {}
    finally:
        con.close()

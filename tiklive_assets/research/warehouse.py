"""Research API tables, derived only from the ``research-raw/`` archive (so ``tiklive replay`` rebuilds them).

Knows nothing of the client: it lists archived objects, parses their keys and bodies, and replaces four tables
in the main warehouse file (``TIKLIVE_HOME/warehouse.duckdb``) or a Postgres database given by URL:

- ``research_videos``: one row per video ``id`` (the fields the video query asks for), values of its latest capture;
- ``research_video_counters``: the counters (views, likes, comments, shares) per video per capture day
  (the ingest date of the archived page), the history re-collections build up (replaced generations' pages
  count as captures too; one row per video and day);
- ``research_users``: user info per username per capture day;
- ``research_follows``: follower / following edges per capture day;
- ``research_comments``: one row per comment ``id`` (``--with-comments``), values of its latest capture.

Ids (video, music, playlist, comment, parent) are TEXT from the JSON integer as parsed (``json.loads`` keeps
every digit) and never pass through a float: a float keeps 15-17 digits and TikTok ids have 19. NUL characters,
which Postgres rejects in TEXT, are stripped and counted (``nul_stripped``); a missing or unreadable per-item
field becomes NULL and is counted (``nulled``).

Window-level idempotency: pages are grouped by (query hash, window); the latest *complete* generation of a
window (one that reached ``has_more: false``) replaces every earlier generation, and a later incomplete one
(a restart still in progress) adds to it. A video is a row once, however many windows, queries, restarts or
re-fetches saw it. Conflict copies and error responses in the archive are skipped.
"""

from __future__ import annotations

import builtins
import gzip
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tiklive_assets.research.keys import COMMENT_PAGE_SLUG, RESEARCH_PREFIX, USER_PAGE_SLUG, parse_video_slug
from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.keys import InvalidKeyPart, check_handle, parse_raw_key
from tiklive_assets.tolerant import Tally, epoch_seconds, post_id, strip_nul

log = logging.getLogger(__name__)

VIDEO_COLUMNS = (
    ("id", "TEXT PRIMARY KEY"),
    ("username", "TEXT"),
    ("create_time", "BIGINT"),
    ("create_date", "DATE"),
    ("video_description", "TEXT"),
    ("region_code", "TEXT"),
    ("music_id", "TEXT"),
    ("hashtag_names", "TEXT"),
    ("effect_ids", "TEXT"),
    ("playlist_id", "TEXT"),
    ("voice_to_text", "TEXT"),
    ("view_count", "BIGINT"),
    ("like_count", "BIGINT"),
    ("comment_count", "BIGINT"),
    ("share_count", "BIGINT"),
    ("first_captured_on", "DATE"),
    ("last_captured_on", "DATE"),
    ("source_key", "TEXT"),
)
COUNTER_COLUMNS = (
    ("id", "TEXT"),
    ("captured_on", "DATE"),
    ("view_count", "BIGINT"),
    ("like_count", "BIGINT"),
    ("comment_count", "BIGINT"),
    ("share_count", "BIGINT"),
    ("source_key", "TEXT"),
)
USER_COLUMNS = (
    ("username", "TEXT"),
    ("captured_on", "DATE"),
    ("display_name", "TEXT"),
    ("bio_description", "TEXT"),
    ("avatar_url", "TEXT"),
    ("is_verified", "BOOLEAN"),
    ("follower_count", "BIGINT"),
    ("following_count", "BIGINT"),
    ("likes_count", "BIGINT"),
    ("video_count", "BIGINT"),
    ("source_key", "TEXT"),
)
FOLLOW_COLUMNS = (
    ("username", "TEXT"),
    ("direction", "TEXT"),
    ("other_username", "TEXT"),
    ("other_display_name", "TEXT"),
    ("captured_on", "DATE"),
)
COMMENT_COLUMNS = (
    ("id", "TEXT PRIMARY KEY"),
    ("video_id", "TEXT"),
    ("parent_comment_id", "TEXT"),
    ("text", "TEXT"),
    ("like_count", "BIGINT"),
    ("reply_count", "BIGINT"),
    ("create_time", "BIGINT"),
    ("captured_on", "DATE"),
    ("source_key", "TEXT"),
)
TABLES = {
    "research_videos": (VIDEO_COLUMNS, None),
    "research_video_counters": (COUNTER_COLUMNS, "id, captured_on"),
    "research_users": (USER_COLUMNS, "username, captured_on"),
    "research_follows": (FOLLOW_COLUMNS, "username, direction, other_username, captured_on"),
    "research_comments": (COMMENT_COLUMNS, None),
}


@dataclass
class ResearchLoadReport:
    objects_read: int = 0
    objects_skipped: int = 0
    pages_used: int = 0
    pages_superseded: int = 0  # pages of generations a later complete generation replaced
    rows: dict[str, int] = field(default_factory=dict)
    nul_stripped: int = 0  # NUL characters removed from text (Postgres rejects them)
    nulled: dict[str, int] = field(default_factory=dict)  # per field: values present but unreadable, made NULL
    target: str = ""


@dataclass(frozen=True)
class _Page:
    key: str
    day: date
    generation: int
    cursor: int
    data: dict[str, Any]


WAREHOUSE_URL = "TIKLIVE_WAREHOUSE_URL"  # the main warehouse's variable: postgresql://… or a DuckDB path


def default_target() -> str:
    """``TIKLIVE_WAREHOUSE_URL`` (as the main warehouse reads it), else ``TIKLIVE_HOME/warehouse.duckdb``."""
    import os

    from tiklive_assets.settings import DataRoot

    return os.environ.get(WAREHOUSE_URL) or str(DataRoot.from_env().warehouse)


def _duckdb_path(target: str) -> Path:
    return Path(target.removeprefix("duckdb://")) if target.startswith("duckdb:///") else Path(target)


def _read(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        body = json.loads(gzip.decompress(store.get_bytes(key)))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable archived object (%s); skipped", key, exc)
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error") or {}
    if (error.get("code", "ok") if isinstance(error, dict) else error) != "ok":
        return None
    data = body.get("data")
    return data if isinstance(data, dict) else None


class _Reader:
    """Tolerant field reads for one load: ids as text, NULs stripped and counted, unreadable values nulled."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.nul = 0

    def text(self, value: Any, name: str) -> str | None:
        text = self.tally.text(value, name)
        if text is None:
            return None
        text, n = strip_nul(text)
        self.nul += n
        return text

    def id(self, value: Any, name: str) -> str | None:
        return self.tally.id(value, name)

    def int(self, value: Any, name: str) -> int | None:
        return self.tally.int(value, name)

    def json_list(self, value: Any, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.tally.nulled[name] += 1
            return None
        return json.dumps([self.text(v, name) if isinstance(v, str) else v for v in value], ensure_ascii=False)

    def epoch(self, value: Any, name: str) -> builtins.int | None:  # builtins: the method above shadows int here
        result = epoch_seconds(value)
        if result is None and value is not None:
            self.tally.nulled[name] += 1
        return result


# one branch per research endpoint's records; splitting it is a refactor for its own change
def build_rows(  # noqa: C901
    store: ObjectStore,
    prefix: str = RESEARCH_PREFIX,
) -> tuple[dict[str, list[tuple]], ResearchLoadReport]:
    """Every table's rows from the archive alone (pure: no database touched)."""
    report = ResearchLoadReport()
    r = _Reader()
    comments: dict[str, tuple[tuple, dict, str, date]] = {}  # comment id -> (order, comment, key, day)
    windows: dict[tuple[str, str], dict[int, list[_Page]]] = defaultdict(lambda: defaultdict(list))
    users: dict[tuple[str, date], tuple[dict, str]] = {}
    follows: set[tuple] = set()
    for info in store.list(prefix + "/"):
        try:
            raw = parse_raw_key(info.key, prefix)
        except InvalidKeyPart:  # conflict copies and anything foreign
            report.objects_skipped += 1
            continue
        if raw.endpoint == "video-query":
            slug = parse_video_slug(raw.slug)
            if slug is None:  # an error response
                report.objects_skipped += 1
                continue
            data = _read(store, info.key)
            if data is None:
                report.objects_skipped += 1
                continue
            windows[(slug.qhash, slug.window.key)][slug.generation].append(
                _Page(info.key, raw.day, slug.generation, slug.cursor, data)
            )
        elif raw.endpoint == "user-info":
            try:
                username = check_handle(raw.slug)
            except InvalidKeyPart:
                report.objects_skipped += 1
                continue
            data = _read(store, info.key)
            if data is None:
                report.objects_skipped += 1
                continue
            users[(username, raw.day)] = (data, info.key)
        elif raw.endpoint in ("user-followers", "user-following"):
            m = USER_PAGE_SLUG.fullmatch(raw.slug)
            data = _read(store, info.key) if m else None
            if m is None or data is None:
                report.objects_skipped += 1
                continue
            direction = "follower" if raw.endpoint == "user-followers" else "following"
            for person in data.get("user_followers" if direction == "follower" else "user_following") or []:
                other = r.text(person.get("username"), "follow.username") if isinstance(person, dict) else None
                if other:
                    follows.add(
                        (
                            m["username"],
                            direction,
                            other,
                            r.text(person.get("display_name"), "follow.display_name"),
                            raw.day,
                        )
                    )
        elif raw.endpoint == "video-comments":
            m = COMMENT_PAGE_SLUG.fullmatch(raw.slug)
            data = _read(store, info.key) if m else None
            if m is None or data is None:
                report.objects_skipped += 1
                continue
            order: tuple = (raw.day, int(m["cursor"]), info.key)
            for comment in data.get("comments") or []:
                cid = r.id(comment.get("id"), "comment.id") if isinstance(comment, dict) else None
                if cid is None:
                    continue
                if cid not in comments or order > comments[cid][0]:
                    comments[cid] = (order, comment, info.key, raw.day)
        else:
            report.objects_skipped += 1
            continue
        report.objects_read += 1

    latest: dict[str, tuple[tuple, dict, str, date]] = {}  # id (text) -> (order, video, key, day)
    first_seen: dict[str, date] = {}
    counters: dict[tuple[str, date], tuple[tuple, dict, str]] = {}
    for (_qhash, _window), generations in windows.items():
        complete = [
            g
            for g, pages in generations.items()
            if any(p.cursor == 0 for p in pages) and any(not p.data.get("has_more") for p in pages)
        ]
        floor = max(complete) if complete else min(generations)
        for generation, pages in generations.items():
            superseded = generation < floor
            report.pages_superseded += len(pages) if superseded else 0
            report.pages_used += 0 if superseded else len(pages)
            for page in pages:
                order = (page.day, page.generation, page.cursor, page.key)
                for video in page.data.get("videos") or []:
                    vid = post_id(video)  # "id" on the wire ("video_id" in TikTok's docs), as text
                    if vid is None:
                        continue
                    # counters are observations: every capture day keeps its latest, superseded or not
                    ck = (vid, page.day)
                    if ck not in counters or order > counters[ck][0]:
                        counters[ck] = (order, video, page.key)
                    first_seen[vid] = min(first_seen.get(vid, page.day), page.day)
                    if superseded:
                        continue
                    if vid not in latest or order > latest[vid][0]:
                        latest[vid] = (order, video, page.key, page.day)

    rows: dict[str, list[tuple]] = {name: [] for name in TABLES}
    for vid, (_order, v, key, day) in sorted(latest.items(), key=lambda kv: (len(kv[0]), kv[0])):
        ct = r.epoch(v.get("create_time"), "video.create_time")
        rows["research_videos"].append(
            (
                vid,
                r.text(v.get("username"), "video.username"),
                ct,
                datetime.fromtimestamp(ct, UTC).date() if ct is not None else None,
                r.text(v.get("video_description"), "video.video_description"),
                r.text(v.get("region_code"), "video.region_code"),
                r.id(v.get("music_id"), "video.music_id"),
                r.json_list(v.get("hashtag_names"), "video.hashtag_names"),
                r.json_list(v.get("effect_ids"), "video.effect_ids"),
                r.id(v.get("playlist_id"), "video.playlist_id"),
                r.text(v.get("voice_to_text"), "video.voice_to_text"),
                *_counters(r, v),
                first_seen[vid],
                day,
                key,
            )
        )
    for (vid, day), (_order, v, key) in sorted(counters.items(), key=lambda kv: (len(kv[0][0]), kv[0])):
        if vid not in latest:  # seen only in a replaced generation (e.g. deleted since): not a current video
            continue
        rows["research_video_counters"].append((vid, day, *_counters(r, v), key))
    for (username, day), (d, key) in sorted(users.items()):
        verified = d.get("is_verified")
        rows["research_users"].append(
            (
                username,
                day,
                r.text(d.get("display_name"), "user.display_name"),
                r.text(d.get("bio_description"), "user.bio_description"),
                r.text(d.get("avatar_url"), "user.avatar_url"),
                r.tally.bool(verified, "user.is_verified"),
                r.int(d.get("follower_count"), "user.follower_count"),
                r.int(d.get("following_count"), "user.following_count"),
                r.int(d.get("likes_count"), "user.likes_count"),
                r.int(d.get("video_count"), "user.video_count"),
                key,
            )
        )
    rows["research_follows"] = sorted(follows, key=lambda row: (row[0], row[1], row[2], row[4]))
    for cid, (_order, c, key, day) in sorted(comments.items(), key=lambda kv: (len(kv[0]), kv[0])):
        rows["research_comments"].append(
            (
                cid,
                r.id(c.get("video_id"), "comment.video_id"),
                r.id(c.get("parent_comment_id"), "comment.parent_comment_id"),
                r.text(c.get("text"), "comment.text"),
                r.int(c.get("like_count"), "comment.like_count"),
                r.int(c.get("reply_count"), "comment.reply_count"),
                r.epoch(c.get("create_time"), "comment.create_time"),
                day,
                key,
            )
        )
    report.rows = {name: len(rs) for name, rs in rows.items()}
    report.nul_stripped = r.nul
    report.nulled = dict(r.tally.nulled)
    if r.nul:
        log.info("research tables: %d NUL characters stripped from text (Postgres rejects them)", r.nul)
    return rows, report


def _counters(r: _Reader, v: dict) -> tuple[int | None, ...]:
    return tuple(
        r.int(v.get(name), f"video.{name}") for name in ("view_count", "like_count", "comment_count", "share_count")
    )


def _ddl(name: str) -> str:
    columns, pk = TABLES[name]
    body = ", ".join(f"{c} {t}" for c, t in columns)
    if pk:
        body += f", PRIMARY KEY ({pk})"
    return f"CREATE TABLE IF NOT EXISTS {name} ({body})"


_TEXT_TYPES = ("varchar", "text", "character varying")


def _stale_tables(fetch) -> list[str]:
    """Tables whose columns (names, or TEXT-ness) differ from ``TABLES``: an older layout (ids were BIGINT), dropped
    and created anew. They are derived from the archive alone, so nothing is lost."""
    stale = []
    for name, (columns, _pk) in TABLES.items():
        found = fetch(name)
        if not found:
            continue
        want = [(c, t.split()[0].lower()) for c, t in columns]
        have = [(c, str(t).lower()) for c, t in found]
        if [c for c, _ in want] != [c for c, _ in have] or any(
            (w == "text") != (h in _TEXT_TYPES) for (_, w), (_, h) in zip(want, have, strict=True)
        ):
            stale.append(name)
    return stale


_COLUMNS_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = {p} "
    "AND table_schema = current_schema() ORDER BY ordinal_position"
)


def load_research_warehouse(
    store: ObjectStore, target: str | Path | None = None, prefix: str = RESEARCH_PREFIX
) -> ResearchLoadReport:
    """Rebuild the research tables from the archive into DuckDB (a path) or Postgres (a ``postgresql://`` URL).

    Replaces the tables' contents in one transaction: running it twice, or after ``tiklive replay`` wiped the
    warehouse, gives the same rows.
    """
    target = target if target is not None else default_target()
    rows, report = build_rows(store, prefix)
    text = str(target)
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        _write_postgres(text.replace("postgresql+psycopg://", "postgresql://"), rows)
        report.target = "postgresql"
    else:
        _write_duckdb(_duckdb_path(text), rows)
        report.target = str(text)
    return report


def _write_duckdb(path: Path, rows: dict[str, list[tuple]]) -> None:
    import duckdb
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        for name in _stale_tables(lambda t: con.execute(_COLUMNS_SQL.format(p="?"), [t]).fetchall()):
            con.execute(f"DROP TABLE {name}")
        for name, (columns, _pk) in TABLES.items():
            con.execute(_ddl(name))
            con.execute(f"DELETE FROM {name}")
            if rows[name]:
                # dtype=object from the start: inferring first would turn an int column with a NULL into float64
                frame = pd.DataFrame(rows[name], columns=[c for c, _ in columns], dtype=object)
                con.register("_incoming", frame)
                con.execute(f"INSERT INTO {name} SELECT * FROM _incoming")
                con.unregister("_incoming")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def _write_postgres(url: str, rows: dict[str, list[tuple]]) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.transaction():
        for name in _stale_tables(lambda t: conn.execute(_COLUMNS_SQL.format(p="%s"), [t]).fetchall()):
            conn.execute(f"DROP TABLE {name}")
        for name, (columns, _pk) in TABLES.items():
            conn.execute(_ddl(name))
            conn.execute(f"DELETE FROM {name}")
            if rows[name]:
                with (
                    conn.cursor() as cur,
                    cur.copy(f"COPY {name} ({', '.join(c for c, _ in columns)}) FROM STDIN") as copy,
                ):
                    for row in rows[name]:
                        copy.write_row(row)


def videos_per_user(
    target: str | Path | None = None,
    start: date | None = None,
    end: date | None = None,
    usernames: list[str] | None = None,
) -> dict[str, int]:
    """Videos in ``research_videos`` per username, created from ``start`` to ``end`` (inclusive)."""
    target = target if target is not None else default_target()
    sql = "SELECT username, COUNT(*) FROM research_videos WHERE 1=1"
    params: list[Any] = []
    if start is not None:
        sql += " AND create_date >= ?"
        params.append(start)
    if end is not None:
        sql += " AND create_date <= ?"
        params.append(end)
    sql += " GROUP BY username ORDER BY username"
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(text) as conn:
            result = dict(conn.execute(sql.replace("?", "%s"), params).fetchall())
    else:
        import duckdb

        con = duckdb.connect(str(_duckdb_path(text)), read_only=True)
        try:
            result = dict(con.execute(sql, params).fetchall())
        finally:
            con.close()
    counts = {str(k): int(v) for k, v in result.items()}
    if usernames is not None:
        return {u: counts.get(u, 0) for u in usernames}
    return counts


__all__ = [
    "COMMENT_COLUMNS",
    "ResearchLoadReport",
    "TABLES",
    "build_rows",
    "load_research_warehouse",
    "videos_per_user",
]

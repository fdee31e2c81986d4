"""The warehouse schema, declared once: every table's columns (SQL and Arrow types), key, indices and load mode.

Both backends (DuckDB and Postgres) create their tables from these declarations, the parsers build Arrow tables
with these exact schemas, and the Parquet exports carry them too, so there is one schema whatever the backend.

Two load modes make every daily table idempotent per day partition (``dt`` is always the archive day, from the
key):

* ``window``: history and event tables. Loading a day deletes the rows ``WHERE dt = <day>`` and inserts the
  day's rows, in one transaction (the delete-the-window-then-insert idiom). Keyed on (id, captured_at) or (…, dt).
* ``upsert``: entity tables (one row per id across all days). ``INSERT … ON CONFLICT (key) DO UPDATE``: the
  row from the newest ``dt`` wins column by column; ``sticky`` columns keep a known value when the newer day
  does not know it (a post listed again after its MP4 was archived keeps its ``storage_key``); ``immutable``
  columns are written on insert only (``author_id``, ``create_time``… never change, and DuckDB cannot update
  indexed columns in an upsert anyway).

The Research API's tables (``RESEARCH_TABLES``) take a third mode, ``replace``: each load rebuilds the whole table
from ``research-raw/`` in one transaction (its rows depend on every archived generation of a window at once).

``captured_at`` is the archive object's ``last_modified`` (the moment the response was stored, within a
second of when it was received), never the time of the replay: that is what makes a replay reproduce the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
_SQL_TO_ARROW = {
    "TEXT": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMPTZ": TS,
}


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    not_null: bool = False

    @property
    def arrow(self) -> pa.DataType:
        return _SQL_TO_ARROW[self.sql]


Mode = Literal["window", "upsert", "replace"]


@dataclass(frozen=True)
class Table:
    name: str
    mode: Mode
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    description: str
    indices: tuple[tuple[str, ...], ...] = ()
    sticky: tuple[str, ...] = ()
    immutable: tuple[str, ...] = ()
    order_by: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow, nullable=not c.not_null) for c in self.columns])

    def create_sql(self, indices: bool = True) -> list[str]:
        """DDL. ``indices=False`` (DuckDB) leaves out the secondary indices and the primary key of ``window``
        tables: DuckDB's min-max zonemaps serve analytic scans, while its ART indices make replacing a day of
        keys slow at COMMIT (seconds for 50,000 rows). The parser emits each key once per day, and loading a day
        deletes that day first, so the key stays unique (the tests check it)."""
        cols = ",\n  ".join(f"{c.name} {c.sql}{' NOT NULL' if c.not_null else ''}" for c in self.columns)
        primary = f",\n  PRIMARY KEY ({', '.join(self.key)})" if indices or self.mode != "window" else ""
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}{primary}\n)"]
        for index in self.indices if indices else ():
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {self.name}_{'_'.join(index)}_idx ON {self.name} ({', '.join(index)})"
            )
        return statements

    def merged_value(self, name: str, new: str, old: str, absent: str | None = None) -> str | None:
        """The value an upsert leaves in column ``name``, as SQL: ``new`` is the incoming row's, ``old`` the stored
        row's, ``absent`` (if given) the condition that no row was stored. None: the column is not updated.

        The newest ``dt`` wins; a ``sticky`` column keeps a known value over an unknown one; an ``immutable`` column
        and the key keep what was inserted."""
        new_dt, old_dt = f"{new.rsplit('.', 1)[0]}.dt", f"{old.rsplit('.', 1)[0]}.dt"
        if_absent = f"WHEN {absent} THEN {new} " if absent else ""
        if name in self.key:
            return new if absent else None
        if name == "dt":
            greatest = f"GREATEST({new}, {old})"
            return f"CASE {if_absent}ELSE {greatest} END" if absent else greatest
        if name in self.immutable:
            return f"CASE {if_absent}ELSE {old} END" if absent else None
        if name in self.sticky:
            newer = f"{old} IS NULL OR {new_dt} >= {old_dt}"
            return f"CASE {if_absent}WHEN {new} IS NULL THEN {old} WHEN {newer} THEN {new} ELSE {old} END"
        either = f"{absent} OR " if absent else ""
        return f"CASE WHEN {either}{new_dt} >= {old_dt} THEN {new} ELSE {old} END"

    def upsert_sql(self, source: str) -> str:
        """``INSERT … SELECT … FROM source ON CONFLICT (key) DO UPDATE``, the same text for DuckDB and Postgres."""
        cols = ", ".join(self.column_names)
        sets = [
            f"{name} = {value}"
            for name in self.column_names
            if name != "dt" and (value := self.merged_value(name, f"EXCLUDED.{name}", f"{self.name}.{name}"))
        ]
        sets.append(f"dt = GREATEST(EXCLUDED.dt, {self.name}.dt)")
        return (
            f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM {source} "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {', '.join(sets)}"
        )

    def merge_select_sql(self, source: str) -> str:
        """The rows ``upsert_sql`` would leave for the keys in ``source``, as one SELECT (``source`` LEFT JOIN table).

        DuckDB applies an upsert by deleting these keys and inserting this SELECT: set-based, and much faster than
        its ``ON CONFLICT DO UPDATE`` when most keys already exist. Same rules as :meth:`upsert_sql`.
        """
        absent = f"o.{self.key[0]} IS NULL"
        exprs = []
        for name in self.column_names:
            value = self.merged_value(name, f"s.{name}", f"o.{name}", absent) or f"s.{name}"
            exprs.append(value if name in self.key else f"{value} AS {name}")
        return f"SELECT {', '.join(exprs)} FROM {source} s LEFT JOIN {self.name} o USING ({', '.join(self.key)})"


def columns(ddl: str) -> tuple[Column, ...]:
    """Columns from their DDL text: ``"aweme_id TEXT NOT NULL, title TEXT"`` (a type of ``_SQL_TO_ARROW``)."""
    out = []
    for spec in ddl.split(","):
        name, sql, *rest = spec.split()
        if sql not in _SQL_TO_ARROW or rest not in ([], ["NOT", "NULL"]):
            raise ValueError(
                f"column {spec.strip()!r}: write 'name TYPE [NOT NULL]' with TYPE one of {list(_SQL_TO_ARROW)}"
            )
        out.append(Column(name, sql, bool(rest)))
    return tuple(out)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def declare(
    name: str,
    mode: Mode,
    ddl: str,
    *,
    key: str,
    description: str,
    indices: str = "",
    sticky: str = "",
    immutable: str = "",
) -> Table:
    """One table from its DDL text: ``key``, ``sticky`` and ``immutable`` name columns (comma-separated);
    ``indices`` the secondary indices, one per ``;``, each a comma-separated column list."""
    return Table(
        name,
        mode,
        columns(ddl),
        _names(key),
        description,
        indices=tuple(_names(index) for index in indices.split(";") if index.strip()),
        sticky=_names(sticky),
        immutable=_names(immutable),
    )


POSTS = declare(
    "posts",
    "upsert",
    "aweme_id TEXT NOT NULL, author_id TEXT NOT NULL, author_handle TEXT NOT NULL, title TEXT, region TEXT, "
    "duration INTEGER, create_time BIGINT, play_count BIGINT, digg_count BIGINT, comment_count BIGINT, "
    "share_count BIGINT, music_id TEXT, storage_key TEXT, bytes BIGINT, archived_at TIMESTAMPTZ, dt DATE NOT NULL, "
    "kind TEXT, image_count INTEGER",
    key="aweme_id",
    indices="author_id; music_id; create_time",
    sticky="storage_key, bytes, archived_at, music_id",  # a listing without music_info never erases it
    immutable="author_id, create_time",
    description="Posts: one row per post with its newest counters (from its detail and from listings). kind is 'video' "
    "or 'photo' (a slideshow: its item carries images[], and its play URL is the sound), image_count the number of "
    "images. storage_key/bytes/archived_at come from the day's videos/dt=…/author=…/ objects: the <id>.mp4 of a "
    "video; for a photo post the first image <id>-1.jpg, with bytes summing every image and the <id>.mp3 sound "
    "(NULL until archived).",
)

USERS = declare(
    "users",
    "upsert",
    "user_id TEXT NOT NULL, handle TEXT, nickname TEXT, sec_uid TEXT, verified BOOLEAN, private_account BOOLEAN, "
    "bio_link TEXT, source TEXT NOT NULL, captured_at TIMESTAMPTZ NOT NULL, dt DATE NOT NULL",
    key="user_id",
    indices="handle",
    sticky="sec_uid, verified, private_account, bio_link",
    description="Accounts: one row per account, tracked profiles and the authors of captured posts, with the newest "
    "profile fields.",
)

USER_SNAPSHOTS = declare(
    "user_snapshots",
    "window",
    "user_id TEXT NOT NULL, captured_at TIMESTAMPTZ NOT NULL, handle TEXT, follower_count BIGINT, "
    "following_count BIGINT, video_count BIGINT, heart_count BIGINT, digg_count BIGINT, source_key TEXT NOT NULL, "
    "dt DATE NOT NULL",
    key="user_id, captured_at",
    indices="dt",
    description="One row per profile capture: follower, following, video, heart and digg counts.",
)

POST_METRICS_HISTORY = declare(
    "post_metrics_history",
    "window",
    "aweme_id TEXT NOT NULL, captured_at TIMESTAMPTZ NOT NULL, play_count BIGINT, digg_count BIGINT, "
    "comment_count BIGINT, share_count BIGINT, download_count BIGINT, collect_count BIGINT, source TEXT NOT NULL, "
    "source_key TEXT NOT NULL, dt DATE NOT NULL",
    key="aweme_id, captured_at",
    indices="dt",
    description="One row per capture of a video's counters, from listings and its detail alike (counters are "
    "true only at capture time): the engagement curve of a video. Two captures stored in the same instant keep the "
    "detail's.",
)

COMMENTS = declare(
    "comments",
    "upsert",
    "comment_id TEXT NOT NULL, aweme_id TEXT NOT NULL, parent_id TEXT, user_id TEXT, user_handle TEXT, text TEXT, "
    "digg_count BIGINT, reply_total BIGINT, create_time BIGINT, captured_at TIMESTAMPTZ NOT NULL, dt DATE NOT NULL",
    key="comment_id",
    indices="aweme_id; parent_id",
    immutable="aweme_id, parent_id",
    description="Comments and replies: one row per comment; a reply's parent_id is the comment it answers.",
)

FOLLOW_EDGES = declare(
    "follow_edges",
    "window",
    "user_id TEXT NOT NULL, direction TEXT NOT NULL, other_id TEXT NOT NULL, other_handle TEXT, other_nickname TEXT, "
    "other_follower_count BIGINT, other_aweme_count BIGINT, captured_at TIMESTAMPTZ NOT NULL, dt DATE NOT NULL",
    key="user_id, direction, other_id, dt",
    indices="dt",
    description="Follow graph: one row per edge and capture day; direction 'follower' (other follows user) or "
    "'following' (user follows other).",
)

MUSIC = declare(
    "music",
    "upsert",
    "music_id TEXT NOT NULL, title TEXT, author TEXT, dt DATE NOT NULL",
    key="music_id",
    description="Sounds: one row per sound used by a captured post, with its title and author.",
)

HASHTAGS = declare(
    "hashtags",
    "window",
    "hashtag TEXT NOT NULL, aweme_id TEXT NOT NULL, author_id TEXT, dt DATE NOT NULL",
    key="hashtag, aweme_id, dt",
    indices="dt",
    description="Hashtags parsed from the titles of the posts captured that day (lowercase, without '#').",
)

DEAD_LETTERS = declare(
    "dead_letters",
    "window",
    "aweme_id TEXT NOT NULL, reason TEXT NOT NULL, http_status INTEGER NOT NULL, source_key TEXT NOT NULL, "
    "captured_at TIMESTAMPTZ NOT NULL, dt DATE NOT NULL",
    key="aweme_id, dt",
    indices="dt",
    description="Videos the API no longer serves (deleted, private, region-locked): one row per video, from the "
    "archived 'not found' answer; reason is the API's message. Each was paid for once and is never asked again.",
)

CREDITS_LEDGER = declare(
    "credits_ledger",
    "window",
    "dt DATE NOT NULL, endpoint TEXT NOT NULL, http_status INTEGER NOT NULL, requests BIGINT NOT NULL, "
    "bytes BIGINT NOT NULL, error_responses BIGINT",
    key="dt, endpoint, http_status",
    description="Credits by endpoint and day, counted from the archived responses (one archived response = one "
    "credit). Retries of 429/5xx are not archived, so they are not in the ledger; conflict copies are. "
    "error_responses counts the 200 responses that were errors, not data (exhausted balance, an upstream error "
    "code, a body that is not JSON): each was paid for, none is parsed as data.",
)

QUARANTINE = declare(
    "quarantine",
    "window",
    "dt DATE NOT NULL, source_key TEXT NOT NULL, endpoint TEXT NOT NULL, error TEXT NOT NULL, bytes BIGINT NOT NULL, "
    "captured_at TIMESTAMPTZ NOT NULL",
    key="dt, source_key",
    description="Archived objects of the day that could not be parsed (not JSON, or a shape no parser reads), with "
    "the error. They never fail a day: the rest of it loads. The raw object stays in the archive, so a replay after "
    "a parser fix parses it again and its row leaves this table.",
)

SCHEMA_FIELDS = declare(
    "schema_fields",
    "window",
    "dt DATE NOT NULL, endpoint TEXT NOT NULL, path TEXT NOT NULL, json_type TEXT NOT NULL, objects BIGINT NOT NULL",
    key="dt, endpoint, path, json_type",
    description="The field signature of each endpoint per day: every field path seen (top level, one level into "
    "objects, and items[] of lists) with its JSON type and how many objects or items carried it. Comparing days "
    "shows fields that appeared, vanished or changed type: the API changed before data is lost.",
)

ARCHIVE_INDEX = declare(
    "archive_index",
    "window",
    "dt DATE NOT NULL, user_id TEXT NOT NULL, handle TEXT NOT NULL, key TEXT NOT NULL, role TEXT NOT NULL, "
    "aweme_id TEXT NOT NULL",
    key="dt, key, role, user_id, handle, aweme_id",
    description="The archive index by user: one row per archived object (tiklive-raw/ and videos/) and user it "
    "refers to: user_id and handle (lowercase; '' when the object does not say), role (subject, author, follower, "
    "following, commenter, user, mention; post for an object keyed by a post) and aweme_id (the post the row is "
    "about, or ''). Erasure reads only the objects it names; a copy is exported beside the archive, with the "
    "Research API's objects, under index/user-ids/.",
)

TOMBSTONES = declare(
    "tombstones",
    "window",
    "kind TEXT NOT NULL, id TEXT NOT NULL, handle TEXT, reason TEXT NOT NULL, http_status INTEGER NOT NULL, "
    "source_key TEXT NOT NULL, captured_at TIMESTAMPTZ NOT NULL, dt DATE NOT NULL",
    key="kind, id, dt",
    indices="dt",
    description="Content seen missing after it was captured: one row per video (kind 'video', id its aweme_id) whose "
    "refresh answered not found or private, and per tracked account (kind 'account', id its user id, or its handle "
    "when the handle itself no longer resolves) whose daily profile capture did, per archive day; reason is the "
    "API's message, source_key the archived answer. The first day a row appears is when it was first seen missing.",
)

TABLES: tuple[Table, ...] = (
    POSTS,
    USERS,
    USER_SNAPSHOTS,
    POST_METRICS_HISTORY,
    COMMENTS,
    FOLLOW_EDGES,
    MUSIC,
    HASHTAGS,
    DEAD_LETTERS,
    CREDITS_LEDGER,
    QUARANTINE,
    SCHEMA_FIELDS,
    ARCHIVE_INDEX,
    TOMBSTONES,
)
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)

# -- the Research API's tables: rebuilt whole from research-raw/ at each load ("replace") ---------------------------

RESEARCH_VIDEOS = declare(
    "research_videos",
    "replace",
    "id TEXT NOT NULL, username TEXT, create_time BIGINT, create_date DATE, video_description TEXT, "
    "region_code TEXT, music_id TEXT, hashtag_names TEXT, effect_ids TEXT, playlist_id TEXT, voice_to_text TEXT, "
    "view_count BIGINT, like_count BIGINT, comment_count BIGINT, share_count BIGINT, first_captured_on DATE, "
    "last_captured_on DATE, source_key TEXT",
    key="id",
    description="Research API videos: one row per video id (the fields the video query asks for), values of its "
    "latest capture; hashtag_names and effect_ids are JSON lists.",
)

RESEARCH_VIDEO_COUNTERS = declare(
    "research_video_counters",
    "replace",
    "id TEXT NOT NULL, captured_on DATE NOT NULL, view_count BIGINT, like_count BIGINT, comment_count BIGINT, "
    "share_count BIGINT, source_key TEXT",
    key="id, captured_on",
    description="Research API video counters per video and capture day (the ingest date of the archived page): the "
    "history re-collections build up.",
)

RESEARCH_USERS = declare(
    "research_users",
    "replace",
    "username TEXT NOT NULL, captured_on DATE NOT NULL, display_name TEXT, bio_description TEXT, avatar_url TEXT, "
    "is_verified BOOLEAN, follower_count BIGINT, following_count BIGINT, likes_count BIGINT, video_count BIGINT, "
    "source_key TEXT",
    key="username, captured_on",
    description="Research API user info per username and capture day.",
)

RESEARCH_FOLLOWS = declare(
    "research_follows",
    "replace",
    "username TEXT NOT NULL, direction TEXT NOT NULL, other_username TEXT NOT NULL, other_display_name TEXT, "
    "captured_on DATE NOT NULL",
    key="username, direction, other_username, captured_on",
    description="Research API follower ('follower') and following ('following') edges per capture day.",
)

RESEARCH_COMMENTS = declare(
    "research_comments",
    "replace",
    "id TEXT NOT NULL, video_id TEXT, parent_comment_id TEXT, text TEXT, like_count BIGINT, reply_count BIGINT, "
    "create_time BIGINT, captured_on DATE, source_key TEXT",
    key="id",
    description="Research API comments: one row per comment id, values of its latest capture.",
)

RESEARCH_TABLES: tuple[Table, ...] = (
    RESEARCH_VIDEOS,
    RESEARCH_VIDEO_COUNTERS,
    RESEARCH_USERS,
    RESEARCH_FOLLOWS,
    RESEARCH_COMMENTS,
)

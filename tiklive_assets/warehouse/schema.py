"""The warehouse schema, declared once: every table's columns (SQL and Arrow types), key, indices and load mode.

Both backends (DuckDB and Postgres) create their tables from these declarations, the parsers build Arrow tables
with these exact schemas, and the Parquet exports carry them too, so there is one schema whatever the backend.

Two load modes make every table idempotent per day partition (``dt`` is always the archive day, from the key):

* ``window``: history and event tables. Loading a day deletes the rows ``WHERE dt = <day>`` and inserts the
  day's rows, in one transaction (the delete-the-window-then-insert idiom). Keyed on (id, captured_at) or (…, dt).
* ``upsert``: entity tables (one row per id across all days). ``INSERT … ON CONFLICT (key) DO UPDATE``: the
  row from the newest ``dt`` wins column by column; ``sticky`` columns keep a known value when the newer day
  does not know it (a post listed again after its MP4 was archived keeps its ``storage_key``); ``immutable``
  columns are written on insert only (``author_id``, ``create_time``… never change, and DuckDB cannot update
  indexed columns in an upsert anyway).

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


@dataclass(frozen=True)
class Table:
    name: str
    mode: Literal["window", "upsert"]
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
        primary = f",\n  PRIMARY KEY ({', '.join(self.key)})" if indices or self.mode == "upsert" else ""
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}{primary}\n)"]
        for index in self.indices if indices else ():
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {self.name}_{'_'.join(index)}_idx ON {self.name} ({', '.join(index)})"
            )
        return statements

    def upsert_sql(self, source: str) -> str:
        """``INSERT … SELECT … FROM source ON CONFLICT (key) DO UPDATE``, the same text for DuckDB and Postgres."""
        names = self.column_names
        sets = []
        for name in names:
            if name in self.key or name in self.immutable or name == "dt":
                continue
            new, old = f"EXCLUDED.{name}", f"{self.name}.{name}"
            if name in self.sticky:
                sets.append(
                    f"{name} = CASE WHEN {new} IS NULL THEN {old} WHEN {old} IS NULL OR EXCLUDED.dt >= "
                    f"{self.name}.dt THEN {new} ELSE {old} END"
                )
            else:
                sets.append(f"{name} = CASE WHEN EXCLUDED.dt >= {self.name}.dt THEN {new} ELSE {old} END")
        sets.append(f"dt = GREATEST(EXCLUDED.dt, {self.name}.dt)")
        cols = ", ".join(names)
        return (
            f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM {source} "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {', '.join(sets)}"
        )

    def merge_select_sql(self, source: str) -> str:
        """The rows ``upsert_sql`` would leave for the keys in ``source``, as one SELECT (``source`` LEFT JOIN table).

        DuckDB applies an upsert by deleting these keys and inserting this SELECT: set-based, and much faster than
        its ``ON CONFLICT DO UPDATE`` when most keys already exist. Same rules as :meth:`upsert_sql`.
        """
        first = self.key[0]
        exprs = []
        for name in self.column_names:
            new, old = f"s.{name}", f"o.{name}"
            if name in self.key:
                exprs.append(new)
            elif name == "dt":
                exprs.append(f"CASE WHEN o.{first} IS NULL THEN s.dt ELSE GREATEST(s.dt, o.dt) END AS dt")
            elif name in self.immutable:
                exprs.append(f"CASE WHEN o.{first} IS NULL THEN {new} ELSE {old} END AS {name}")
            elif name in self.sticky:
                exprs.append(
                    f"CASE WHEN o.{first} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
                    f"WHEN {old} IS NULL OR s.dt >= o.dt THEN {new} ELSE {old} END AS {name}"
                )
            else:
                exprs.append(f"CASE WHEN o.{first} IS NULL OR s.dt >= o.dt THEN {new} ELSE {old} END AS {name}")
        return f"SELECT {', '.join(exprs)} FROM {source} s LEFT JOIN {self.name} o USING ({', '.join(self.key)})"


def _c(name: str, sql: str, not_null: bool = False) -> Column:
    return Column(name, sql, not_null)


DT = _c("dt", "DATE", True)

POSTS = Table(
    "posts",
    "upsert",
    (
        _c("aweme_id", "TEXT", True),
        _c("author_id", "TEXT", True),
        _c("author_handle", "TEXT", True),
        _c("title", "TEXT"),
        _c("region", "TEXT"),
        _c("duration", "INTEGER"),
        _c("create_time", "BIGINT"),
        _c("play_count", "BIGINT"),
        _c("digg_count", "BIGINT"),
        _c("comment_count", "BIGINT"),
        _c("share_count", "BIGINT"),
        _c("music_id", "TEXT"),
        _c("storage_key", "TEXT"),
        _c("bytes", "BIGINT"),
        _c("archived_at", "TIMESTAMPTZ"),
        DT,
        _c("kind", "TEXT"),
        _c("image_count", "INTEGER"),
    ),
    key=("aweme_id",),
    indices=(("author_id",), ("music_id",), ("create_time",)),
    sticky=("storage_key", "bytes", "archived_at", "music_id"),  # a listing without music_info never erases it
    immutable=("author_id", "create_time"),
    description="Posts: one row per post with its newest counters (from its detail and from listings). kind is 'video' "
    "or 'photo' (a slideshow: its item carries images[], and its play URL is the sound), image_count the number of "
    "images. storage_key/bytes/archived_at come from the day's videos/dt=…/author=…/ objects: the <id>.mp4 of a "
    "video; for a photo post the first image <id>-1.jpg, with bytes summing every image and the <id>.mp3 sound "
    "(NULL until archived).",
)

USERS = Table(
    "users",
    "upsert",
    (
        _c("user_id", "TEXT", True),
        _c("handle", "TEXT"),
        _c("nickname", "TEXT"),
        _c("sec_uid", "TEXT"),
        _c("verified", "BOOLEAN"),
        _c("private_account", "BOOLEAN"),
        _c("bio_link", "TEXT"),
        _c("source", "TEXT", True),
        _c("captured_at", "TIMESTAMPTZ", True),
        DT,
    ),
    key=("user_id",),
    indices=(("handle",),),
    sticky=("sec_uid", "verified", "private_account", "bio_link"),
    description="Accounts: one row per account, tracked profiles and the authors of captured posts, with the newest "
    "profile fields.",
)

USER_SNAPSHOTS = Table(
    "user_snapshots",
    "window",
    (
        _c("user_id", "TEXT", True),
        _c("captured_at", "TIMESTAMPTZ", True),
        _c("handle", "TEXT"),
        _c("follower_count", "BIGINT"),
        _c("following_count", "BIGINT"),
        _c("video_count", "BIGINT"),
        _c("heart_count", "BIGINT"),
        _c("digg_count", "BIGINT"),
        _c("source_key", "TEXT", True),
        DT,
    ),
    key=("user_id", "captured_at"),
    indices=(("dt",),),
    description="One row per profile capture: follower, following, video, heart and digg counts.",
)

POST_METRICS_HISTORY = Table(
    "post_metrics_history",
    "window",
    (
        _c("aweme_id", "TEXT", True),
        _c("captured_at", "TIMESTAMPTZ", True),
        _c("play_count", "BIGINT"),
        _c("digg_count", "BIGINT"),
        _c("comment_count", "BIGINT"),
        _c("share_count", "BIGINT"),
        _c("download_count", "BIGINT"),
        _c("collect_count", "BIGINT"),
        _c("source", "TEXT", True),
        _c("source_key", "TEXT", True),
        DT,
    ),
    key=("aweme_id", "captured_at"),
    indices=(("dt",),),
    description="One row per capture of a video's counters, from listings and its detail alike (counters are "
    "true only at capture time): the engagement curve of a video. Two captures stored in the same instant keep the "
    "detail's.",
)

COMMENTS = Table(
    "comments",
    "upsert",
    (
        _c("comment_id", "TEXT", True),
        _c("aweme_id", "TEXT", True),
        _c("parent_id", "TEXT"),
        _c("user_id", "TEXT"),
        _c("user_handle", "TEXT"),
        _c("text", "TEXT"),
        _c("digg_count", "BIGINT"),
        _c("reply_total", "BIGINT"),
        _c("create_time", "BIGINT"),
        _c("captured_at", "TIMESTAMPTZ", True),
        DT,
    ),
    key=("comment_id",),
    indices=(("aweme_id",), ("parent_id",)),
    immutable=("aweme_id", "parent_id"),
    description="Comments and replies: one row per comment; a reply's parent_id is the comment it answers.",
)

FOLLOW_EDGES = Table(
    "follow_edges",
    "window",
    (
        _c("user_id", "TEXT", True),
        _c("direction", "TEXT", True),
        _c("other_id", "TEXT", True),
        _c("other_handle", "TEXT"),
        _c("other_nickname", "TEXT"),
        _c("other_follower_count", "BIGINT"),
        _c("other_aweme_count", "BIGINT"),
        _c("captured_at", "TIMESTAMPTZ", True),
        DT,
    ),
    key=("user_id", "direction", "other_id", "dt"),
    indices=(("dt",),),
    description="Follow graph: one row per edge and capture day; direction 'follower' (other follows user) or "
    "'following' (user follows other).",
)

MUSIC = Table(
    "music",
    "upsert",
    (_c("music_id", "TEXT", True), _c("title", "TEXT"), _c("author", "TEXT"), DT),
    key=("music_id",),
    description="Sounds: one row per sound used by a captured post, with its title and author.",
)

HASHTAGS = Table(
    "hashtags",
    "window",
    (_c("hashtag", "TEXT", True), _c("aweme_id", "TEXT", True), _c("author_id", "TEXT"), DT),
    key=("hashtag", "aweme_id", "dt"),
    indices=(("dt",),),
    description="Hashtags parsed from the titles of the posts captured that day (lowercase, without '#').",
)

DEAD_LETTERS = Table(
    "dead_letters",
    "window",
    (
        _c("aweme_id", "TEXT", True),
        _c("reason", "TEXT", True),
        _c("http_status", "INTEGER", True),
        _c("source_key", "TEXT", True),
        _c("captured_at", "TIMESTAMPTZ", True),
        DT,
    ),
    key=("aweme_id", "dt"),
    indices=(("dt",),),
    description="Videos the API no longer serves (deleted, private, region-locked): one row per video, from the "
    "archived 'not found' answer; reason is the API's message. Each was paid for once and is never asked again.",
)

CREDITS_LEDGER = Table(
    "credits_ledger",
    "window",
    (
        DT,
        _c("endpoint", "TEXT", True),
        _c("http_status", "INTEGER", True),
        _c("requests", "BIGINT", True),
        _c("bytes", "BIGINT", True),
        _c("error_responses", "BIGINT"),
    ),
    key=("dt", "endpoint", "http_status"),
    description="Credits by endpoint and day, counted from the archived responses (one archived response = one "
    "credit). Retries of 429/5xx are not archived, so they are not in the ledger; conflict copies are. "
    "error_responses counts the 200 responses that were errors, not data (exhausted balance, an upstream error "
    "code, a body that is not JSON): each was paid for, none is parsed as data.",
)

QUARANTINE = Table(
    "quarantine",
    "window",
    (
        DT,
        _c("source_key", "TEXT", True),
        _c("endpoint", "TEXT", True),
        _c("error", "TEXT", True),
        _c("bytes", "BIGINT", True),
        _c("captured_at", "TIMESTAMPTZ", True),
    ),
    key=("dt", "source_key"),
    description="Archived objects of the day that could not be parsed (not JSON, or a shape no parser reads), with "
    "the error. They never fail a day: the rest of it loads. The raw object stays in the archive, so a replay after "
    "a parser fix parses it again and its row leaves this table.",
)

SCHEMA_FIELDS = Table(
    "schema_fields",
    "window",
    (
        DT,
        _c("endpoint", "TEXT", True),
        _c("path", "TEXT", True),
        _c("json_type", "TEXT", True),
        _c("objects", "BIGINT", True),
    ),
    key=("dt", "endpoint", "path", "json_type"),
    description="The field signature of each endpoint per day: every field path seen (top level, one level into "
    "objects, and items[] of lists) with its JSON type and how many objects or items carried it. Comparing days "
    "shows fields that appeared, vanished or changed type: the API changed before data is lost.",
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
)
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)

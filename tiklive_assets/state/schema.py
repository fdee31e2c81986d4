"""DDL for the state database, written once and specialised per dialect."""

from __future__ import annotations

# {ts}: timestamp type, {date}: calendar-day type, {serial_pk}: auto-increment primary key.
_TYPES = {
    "sqlite": {"ts": "TEXT", "date": "TEXT", "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgres": {"ts": "TIMESTAMPTZ", "date": "DATE", "serial_pk": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
}

_DDL = [
    """
    CREATE TABLE IF NOT EXISTS archive_queue (
        aweme_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        author_handle TEXT,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'resolved', 'downloaded', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_until {ts},
        added_at {ts} NOT NULL,
        resolved_at {ts},
        downloaded_at {ts},
        updated_at {ts} NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS archive_queue_state_idx ON archive_queue (state, added_at)",
    """
    CREATE TABLE IF NOT EXISTS dead_letter (
        aweme_id TEXT PRIMARY KEY,
        reason TEXT,
        http_status INTEGER,
        failed_at {ts} NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS dead_letter_failed_at_idx ON dead_letter (failed_at)",
    """
    CREATE TABLE IF NOT EXISTS archived_files (
        aweme_id TEXT NOT NULL,
        kind TEXT NOT NULL CONSTRAINT archived_files_kind_check CHECK ({file_kind_check}),
        storage_key TEXT NOT NULL,
        sha256 TEXT,
        bytes BIGINT,
        ingest_date {date},
        recorded_at {ts} NOT NULL,
        PRIMARY KEY (aweme_id, kind)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS cursors (
        scope TEXT PRIMARY KEY,
        value TEXT,
        pages INTEGER,
        updated_at {ts} NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS cursor_history (
        id {serial_pk},
        scope TEXT NOT NULL,
        value TEXT,
        pages INTEGER,
        recorded_at {ts} NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS cursor_history_scope_idx ON cursor_history (scope, id)",
    """
    CREATE TABLE IF NOT EXISTS credits (
        day {date} NOT NULL,
        endpoint TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, endpoint)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS user_ids (
        handle TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        resolved_at {ts} NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY,
        value TEXT,
        updated_at {ts} NOT NULL
    )
    """,
    # Who holds claims: one row per capture process while it runs. Its claims hold while expires_at is ahead
    # (renewed every heartbeat); a silent owner, or one whose process is gone from its host, loses them at once.
    """
    CREATE TABLE IF NOT EXISTS claim_owners (
        owner_id TEXT PRIMARY KEY,
        run_id TEXT,
        host TEXT NOT NULL,
        host_key TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start TEXT,
        heartbeat_seconds DOUBLE PRECISION NOT NULL,
        started_at {ts} NOT NULL,
        heartbeat_at {ts} NOT NULL,
        expires_at {ts} NOT NULL
    )
    """,
    # Units of API work that are not queue items (a listing walk, an account's profile or follow walk, a video's
    # comment walk, a handle's user id), claimed per day by one owner so concurrent runs split them. A unit is done
    # when its kv marker ``complete:<unit>:<day>`` exists (committed with its last cursor); 'left' is a unit whose
    # answers stayed unreadable: its owner keeps it until it ends, and no other run waits for it.
    """
    CREATE TABLE IF NOT EXISTS work_claims (
        unit TEXT NOT NULL,
        day {date} NOT NULL,
        state TEXT NOT NULL DEFAULT 'claimed' CHECK (state IN ('claimed', 'left', 'done')),
        claim_owner TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_at {ts} NOT NULL,
        done_at {ts},
        done_by TEXT,
        done_pid INTEGER,
        PRIMARY KEY (unit, day)
    )
    """,
    "CREATE INDEX IF NOT EXISTS work_claims_owner_idx ON work_claims (claim_owner)",
    # The refresh (state/refresh.py): the downloaded videos it follows, and each (video, age) point it took.
    """
    CREATE TABLE IF NOT EXISTS refresh_videos (
        aweme_id TEXT PRIMARY KEY,
        author_handle TEXT,
        create_time BIGINT,
        play_count BIGINT,
        enrolled_at {ts} NOT NULL,
        gone_at {ts},
        gone_reason TEXT,
        purged_at {ts}
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS refresh_done (
        aweme_id TEXT NOT NULL,
        age_hours DOUBLE PRECISION NOT NULL,
        day {date} NOT NULL,
        status TEXT NOT NULL,
        credits INTEGER NOT NULL DEFAULT 0,
        source_key TEXT,
        updated_at {ts} NOT NULL,
        PRIMARY KEY (aweme_id, age_hours)
    )
    """,
    "CREATE INDEX IF NOT EXISTS refresh_done_day_idx ON refresh_done (day, status)",
]

# Columns added after the first release: (table, column, type). ``migrate`` adds the missing ones to old databases.
ADDED_COLUMNS = [
    ("archive_queue", "claim_owner", "TEXT"),
    ("archive_queue", "last_error", "TEXT"),
]
# Indexes over added columns: created only once the columns exist.
LATE_INDEXES = [
    "CREATE INDEX IF NOT EXISTS archive_queue_claim_owner_idx ON archive_queue (claim_owner)",
]


def add_columns_sql(dialect: str, existing: dict[str, set[str]]) -> list[str]:
    """ALTER TABLE statements for the ADDED_COLUMNS an old database lacks (``existing``: table -> its columns)."""
    out = []
    for table, column, kind in ADDED_COLUMNS:
        if column not in existing.get(table, set()):
            exists = " IF NOT EXISTS" if dialect == "postgres" else ""
            out.append(f"ALTER TABLE {table} ADD COLUMN{exists} {column} {kind}")
    return out + LATE_INDEXES


FILE_KIND_CHECK = "kind IN ('video', 'cover', 'sidecar', 'sound') OR substr(kind, 1, 6) = 'image-'"


def ddl_for(dialect: str) -> list[str]:
    """The CREATE statements for ``dialect`` ('sqlite' or 'postgres'), in dependency order."""
    types = {**_TYPES[dialect], "file_kind_check": FILE_KIND_CHECK}
    return [stmt.format(**types).strip() for stmt in _DDL]


def widen_file_kinds_sql(dialect: str, current_definition: str) -> list[str]:
    """Statements that let a state database created before photo posts record their images and sound.

    ``current_definition`` is the table's DDL (SQLite) or its kind constraint (Postgres); empty when already wide.
    SQLite cannot alter a CHECK, so the table is rebuilt in the same transaction; Postgres swaps the constraint.
    """
    if not current_definition or "'sound'" in current_definition:
        return []
    if dialect == "postgres":
        return [
            "ALTER TABLE archived_files DROP CONSTRAINT IF EXISTS archived_files_kind_check",
            f"ALTER TABLE archived_files ADD CONSTRAINT archived_files_kind_check CHECK ({FILE_KIND_CHECK})",
        ]
    create = next(stmt for stmt in ddl_for("sqlite") if "CREATE TABLE IF NOT EXISTS archived_files" in stmt)
    return [
        "ALTER TABLE archived_files RENAME TO archived_files_before_photo_posts",
        create,
        "INSERT INTO archived_files SELECT * FROM archived_files_before_photo_posts",
        "DROP TABLE archived_files_before_photo_posts",
    ]

"""The refresh's bookkeeping: which tracked videos it follows, and which (video, age) re-resolutions are done.

Two tables of the state database (declared with the others in :mod:`.schema`, so every migration creates them and
every state snapshot carries them):

- ``refresh_videos(aweme_id, …)``: every downloaded video the refresh follows, with its author, its publication
  time (read once from its archived sidecar), its newest known view count (the priority among videos of
  untracked authors) and, once a re-resolution answered "not found" or "private", when and why (a gone video is
  never asked again) and when its raw objects were purged.
- ``refresh_done(aweme_id, age_hours, …)``: one row per video and age: ``claimed`` (a run is asking now),
  ``ok``, ``gone``, ``failed`` (answered, unreadable: the credit is spent, not asked again) or ``skipped`` (the
  age passed before the video was followed or before its turn came: never asked late, which would put a point
  at the wrong age). The row is written before the request, in the transaction that checks the day's allotment,
  so two runs never pay for the same point and together never exceed the allotment.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime

from .backends import Tx
from .core import as_day, read_date, read_dt, utcnow
from .db import StateDB

# Advisory-lock namespace (Postgres) of a day's refresh allotment: pg_advisory_xact_lock(_LOCK_REFRESH, day ordinal).
_LOCK_REFRESH = 0x71C5

REFRESH_TABLES: tuple[str, ...] = ("refresh_videos", "refresh_done")  # created with the core tables (schema.py)
_SPENT = "SELECT COALESCE(SUM(CASE WHEN status = 'claimed' THEN 1 ELSE credits END), 0) FROM refresh_done WHERE day = ?"


@dataclass(frozen=True)
class Followed:
    """A video the refresh follows."""

    aweme_id: str
    author_handle: str | None
    create_time: int | None
    play_count: int | None


@dataclass(frozen=True)
class Gone:
    """A followed video whose re-resolution answered "not found" or "private"."""

    aweme_id: str
    author_handle: str | None
    gone_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class Unenrolled:
    """A downloaded video not followed yet, and where its sidecar (the first detail answer) is."""

    aweme_id: str
    author_handle: str | None
    sidecar_key: str | None


class RefreshState:
    """The refresh tables, through a ``StateDB`` (its backend, transactions and migrations)."""

    def __init__(self, state: StateDB) -> None:
        self.state = state

    def _tx(self, write: bool = False) -> AbstractContextManager[Tx]:
        return self.state._tx(write=write)

    # -- following videos ---------------------------------------------------------------------------------

    def unenrolled(self, limit: int = 5_000) -> list[Unenrolled]:
        """Downloaded videos the refresh does not follow yet, oldest first."""
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT q.aweme_id, q.author_handle, f.storage_key FROM archive_queue q "
                "LEFT JOIN archived_files f ON f.aweme_id = q.aweme_id AND f.kind = 'sidecar' "
                "WHERE q.state = 'downloaded' AND NOT EXISTS "
                "(SELECT 1 FROM refresh_videos r WHERE r.aweme_id = q.aweme_id) "
                "ORDER BY q.downloaded_at, q.aweme_id LIMIT ?",
                [limit],
            )
        return [Unenrolled(r[0], r[1], r[2]) for r in rows]

    def enroll(self, rows: Iterable[Followed]) -> int:
        rows = list(rows)
        with self._tx(write=True) as tx:
            for row in rows:
                tx.execute(
                    "INSERT INTO refresh_videos (aweme_id, author_handle, create_time, play_count, enrolled_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (aweme_id) DO NOTHING",
                    [row.aweme_id, row.author_handle, row.create_time, row.play_count, utcnow()],
                )
        return len(rows)

    def followed(self, created_after: int) -> list[Followed]:
        """Followed videos published after ``created_after`` (Unix seconds) that are not gone."""
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT aweme_id, author_handle, create_time, play_count FROM refresh_videos "
                "WHERE gone_at IS NULL AND create_time IS NOT NULL AND create_time >= ?",
                [created_after],
            )
        return [Followed(r[0], r[1], int(r[2]), None if r[3] is None else int(r[3])) for r in rows]

    def note_views(self, aweme_id: str, play_count: int | None, author_handle: str | None) -> None:
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE refresh_videos SET play_count = COALESCE(?, play_count), "
                "author_handle = COALESCE(?, author_handle) WHERE aweme_id = ?",
                [play_count, author_handle, aweme_id],
            )

    def mark_gone(self, aweme_id: str, reason: str, at: datetime | None = None) -> None:
        """Record that the video answered gone at ``at`` (default: now), the clock its ages are measured by."""
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE refresh_videos SET gone_at = ?, gone_reason = ? WHERE aweme_id = ? AND gone_at IS NULL",
                [at or utcnow(), reason[:500], aweme_id],
            )

    def gone(self, before: datetime | None = None) -> list[Gone]:
        """Gone videos not purged yet (gone before ``before``, if given), first gone first."""
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT aweme_id, author_handle, gone_at, gone_reason FROM refresh_videos "
                "WHERE gone_at IS NOT NULL AND purged_at IS NULL"
                + (" AND gone_at < ?" if before else "")
                + " ORDER BY gone_at, aweme_id",
                [before] if before else [],
            )
        return [Gone(r[0], r[1], read_dt(r[2]), r[3]) for r in rows]

    def mark_purged(self, aweme_id: str) -> None:
        with self._tx(write=True) as tx:
            tx.execute("UPDATE refresh_videos SET purged_at = ? WHERE aweme_id = ?", [utcnow(), aweme_id])

    # -- (video, age) points ------------------------------------------------------------------------------

    def done(self, aweme_ids: Iterable[str]) -> dict[str, set[float]]:
        """The ages already recorded (any status) per video of ``aweme_ids``."""
        ids = list(aweme_ids)
        out: dict[str, set[float]] = {}
        with self._tx() as tx:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for aweme_id, age in tx.fetchall(
                    f"SELECT aweme_id, age_hours FROM refresh_done WHERE aweme_id IN ({marks})", chunk
                ):
                    out.setdefault(aweme_id, set()).add(float(age))
        return out

    def spent(self, day: date) -> int:
        """Credits the refresh spent (or holds for a request in flight) on ``day``."""
        with self._tx() as tx:
            row = tx.fetchrow(_SPENT, [as_day(day)])
        return int(row[0])

    def skip(self, aweme_id: str, ages: Iterable[float], day: date) -> None:
        with self._tx(write=True) as tx:
            for age in ages:
                tx.execute(
                    "INSERT INTO refresh_done (aweme_id, age_hours, day, status, credits, updated_at) "
                    "VALUES (?, ?, ?, 'skipped', 0, ?) ON CONFLICT (aweme_id, age_hours) DO NOTHING",
                    [aweme_id, float(age), as_day(day), utcnow()],
                )

    def claim(self, aweme_id: str, age: float, day: date, allotment: int, source_key: str) -> bool:
        """Claim the (video, age) point for a request if it is not recorded yet and ``day``'s allotment has a
        credit left; False otherwise. Atomic across runs (one transaction holding the day's lock)."""
        with self._tx(write=True) as tx:
            if self.state.dialect == "postgres":
                tx.execute(
                    "SELECT pg_advisory_xact_lock(CAST(? AS integer), CAST(? AS integer))",
                    [_LOCK_REFRESH, day.toordinal()],
                )
            spent = tx.fetchrow(_SPENT, [as_day(day)])
            if int(spent[0]) >= allotment:
                return False
            changed = tx.execute(
                "INSERT INTO refresh_done (aweme_id, age_hours, day, status, credits, source_key, updated_at) "
                "VALUES (?, ?, ?, 'claimed', 0, ?, ?) ON CONFLICT (aweme_id, age_hours) DO NOTHING",
                [aweme_id, float(age), as_day(day), source_key, utcnow()],
            ).rowcount
        return changed == 1

    def finish(self, aweme_id: str, age: float, status: str, credits: int, source_key: str | None) -> None:
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE refresh_done SET status = ?, credits = ?, source_key = COALESCE(?, source_key), "
                "updated_at = ? WHERE aweme_id = ? AND age_hours = ?",
                [status, credits, source_key, utcnow(), aweme_id, float(age)],
            )

    def release(self, aweme_id: str, age: float) -> None:
        """Forget a claim whose request never happened (a budget or systemic stop): the point stays to be taken."""
        with self._tx(write=True) as tx:
            tx.execute(
                "DELETE FROM refresh_done WHERE aweme_id = ? AND age_hours = ? AND status = 'claimed'",
                [aweme_id, float(age)],
            )

    def claimed(self) -> list[tuple[str, float, date | None, str | None]]:
        """(aweme_id, age_hours, day, source_key) of every claim still open (a run in flight, or one killed)."""
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT aweme_id, age_hours, day, source_key FROM refresh_done WHERE status = 'claimed' "
                "ORDER BY aweme_id, age_hours"
            )
        return [(r[0], float(r[1]), read_date(r[2]), r[3]) for r in rows]

    def points(
        self, status: str | None = None, aweme_id: str | None = None
    ) -> list[tuple[str, float, date | None, str, int, str | None]]:
        """(aweme_id, age_hours, day, status, credits, source_key) of every recorded point (of ``status``, of
        ``aweme_id``)."""
        where = [(c, v) for c, v in (("status", status), ("aweme_id", aweme_id)) if v is not None]
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT aweme_id, age_hours, day, status, credits, source_key FROM refresh_done"
                + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where else "")
                + " ORDER BY aweme_id, age_hours",
                [v for _, v in where],
            )
        return [(r[0], float(r[1]), read_date(r[2]), r[3], int(r[4]), r[5]) for r in rows]

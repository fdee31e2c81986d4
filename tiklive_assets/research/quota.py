"""The Research API quota ledger and window progress, in the state database shared by every run and sensor.

Two tables of their own (created on first use, on the same sqlite/Postgres backend as ``StateDB``):

- ``research_quota(day, requests, exhausted)``: requests sent per UTC day. ``QuotaLedger.reserve`` adds one in a
  single conditional ``UPDATE … WHERE requests < limit``, atomic on both dialects, so two runs sharing a day can
  never together start a request past the limit. When the API itself says ``daily_quota_limit_exceeded`` the
  day is marked exhausted and no run sends again that day.
- ``research_windows(scope, window, …)``: per (query hash, window) the generation, ``search_id``, next cursor,
  pages and videos collected and whether the window is done, so a quota stop, an expired ``search_id`` or a
  crash resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tiklive_assets.research.errors import QuotaExhausted
from tiklive_assets.state import StateDB

DAILY_QUOTA = 1000

_DDL = [
    """
    CREATE TABLE IF NOT EXISTS research_quota (
        day TEXT PRIMARY KEY,
        requests INTEGER NOT NULL DEFAULT 0,
        exhausted INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS research_windows (
        scope TEXT NOT NULL,
        window_key TEXT NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL DEFAULT 'open',
        search_id TEXT,
        next_cursor INTEGER NOT NULL DEFAULT 0,
        pages INTEGER NOT NULL DEFAULT 0,
        videos INTEGER NOT NULL DEFAULT 0,
        restarts INTEGER NOT NULL DEFAULT 0,
        stop_reason TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (scope, window_key)
    )
    """,
]


def utc_today() -> date:
    return datetime.now(UTC).date()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class ResearchState:
    """The research tables on a ``StateDB``'s backend (sqlite or Postgres), migrated on first use."""

    def __init__(self, state: StateDB) -> None:
        self.state = state
        self._migrated = False

    def _tx(self, write: bool = False):
        if not self._migrated:
            with self.state._tx(write=True) as tx:  # same backend and connection handling as StateDB
                for stmt in _DDL:
                    tx.execute(stmt.strip())
            self._migrated = True
        return self.state._tx(write=write)

    # -- quota --------------------------------------------------------------------------------------------

    def reserve(self, day: date, limit: int) -> int | None:
        """Spend one request of ``day`` if it stays within ``limit``; the new total, or None if refused."""
        key = day.isoformat()
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO research_quota (day, requests, exhausted, updated_at) VALUES (?, 0, 0, ?) "
                "ON CONFLICT (day) DO NOTHING",
                [key, _now()],
            )
            updated = tx.execute(
                "UPDATE research_quota SET requests = requests + 1, updated_at = ? "
                "WHERE day = ? AND requests < ? AND exhausted = 0",
                [_now(), key, limit],
            ).rowcount
            row = tx.fetchone("SELECT requests FROM research_quota WHERE day = ?", [key])
        return int(row[0]) if updated == 1 else None

    def spent(self, day: date) -> tuple[int, bool]:
        with self._tx() as tx:
            row = tx.fetchone("SELECT requests, exhausted FROM research_quota WHERE day = ?", [day.isoformat()])
        return (0, False) if row is None else (int(row[0]), bool(row[1]))

    def mark_exhausted(self, day: date) -> None:
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO research_quota (day, requests, exhausted, updated_at) VALUES (?, 0, 1, ?) "
                "ON CONFLICT (day) DO UPDATE SET exhausted = 1, updated_at = excluded.updated_at",
                [day.isoformat(), _now()],
            )

    # -- window progress ----------------------------------------------------------------------------------

    def window(self, scope: str, window_key: str) -> WindowProgress | None:
        with self._tx() as tx:
            row = tx.fetchone(
                f"SELECT {_COLS} FROM research_windows WHERE scope = ? AND window_key = ?", [scope, window_key]
            )
        return None if row is None else WindowProgress(*row)

    def windows(self, scope: str | None = None) -> list[WindowProgress]:
        sql = f"SELECT {_COLS} FROM research_windows"
        params: list[Any] = []
        if scope is not None:
            sql += " WHERE scope = ?"
            params.append(scope)
        with self._tx() as tx:
            return [WindowProgress(*row) for row in tx.fetchall(sql + " ORDER BY scope, window_key", params)]

    def save_window(self, p: WindowProgress) -> None:
        with self._tx(write=True) as tx:
            tx.execute(
                f"INSERT INTO research_windows ({_COLS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, window_key) DO UPDATE SET generation = excluded.generation, "
                "status = excluded.status, search_id = excluded.search_id, next_cursor = excluded.next_cursor, "
                "pages = excluded.pages, videos = excluded.videos, restarts = excluded.restarts, "
                "stop_reason = excluded.stop_reason, updated_at = excluded.updated_at",
                [
                    p.scope,
                    p.window_key,
                    p.generation,
                    p.status,
                    p.search_id,
                    p.next_cursor,
                    p.pages,
                    p.videos,
                    p.restarts,
                    p.stop_reason,
                    _now(),
                ],
            )


_COLS = "scope, window_key, generation, status, search_id, next_cursor, pages, videos, restarts, stop_reason"


@dataclass
class WindowProgress:
    scope: str  # the query hash
    window_key: str
    generation: int = 1
    status: str = "open"  # 'open' or 'done'
    search_id: str | None = None
    next_cursor: int = 0
    pages: int = 0
    videos: int = 0
    restarts: int = 0
    stop_reason: str | None = None


@dataclass(eq=False)
class QuotaLedger:
    """The Research client's ledger (``metering.Ledger``): the day's quota shared through the state DB, plus a cap
    for this run."""

    state: StateDB | ResearchState
    daily_quota: int = DAILY_QUOTA
    run_cap: int | None = None
    today: Callable[[], date] = utc_today
    spent_this_run: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        state = self.state
        self.research_state = state if isinstance(state, ResearchState) else ResearchState(state)

    def reserve(self, endpoint: str) -> None:
        day = self.today()
        if self.run_cap is not None and self.spent_this_run >= self.run_cap:
            raise QuotaExhausted(day, self.spent_this_run, self.run_cap, scope="per-run request cap")
        total = self.research_state.reserve(day, self.daily_quota)
        if total is None:
            spent, _ = self.research_state.spent(day)
            raise QuotaExhausted(day, spent, self.daily_quota)
        self.spent_this_run += 1

    def mark_exhausted(self) -> None:
        self.research_state.mark_exhausted(self.today())

    def left_today(self) -> int:
        spent, exhausted = self.research_state.spent(self.today())
        return 0 if exhausted else max(0, self.daily_quota - spent)

    def spent_today(self) -> int:
        return self.research_state.spent(self.today())[0]

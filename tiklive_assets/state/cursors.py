"""Listing cursors: where each walk stands, its history, and the one-transaction commit of a discovery page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .archive_queue import insert_pending, queued_ids
from .backends import Tx
from .core import StateCore, batches, read_dt, utcnow
from .kv import write_values
from .models import CursorRecord


@dataclass(frozen=True)
class ListingPage:
    """What StateDB.record_listing_page committed for one listing page, in one transaction."""

    new: int  # ids queued by this page
    enqueued_today: int  # the walk's total for the day, this page included
    complete: bool  # the walk is finished for the day


class CursorState(StateCore):
    """cursors and cursor_history: get, set (with kv markers), list, prune; commit a listing page."""

    def get_cursor(self, scope: str) -> CursorRecord | None:
        with self._tx() as tx:
            row = tx.fetchone("SELECT scope, value, pages, updated_at FROM cursors WHERE scope = ?", [scope])
        return None if row is None else CursorRecord(row[0], row[1], row[2], read_dt(row[3]))

    def set_cursor(
        self,
        scope: str,
        value: str | int | None,
        pages: int | None = None,
        *,
        values: dict[str, str | None] | None = None,
    ) -> None:
        """Upsert the cursor for ``scope`` and append it to cursor_history; committed before returning.

        ``values`` are kv entries written in the same transaction (None deletes one): a walk's markers (complete,
        replies pending) can never disagree with its cursor after a crash."""
        text = None if value is None else str(value)
        now = utcnow()
        with self._tx(write=True) as tx:
            self._set_cursor(tx, scope, text, pages, now)
            write_values(tx, values or {}, now)

    @staticmethod
    def _set_cursor(tx: Tx, scope: str, text: str | None, pages: int | None, now: datetime) -> None:
        tx.execute(
            "INSERT INTO cursors (scope, value, pages, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET value = excluded.value, pages = excluded.pages, "
            "updated_at = excluded.updated_at",
            [scope, text, pages, now],
        )
        tx.execute(
            "INSERT INTO cursor_history (scope, value, pages, recorded_at) VALUES (?, ?, ?, ?)",
            [scope, text, pages, now],
        )

    def record_listing_page(
        self,
        scope: str,
        rows: list[tuple[str, str, str | None]],
        *,
        next_cursor: str | None,
        pages: int,
        max_videos: int,
        last_page: bool,
        stop_when_all_known: bool,
        counter_key: str,
        complete_key: str,
    ) -> ListingPage:
        """One discovery page, in ONE transaction: queue its new ids (up to the walk's allowance for the day), advance
        the cursor, count them toward the day's total, and mark the walk complete when this page ends it.

        A crash before the commit leaves nothing (the rerun fetches the page again); after it, everything. The
        walk ends on its last page (``last_page``), at ``max_videos`` queued today, or, with
        ``stop_when_all_known``, on a page whose ids were all queued before (posts captured on an earlier day).
        """
        unique = list({str(r[0]).strip(): (str(r[0]).strip(), str(r[1]), r[2]) for r in rows}.values())
        if any(not r[0] for r in unique):
            raise ValueError("record_listing_page: empty aweme_id")
        now = utcnow()
        with self._tx(write=True) as tx:
            row = tx.fetchone("SELECT value FROM kv WHERE key = ?", [counter_key])
            enqueued = int(row[0]) if row and row[0] else 0
            known: set[str] = set()
            for batch in batches([r[0] for r in unique]):
                known.update(queued_ids(tx, batch))
            fresh = [r for r in unique if r[0] not in known][: max(max_videos - enqueued, 0)]
            new = 0
            for batch in batches(fresh):
                new += insert_pending(tx, batch, now)
            enqueued += new
            complete = last_page or enqueued >= max_videos or (stop_when_all_known and bool(unique) and new == 0)
            self._set_cursor(tx, scope, None if next_cursor is None else str(next_cursor), pages, now)
            write_values(tx, {counter_key: str(enqueued), complete_key: "1" if complete else None}, now)
        return ListingPage(new=new, enqueued_today=enqueued, complete=complete)

    def delete_cursor(self, scope: str) -> bool:
        """Forget the current cursor (its history is kept). True if there was one."""
        return self._write("DELETE FROM cursors WHERE scope = ?", [scope]) > 0

    def list_cursors(self, prefix: str = "") -> list[CursorRecord]:
        """Current cursors whose scope starts with ``prefix``, by scope."""
        sql = "SELECT scope, value, pages, updated_at FROM cursors"
        params: list[Any] = []
        if prefix:
            sql += " WHERE substr(scope, 1, CAST(? AS INTEGER)) = ?"
            params += [len(prefix), prefix]
        with self._tx() as tx:
            rows = tx.fetchall(sql + " ORDER BY scope", params)
        return [CursorRecord(r[0], r[1], r[2], read_dt(r[3])) for r in rows]

    def cursor_history(self, scope: str, limit: int = 20) -> list[CursorRecord]:
        """The last ``limit`` values set for ``scope``, newest first (updated_at = when it was recorded)."""
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT scope, value, pages, recorded_at FROM cursor_history WHERE scope = ? ORDER BY id DESC LIMIT ?",
                [scope, int(limit)],
            )
        return [CursorRecord(r[0], r[1], r[2], read_dt(r[3])) for r in rows]

    def prune_cursor_history(self, keep: int = 200) -> int:
        """Janitor: keep only the newest ``keep`` history rows per scope; returns how many were deleted."""
        return self._write(
            "DELETE FROM cursor_history WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
            "(PARTITION BY scope ORDER BY id DESC) AS rn FROM cursor_history) ranked WHERE rn > ?)",
            [int(keep)],
        )

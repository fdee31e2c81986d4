"""Dead letters: the ids given up on, why, and when (the queue row stays 'dead', so they are never re-queued)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .core import StateCore, as_utc, read_dt, utcnow


@dataclass(frozen=True)
class DeadLetter:
    aweme_id: str
    reason: str | None
    http_status: int | None
    failed_at: datetime | None


class DeadLetterState(StateCore):
    """dead_letter: look one up, count them by reason, age them out."""

    def dead_letter(self, aweme_id: str) -> DeadLetter | None:
        with self._tx() as tx:
            row = tx.fetchone(
                "SELECT aweme_id, reason, http_status, failed_at FROM dead_letter WHERE aweme_id = ?", [aweme_id]
            )
        if row is None:
            return None
        return DeadLetter(row[0], row[1], None if row[2] is None else int(row[2]), read_dt(row[3]))

    def dead_letters_by_reason(self, since: datetime | None = None) -> dict[str, int]:
        """Dead-letter counts per reason (None reason counted as 'unknown'), optionally only those failed at/after
        ``since``."""
        sql = "SELECT reason, COUNT(*) FROM dead_letter"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE failed_at >= ?"
            params.append(as_utc(since))
        sql += " GROUP BY reason"
        out: dict[str, int] = {}
        with self._tx() as tx:
            for reason, count in tx.fetchall(sql, params):
                key = reason if reason is not None else "unknown"
                out[key] = out.get(key, 0) + int(count)
        return out

    def age_out_dead_letters(self, older_than: timedelta) -> int:
        """Delete dead letters that failed more than ``older_than`` ago; returns how many.

        The queue rows stay 'dead', so the ids are still never re-queued.
        """
        cutoff = utcnow() - older_than
        return self._write("DELETE FROM dead_letter WHERE failed_at < ?", [cutoff])

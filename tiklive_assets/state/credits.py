"""API credits: each day's requests per endpoint, spent against the daily budget atomically."""

from __future__ import annotations

from datetime import date

from .core import StateCore, as_day
from .errors import CreditBudgetExhausted

# Advisory-lock namespace (Postgres) for a day's credits: pg_advisory_xact_lock(_LOCK_CREDITS, day ordinal).
_LOCK_CREDITS = 0x71C2


class CreditState(StateCore):
    """credits: reserve against the day's budget, and report what a day spent."""

    def reserve_credit(self, day: date, endpoint: str, daily_budget: int | None, *, cost: int = 1) -> int:
        """Atomically spend ``cost`` credits of ``day``'s budget on ``endpoint``; returns the new day total.

        Raises CreditBudgetExhausted (and spends nothing) when the day total across all endpoints would
        exceed ``daily_budget``. ``daily_budget=None`` means unlimited (still counted). Correct across
        threads and processes: one transaction holding the day's lock (Postgres advisory lock,
        sqlite BEGIN IMMEDIATE).
        """
        day = as_day(day)
        with self._tx(write=True) as tx:
            if self.dialect == "postgres":
                tx.execute(
                    "SELECT pg_advisory_xact_lock(CAST(? AS integer), CAST(? AS integer))",
                    [_LOCK_CREDITS, day.toordinal()],
                )
            spent = int(tx.fetchrow("SELECT COALESCE(SUM(requests), 0) FROM credits WHERE day = ?", [day])[0])
            if daily_budget is not None and spent + cost > daily_budget:
                raise CreditBudgetExhausted(day, spent, daily_budget)
            tx.execute(
                "INSERT INTO credits (day, endpoint, requests) VALUES (?, ?, ?) "
                "ON CONFLICT (day, endpoint) DO UPDATE SET requests = credits.requests + excluded.requests",
                [day, endpoint, cost],
            )
        return spent + cost

    def credits_spent(self, day: date) -> dict[str, int]:
        """Requests per endpoint on ``day``."""
        with self._tx() as tx:
            rows = tx.fetchall("SELECT endpoint, requests FROM credits WHERE day = ? ORDER BY endpoint", [as_day(day)])
        return {endpoint: int(n) for endpoint, n in rows}

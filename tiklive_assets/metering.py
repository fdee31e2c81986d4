"""What a request costs, for both API clients: the ledger asked before each request is sent, and the meter of what
was sent.

Every request to either API costs (a TikLiveAPI credit, a Research API request of the day's quota), whatever it
answers, retries included. So each client asks its :class:`Ledger` to ``reserve`` one right before an attempt goes
out (a ledger refuses by raising a :class:`BudgetExhausted`), counts the attempt in its :class:`RequestMeter` once
it went out, and tells the ledger when the API itself said the money is gone (:func:`mark_exhausted`).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from tiklive_assets.transport import ApiClientError


class Ledger(Protocol):
    """Reserves one request's cost before it is sent; raises a :class:`BudgetExhausted` to refuse it.

    A ledger may also offer ``mark_exhausted()``: the API said the budget is spent (the Research API's
    ``daily_quota_limit_exceeded``, TikLiveAPI's balance message), so no run sends again until it is renewed.
    """

    def reserve(self, endpoint: str) -> None: ...


def mark_exhausted(ledger: Ledger | None) -> None:
    """Tell ``ledger`` the API itself said the budget is spent, when the ledger keeps that (else nothing)."""
    mark = getattr(ledger, "mark_exhausted", None)
    if callable(mark):
        mark()


class BudgetExhausted(ApiClientError):
    """A ledger refused a request before it was sent: it would pass the day's budget (credits, quota) or a cap.

    ``day`` is the budget's day, ``spent`` what was spent of it, ``limit`` the budget (None when it is the
    account's balance rather than a budget we set). Each API's subclass says what to do.
    """

    def __init__(self, day: date, spent: int, limit: int | None, message: str) -> None:
        self.day = day
        self.spent = spent
        self.limit = limit
        super().__init__(message)


@dataclass
class RequestMeter:
    """Every request a client sent (each one costs), by endpoint and by answer; thread-safe.

    ``by_status``: the HTTP status, or ``connection-error`` for an attempt that got none; ``by_code``: the API's
    own answer code (the Research API's ``ok``, ``internal_error``, ...); ``not_data``: 200s that were errors, by
    kind; ``retries``: attempts sent again, by what caused them; ``token_requests``: OAuth token requests, which
    cost nothing.
    """

    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    not_data: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    token_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, endpoint: str, status: int | str, code: str | None = None) -> None:
        with self._lock:
            self.by_endpoint[endpoint] += 1
            self.by_status[str(status)] += 1
            if code is not None:
                self.by_code[code] += 1

    def count_not_data(self, kind: str) -> None:
        with self._lock:
            self.not_data[kind] += 1

    def count_retry(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] += 1

    def count_token(self) -> None:
        with self._lock:
            self.token_requests += 1

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    @property
    def retried(self) -> int:
        return sum(self.retries.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_endpoint)


__all__ = ["BudgetExhausted", "Ledger", "RequestMeter", "mark_exhausted"]

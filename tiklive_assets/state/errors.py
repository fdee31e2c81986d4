"""Errors raised by the operational state database."""

from __future__ import annotations

from tiklive_assets.tikliveapi.errors import CreditBudgetExhausted  # the ledger raises the client's error

__all__ = ["CreditBudgetExhausted", "StateError", "StateUnavailable"]


class StateError(Exception):
    """Base class for state-database errors."""


class StateUnavailable(StateError):
    """The state database cannot be reached (down, restarted, connection killed, disk full, locked too long).

    An outage of the system, never the fault of the id being processed: capture stops, refunds the attempts and
    blames no id; a rerun once the database is back resumes where this stopped."""

    def __init__(self, where: str, cause: BaseException):
        self.where = where
        super().__init__(
            f"the state database at {where} is unavailable ({type(cause).__name__}: "
            f"{str(cause).strip().splitlines()[0] if str(cause).strip() else 'no detail'}); check "
            "TIKLIVE_STATE_URL and that the database is up, then rerun: nothing was blamed on any video"
        )

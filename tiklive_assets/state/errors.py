"""Errors raised by the operational state database."""

from __future__ import annotations

from tiklive_assets.tikliveapi.errors import CreditBudgetExhausted  # the ledger raises the client's error

__all__ = ["CreditBudgetExhausted", "StateError"]


class StateError(Exception):
    """Base class for state-database errors."""



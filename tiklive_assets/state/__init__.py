"""Operational state database (queue, dead letters, archived files, cursors, credits, caches): sqlite or Postgres."""

from .db import DEFAULT_LEASE, DeadLetter, LeftItem, ListingPage, StateDB, state_url_for
from .errors import CreditBudgetExhausted, StateError, StateUnavailable
from .models import FILE_KINDS, QUEUE_STATES, CursorRecord, FileRecord, QueueItem
from .owners import ClaimOwner, OwnerStatus

__all__ = [
    "DEFAULT_LEASE",
    "FILE_KINDS",
    "QUEUE_STATES",
    "ClaimOwner",
    "CreditBudgetExhausted",
    "LeftItem",
    "ListingPage",
    "OwnerStatus",
    "CursorRecord",
    "DeadLetter",
    "FileRecord",
    "QueueItem",
    "StateDB",
    "StateError",
    "StateUnavailable",
    "state_url_for",
]

"""Operational state database (queue, dead letters, archived files, cursors, credits, caches): sqlite or Postgres."""

from .db import DEFAULT_LEASE, DeadLetter, StateDB, state_url_for
from .errors import CreditBudgetExhausted, StateError
from .models import FILE_KINDS, QUEUE_STATES, CursorRecord, FileRecord, QueueItem

__all__ = [
    "DEFAULT_LEASE",
    "FILE_KINDS",
    "QUEUE_STATES",
    "CreditBudgetExhausted",
    "CursorRecord",
    "DeadLetter",
    "FileRecord",
    "QueueItem",
    "StateDB",
    "StateError",
    "state_url_for",
]

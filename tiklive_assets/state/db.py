"""StateDB: the pipeline's operational state (queue, dead letters, files, cursors, credits, caches) on sqlite or
Postgres.

Each area lives in its own module as a class over the shared ``StateCore`` (backend, migrations, transactions);
StateDB combines them, so callers use one object: ``state.enqueue(...)``, ``state.set_cursor(...)``, ...
"""

from __future__ import annotations

from pathlib import Path

from .archive_queue import DEFAULT_LEASE, QueueState
from .backends import backend_from_url
from .claims import LeftItem, OwnerState
from .core import utcnow
from .credits import CreditState
from .cursors import CursorState, ListingPage
from .dead_letters import DeadLetter, DeadLetterState
from .files import FileState
from .kv import KvState
from .user_ids import UserIdState

__all__ = ["DEFAULT_LEASE", "DeadLetter", "LeftItem", "ListingPage", "StateDB", "state_url_for", "utcnow"]


def state_url_for(data_root: str | Path) -> str:
    """The default embedded state database URL for a data root: ``sqlite:///<root>/state.sqlite``."""
    return f"sqlite:///{Path(data_root).expanduser().resolve() / 'state.sqlite'}"


class StateDB(QueueState, OwnerState, DeadLetterState, FileState, CursorState, CreditState, UserIdState, KvState):
    """Operational state shared by every worker thread and process. Thread-safe; nothing connects until first use."""

    @classmethod
    def from_url(cls, url: str) -> StateDB:
        """``sqlite:///abs/path/state.sqlite`` (embedded, WAL) or ``postgresql://user@host/db``."""
        return cls(backend_from_url(url), url)

    def __repr__(self) -> str:
        return f"StateDB(dialect={self.dialect!r})"

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

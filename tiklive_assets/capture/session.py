"""One capture session: the client, the raw archive, the state database and the tracking config, wired together.

Dagster assets and the CLI both build a ``CaptureSession`` and hand it to the workers in this package, so the
workers never know which of the two is driving them. Creating one first writes to the store whatever an earlier
session had to spool (responses paid for while the store was down), before any new request is made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.state import StateDB
from tiklive_assets.storage import ObjectStore
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tracking import TrackingConfig


class StateCreditLedger:
    """The client's credit ledger, persisted in the state database so every process shares the day's budget."""

    def __init__(self, state: StateDB, daily_budget: int | None):
        self.state = state
        self.daily_budget = daily_budget

    def reserve(self, endpoint: str) -> None:
        self.state.reserve_credit(datetime.now(UTC).date(), endpoint, self.daily_budget)


@dataclass
class CaptureSession:
    client: TikLiveClient
    archive: RawArchive
    state: StateDB
    store: ObjectStore
    config: TrackingConfig
    day: date
    scratch: Path  # local directory for .part files of downloads in flight
    counters: Counter = field(default_factory=Counter)
    spool: Path | None = None  # responses the store could not take; default: beside scratch (TIKLIVE_HOME/spool)

    def __post_init__(self) -> None:
        if self.archive.spool is None:
            self.archive.spool = self.spool or self.scratch.parent / "spool"
        self.archive.flush_spool()  # a StoreError here stops the session before it spends a credit

    @property
    def credits_spent(self) -> int:
        return self.client.credits.total

    def cursor_scope(self, endpoint: str, entity: str) -> str:
        """The key of a discovery cursor: one walk per (endpoint, entity, ingest day)."""
        return f"{endpoint.strip('/')}:{entity}:{self.day.isoformat()}"

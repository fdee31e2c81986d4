"""One capture session: the client, the raw archive, the state database and the tracking config, wired together.

Dagster assets and the CLI both build a ``CaptureSession`` and hand it to the workers in this package, so the
workers never know which of the two is driving them. Creating one first writes to the store whatever an earlier
session had to spool (responses paid for while the store was down), before any new request is made.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.state import StateDB
from tiklive_assets.storage import ObjectStore
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tracking import TrackingConfig


class StateCreditLedger:
    """The client's credit ledger, persisted in the state database so every process shares the day's budget.

    The client reserves a credit right before it sends each request, after its rate-limit wait and on every retry:
    the last moment a paid request can still be refused. A capture thread that pays for claimed work installs a
    check there (``guard``): it renews the claim and raises when the claim is no longer this run's, so the request is
    never sent (and no credit is recorded), however long the thread waited for its turn in the rate window."""

    def __init__(self, state: StateDB, daily_budget: int | None):
        self.state = state
        self.daily_budget = daily_budget
        self._local = threading.local()

    @contextmanager
    def guard(self, check: Callable[[], None]) -> Iterator[None]:
        """While open, this thread's every reserve first calls ``check`` (which raises to refuse the request)."""
        checks = self._local.__dict__.setdefault("checks", [])
        checks.append(check)
        try:
            yield
        finally:
            checks.pop()

    def reserve(self, endpoint: str) -> None:
        for check in getattr(self._local, "checks", ()):
            check()
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

    @contextmanager
    def paying_for(
        self, confirm: Callable[[], bool], lost: Callable[[], Exception], fresh_for: float
    ) -> Iterator[None]:
        """Around a paid request for claimed work. ``confirm`` renews and re-checks the claim (False: not ours any
        more, ``lost()`` is raised and nothing is sent). It runs on entering, and again right before each credit is
        reserved (see ``StateCreditLedger``: after the rate-limit wait, before every retry) unless it succeeded less
        than ``fresh_for`` seconds ago: the claim was renewed for longer than that, so nobody can have taken it, and
        the request is not delayed past the rate window's jitter margin by a database round trip."""
        confirmed_at: list[float] = []

        def check() -> None:
            if confirmed_at and time.monotonic() - confirmed_at[-1] < fresh_for:
                return
            if not confirm():
                raise lost()
            confirmed_at.append(time.monotonic())

        check()
        ledger = getattr(self.client, "credit_ledger", None)
        if isinstance(ledger, StateCreditLedger):
            with ledger.guard(check):
                yield
        else:
            yield

    def cursor_scope(self, endpoint: str, entity: str) -> str:
        """The key of a discovery cursor: one walk per (endpoint, entity, ingest day)."""
        return f"{endpoint.strip('/')}:{entity}:{self.day.isoformat()}"

"""Units of API work that are not queue items, split between concurrent runs by claims in the state database.

A unit is one listing walk, one account's profile, followers or following, one video's comment walk, or one handle's
user id, each for one day. Every capture step registers this process as a claim owner (heartbeating every
``capture.claim_heartbeat_seconds``) and claims a unit before its first request; a unit finished by any run is done
for the day (its ``complete:`` marker, committed with the walk's last cursor) and skipped by every other run. A unit
held by a live run is left to it: on this host, a run whose process is alive keeps its units however late its
heartbeat (a loaded machine slows a worker, it does not kill it). One whose owner died (its process gone from this
host) or, on another host, fell silent for three heartbeats is taken over and resumed from the cursor its owner
saved after every page. Right before each page is paid for (after the wait for the rate window), the walk renews
and re-checks its claim in one transaction: a run that lost it stops, so no page is bought twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.state import ClaimOwner
from tiklive_assets.state.claims import UnitClaim, UnitRow

log = logging.getLogger(__name__)
DEFAULT_HEARTBEAT_SECONDS = 10.0
T = TypeVar("T")


class ClaimLost(Exception):
    """Another run took this unit over while this process was silent; it walks on from the saved cursor."""

    def __init__(self, unit: str) -> None:
        super().__init__(f"the claim on {unit} was taken over by another run (this one was silent too long)")
        self.unit = unit


def heartbeat_seconds(session: CaptureSession) -> float:
    return float(getattr(session.config.capture, "claim_heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS))


class _Beat(threading.Thread):
    def __init__(self, session: CaptureSession, owner: ClaimOwner) -> None:
        super().__init__(name="unit-claim-heartbeat", daemon=True)
        self.session, self.owner = session, owner
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.owner.heartbeat_seconds):
            try:
                if not self.session.state.heartbeat(self.owner):
                    log.warning(
                        "unit claims of run %s lapsed; units taken over meanwhile are skipped", self.owner.run_id
                    )
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; held() guards every page
                log.warning("unit claim heartbeat failed: %s: %s", type(exc).__name__, exc)


@dataclass
class UnitCounts:
    """What the claims decided in one step: units done here, found done, left to live runs, taken over."""

    mine: int = 0
    done_elsewhere: int = 0
    held_elsewhere: int = 0
    taken_over: int = 0


class WorkUnits:
    """This process's claims on the day's units, for one capture step (a context manager: heartbeats while open,
    releases whatever it still holds on exit)."""

    def __init__(self, session: CaptureSession, run_id: str | None = None) -> None:
        self.session = session
        self.owner = ClaimOwner.this_process(run_id, heartbeat_seconds(session))
        self.counts = UnitCounts()
        self._beat: _Beat | None = None

    def __enter__(self) -> WorkUnits:
        self.session.state.register_owner(self.owner)
        self._beat = _Beat(self.session, self.owner)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._beat is not None:
            self._beat.stopped.set()
            self._beat.join(timeout=5)
        self.session.state.end_owner(self.owner)

    def claim(self, unit: str) -> UnitClaim:
        """Claim ``unit`` for the session's day; a holder whose process is gone from this host is expired first."""
        state, day = self.session.state, self.session.day
        claim = state.claim_unit(unit, day, self.owner)
        if claim.status == "held" and state.expire_dead_owners():
            claim = state.claim_unit(unit, day, self.owner)
        if claim.status == "mine":
            self.counts.mine += 1
            if claim.taken_over:
                self.counts.taken_over += 1
                log.info("taking over %s from a run that stopped; resuming from its saved cursor", unit)
        elif claim.status == "done":
            self.counts.done_elsewhere += 1
        else:
            self.counts.held_elsewhere += 1
        return claim

    def finish(self, unit: str) -> None:
        self.session.state.finish_unit(unit, self.session.day, self.owner)

    def leave(self, unit: str) -> None:
        self.session.state.leave_unit(unit, self.session.day, self.owner)

    def release(self, unit: str) -> None:
        self.session.state.release_unit(unit, self.session.day, self.owner)

    def held(self, unit: str) -> bool:
        return self.session.state.unit_held(unit, self.session.day, self.owner)

    def guarded(self, unit: str, fetch: Callable[..., T]) -> Callable[..., T]:
        """``fetch`` whose every paid request is preceded (after its rate-limit wait) by a renewal and re-check of the
        claim on ``unit`` in one transaction: a claim taken over raises ClaimLost, spending nothing."""

        def still_ours() -> bool:
            return self.session.state.confirm_unit(unit, self.session.day, self.owner)

        def call(*args: Any, **kwargs: Any) -> T:
            with self.session.paying_for(still_ours, lambda: ClaimLost(unit), self.owner.heartbeat_seconds):
                return fetch(*args, **kwargs)

        return call

    @contextmanager
    def working(self, unit: str) -> Iterator[list[bool]]:
        """Around a claimed unit's work: the caller sets ``flag[0] = True`` when the unit is left for the next run
        (unreadable answers). Finished otherwise; a lost claim is swallowed (the taker finishes the unit)."""
        left = [False]
        try:
            yield left
        except ClaimLost as exc:
            log.warning("%s", exc)
            return
        if left[0]:
            self.leave(unit)
        else:
            self.finish(unit)

    def _rows(self, prefixes: tuple[str, ...]) -> list[UnitRow]:
        return [r for r in self.session.state.units(self.session.day) if r.unit.startswith(prefixes)]

    def others_walking(self, prefixes: tuple[str, ...]) -> list[UnitRow]:
        """The day's units under ``prefixes`` that other live runs are walking now (not done, not left)."""
        return [r for r in self._rows(prefixes) if r.state == "claimed" and not r.complete and r.owner_alive]

    def free_unfinished(self, prefixes: tuple[str, ...]) -> list[str]:
        """The day's units under ``prefixes`` that were started, are not done and nobody live holds: a stopped
        run's, to take over (a unit left with unreadable answers waits for the next run instead)."""
        rows = self._rows(prefixes)
        return [r.unit for r in rows if r.state == "claimed" and not r.complete and not r.owner_alive]

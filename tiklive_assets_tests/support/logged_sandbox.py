"""The sandbox with its own log of every API request, and a gate that holds answers while it is closed.

The multi-worker tests assert from this log (a request is a credit; its query names the page or the id) and close
the gate until every worker is in, so that they really run at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tiklive_assets.sandbox import SandboxConfig, SandboxServer


class LoggedSandbox(SandboxServer):
    """The sandbox, logging each API request's path, query and status beside its own counters."""

    def __init__(self, config: SandboxConfig, gate_seconds: float = 20.0) -> None:
        super().__init__(config)
        self.log: list[tuple[str, str, int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.gate_seconds = gate_seconds

    def handle_api(self, path: str, query: str, headers: Any) -> tuple[int, dict | bytes, dict[str, str]]:
        # Answered (and counted against the plan's window) as it arrives, then held: holding a request before the
        # sandbox sees it would make the held ones arrive together when the gate opens, a burst their senders
        # never sent, answered 429 (a credit, and a request seen twice).
        status, body, extra = super().handle_api(path, query, headers)
        with self._lock:
            self.log.append((path, query, status))
        self.gate.wait(timeout=self.gate_seconds)  # each answer held at most this long
        return status, body, extra


def logged_sandbox(base_clock: float, gate_seconds: float = 20.0, **config: Any) -> LoggedSandbox:
    """A logged sandbox whose clock starts at ``base_clock`` and runs in real time."""
    started = time.monotonic()
    clock = lambda: base_clock + (time.monotonic() - started)  # noqa: E731
    return LoggedSandbox(SandboxConfig(clock=clock, **config), gate_seconds)

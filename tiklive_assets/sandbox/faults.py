"""The sandbox's faults: the knobs tests turn live, and the answers they produce before an endpoint is served.

In the order a request meets them: the sliding-window rate limiter (429 with ``Retry-After``), the credit balance
(an "Insufficient balance" 200 once it is spent), scripted failures (``fail_next``: a status, a ``Retry-After``, a
body, for one endpoint or any), random 5xx at ``error_rate``, and latency. After the endpoint answered, a drifting
paginator repeats its cursor forever with ``hasMore`` true. Every knob is read on every request.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

BALANCE_MESSAGE = "Insufficient balance. Please top up your credits to continue using the API."
_FAULT_MESSAGES = {
    429: "rate limit exceeded",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
}


class ApiError(Exception):
    """An error answer: ``status`` with ``{"error": message}``, or ``body`` as is (a dict as JSON, bytes raw)."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, body: dict | bytes | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.body = body


def norm_endpoint(endpoint: str) -> str:
    """``user-posts``, ``/user-posts`` and ``/user-posts/`` as the path the sandbox serves: ``/user-posts/``."""
    e = endpoint.strip()
    if not e.startswith("/"):
        e = "/" + e
    if not e.endswith("/"):
        e += "/"
    return e


@dataclass
class Faults:
    """Live-tunable fault knobs (read on every request)."""

    latency_ms: float = 0
    error_rate: float = 0.0
    rate_limit: int | None = None
    rate_window_seconds: float = 60.0
    cdn_ttl_seconds: float = 300
    drift: set[str] = field(default_factory=set)
    fail_queue: deque = field(default_factory=deque)  # of (status, retry_after, body or None, endpoint or None)
    credit_balance: int | None = None  # at 0, every request is answered 200 {"message": "Insufficient balance..."}


class FaultInjector:
    """Applies :class:`Faults` to the API's requests: admits, charges, fails and drifts them."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._rng = random.Random(f"sandbox-errors:{seed}")
        self._window: deque[float] = deque()

    # ------------------------------------------------------------------ controls

    def set_drift(self, endpoint: str | None) -> None:
        with self._lock:
            self.faults.drift.clear()
            if endpoint:
                self.faults.drift.add(norm_endpoint(endpoint))

    def fail_next(
        self, n: int, status: int, retry_after: float | int | None, body: dict | bytes | None, endpoint: str | None
    ) -> None:
        with self._lock:
            for _ in range(int(n)):
                self.faults.fail_queue.append((int(status), retry_after, body, endpoint and norm_endpoint(endpoint)))

    def top_up(self, credits: int | None) -> None:
        with self._lock:
            if credits is None:
                self.faults.credit_balance = None
            else:
                self.faults.credit_balance = max(0, self.faults.credit_balance or 0) + int(credits)

    def apply(self, body: dict[str, Any]) -> None:
        """Apply the fault knobs of a ``POST /__sandbox__/faults`` body (the corpus overlays are the server's)."""
        f = self.faults
        if "latency_ms" in body:
            f.latency_ms = float(body["latency_ms"] or 0)
        if "error_rate" in body:
            f.error_rate = float(body["error_rate"] or 0)
        if "rate_limit" in body:
            f.rate_limit = None if body["rate_limit"] is None else int(body["rate_limit"])
        if "rate_window_seconds" in body:
            f.rate_window_seconds = float(body["rate_window_seconds"])
        if "cdn_ttl_seconds" in body:
            f.cdn_ttl_seconds = float(body["cdn_ttl_seconds"])
        if "drift" in body:
            self.set_drift(body["drift"] or None)
        if "credit_balance" in body:
            f.credit_balance = None if body["credit_balance"] is None else int(body["credit_balance"])
        if "top_up" in body:
            self.top_up(body["top_up"])
        fn = body.get("fail_next")
        if fn:
            n, status = int(fn.get("n", 1)), int(fn.get("status", 503))
            self.fail_next(n, status, fn.get("retry_after"), fn.get("body"), fn.get("endpoint"))

    def settings(self) -> dict[str, Any]:
        f = self.faults
        return {
            "latency_ms": f.latency_ms,
            "error_rate": f.error_rate,
            "rate_limit": f.rate_limit,
            "rate_window_seconds": f.rate_window_seconds,
            "cdn_ttl_seconds": f.cdn_ttl_seconds,
            "drift": sorted(f.drift),
            "fail_next": len(f.fail_queue),
            "credit_balance": f.credit_balance,
        }

    # ------------------------------------------------------------------ the request pipeline

    def admit(self, now: float) -> None:
        """Sliding-window log rate limiter; raises 429 when the window is full."""
        f = self.faults
        with self._lock:
            w = f.rate_window_seconds
            while self._window and self._window[0] <= now - w:
                self._window.popleft()
            if f.rate_limit is not None and len(self._window) >= f.rate_limit:
                wait = self._window[0] + w - now if self._window else w
                raise ApiError(429, "rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
            self._window.append(now)

    def charge(self) -> bool:
        """Spend one credit of the account's balance; False when there was none left."""
        with self._lock:
            if self.faults.credit_balance is None:
                return True
            if self.faults.credit_balance <= 0:
                return False
            self.faults.credit_balance -= 1
            return True

    def inject(self, path: str) -> None:
        """Raise the next scripted failure for ``path``, or a random 5xx at ``error_rate``; else nothing."""
        f = self.faults
        with self._lock:
            scripted = next((entry for entry in f.fail_queue if entry[3] in (None, path)), None)
            if scripted is not None:
                f.fail_queue.remove(scripted)
            elif f.error_rate > 0 and self._rng.random() < f.error_rate:
                scripted = (self._rng.choice((500, 502, 503)), None, None, None)
        if scripted is None:
            return
        status, retry_after, body, _ = scripted
        if body is not None:
            raise ApiError(status, "scripted answer", {}, body)
        headers = {"Retry-After": str(int(math.ceil(float(retry_after))))} if retry_after is not None else {}
        raise ApiError(status, _FAULT_MESSAGES.get(status, "injected fault"), headers)

    def drift(self, path: str, sent: dict[str, str], body: dict) -> dict:
        """A drifting paginator's answer: the cursor it was sent, back, and ``hasMore`` true, forever."""
        if path not in self.faults.drift:
            return body
        if "time" in body:
            body["time"] = int(sent.get("time") or 0)  # valid: the endpoint has parsed it already
        elif "cursor" in body:
            body["cursor"] = sent.get("cursor") or "0"
        body["hasMore"] = True
        return body

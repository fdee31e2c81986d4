"""One retry mechanism for both API clients (TikLiveAPI and the TikTok Research API), built on tenacity.

A client sends one attempt at a time and raises :class:`TransientError` for what is worth retrying (a 5xx, a
connection failure, a gateway page that is not JSON, an error inside a 200, a known flaky error code); anything
else propagates at once (a 404, a revoked key: retrying only spends money). A transient error may carry a
``retry_after`` (a 429's header), which the wait obeys up to ``max_retry_after`` seconds; beyond that the wait
is capped, so a hostile ``Retry-After: 999999`` cannot park a worker for days.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

T = TypeVar("T")

DEFAULT_MAX_RETRY_AFTER = 120.0


class TransientError(Exception):
    """A failure worth retrying with backoff: 5xx, connection failure, non-JSON gateway page, flaky error code.

    ``retry_after``: seconds the server asked us to wait (a 429's ``Retry-After``), or None for plain backoff.
    """

    def __init__(self, endpoint: str, detail: str, status: int | None = None, retry_after: float | None = None):
        self.endpoint = endpoint
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{endpoint}: {detail}")


class _WaitRetryAfter(wait_base):
    """Sleep what the server asked (capped); otherwise exponential backoff with jitter."""

    def __init__(self, fallback: wait_base, cap: float):
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(max(0.0, exc.retry_after), self.cap)
        return self.fallback(retry_state)


class RetryPolicy:
    """How many attempts, and how long to wait between them. Shared by both clients' transports."""

    def __init__(
        self,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        on_retry: Callable[[TransientError, int], None] | None = None,
    ):
        self.max_attempts = max(1, max_attempts)
        self.wait = _WaitRetryAfter(
            wait_exponential_jitter(initial=backoff_initial, max=backoff_max, jitter=backoff_initial), max_retry_after
        )
        self.on_retry = on_retry

    def call(self, attempt_once: Callable[[int], T]) -> T:
        """Run ``attempt_once(attempt_number)`` until it returns, raises a non-transient error, or attempts run out
        (the last TransientError is then re-raised)."""

        def before_sleep(state) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if self.on_retry is not None and isinstance(exc, TransientError):
                self.on_retry(exc, state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return attempt_once(attempt.retry_state.attempt_number)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

"""One retry mechanism for both API clients (TikLiveAPI and the TikTok Research API), built on tenacity.

A client sends one attempt at a time and raises :class:`TransientError` for what is worth retrying (a 5xx, a
connection failure, a gateway page that is not JSON, an error inside a 200, a known flaky error code); anything
else propagates at once (a 404, a revoked key: retrying only spends money).

Every wait is bounded, so no server can park a worker for days:

* a transient error may carry a ``retry_after`` (a 429's header, seconds or an HTTP date). The wait obeys it up
  to ``max_retry_after`` seconds; beyond that the policy does not sleep at all: it raises
  :class:`RetryAfterTooLong` at once, with the wall-clock time to retry, so the run stops cleanly and says when
  to come back (sleeping a capped time and asking again would only spend a credit on another refusal);
* an optional :class:`Deadline` bounds one request as a whole (every attempt's connect and read plus every wait
  between them): no retry is started, and no wait begun, that would end after it.
"""

from __future__ import annotations

import email.utils
import functools
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.stop import stop_base
from tenacity.wait import wait_base

T = TypeVar("T")

DEFAULT_MAX_RETRY_AFTER = 300.0


class ApiClientError(Exception):
    """Base of every error either API client raises (``TikLiveError``, ``ResearchError``).

    Picklable across processes (the Dagster daemon and ``tiklive run`` hand errors between them), whatever its
    constructor takes: it is rebuilt from the arguments it was made with, not from its message.
    """

    _made_with: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls, *args)
        self._made_with = (args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        args, kwargs = self._made_with
        return (functools.partial(type(self), **kwargs) if kwargs else type(self)), args


class CredentialsError(ApiClientError):
    """The API's credentials are missing, or the API rejected them: fatal, never retried."""


class TransientError(ApiClientError):
    """A failure worth retrying with backoff: 5xx, connection failure, non-JSON gateway page, flaky error code.

    ``retry_after``: seconds the server asked us to wait (a 429's ``Retry-After``), or None for plain backoff.
    """

    def __init__(self, endpoint: str, detail: str, status: int | None = None, retry_after: float | None = None):
        self.endpoint = endpoint
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{endpoint}: {detail}")


class DeadlineExceeded(TransientError):
    """One request (all its attempts and waits) ran past its total deadline: a slow or dripping server."""


class RetryAfterTooLong(ApiClientError):
    """The server asked for a wait longer than the policy accepts (or than the request's deadline leaves).

    Not a TransientError: nothing retries it. The caller stops and tells the user ``retry_at`` (UTC).
    """

    def __init__(self, cause: TransientError, retry_after: float, limit: float, why: str):
        self.cause = cause
        self.endpoint = cause.endpoint
        self.status = cause.status
        self.retry_after = retry_after
        self.limit = limit
        self.retry_at = datetime.now(UTC) + timedelta(seconds=retry_after)
        super().__init__(
            f"{cause.endpoint}: the server asked to wait {retry_after:.0f} s (Retry-After), more than {why} "
            f"({limit:.0f} s); not waiting. Retry after {self.retry_at:%Y-%m-%d %H:%M:%S} UTC"
        )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2015 07:28:00
    GMT``, RFC 9110 section 10.2.3). A date in the past is 0; anything unreadable is None (plain backoff)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate_to_datetime leaves "-0000" naive
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None if math.isnan(seconds) else float("inf")
    return max(0.0, seconds)


class Deadline:
    """A total time budget for one request, on the monotonic clock. ``None`` seconds: unbounded."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._end = None if seconds is None else clock() + seconds

    def extend(self, seconds: float) -> None:
        """Push the end out by ``seconds`` (time spent waiting on something that is not the server)."""
        if self._end is not None and seconds > 0:
            self._end += seconds

    def remaining(self) -> float:
        return math.inf if self._end is None else max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def timeout(self, connect: float, read: float) -> tuple[float, float]:
        """(connect, read) timeouts for the next attempt, each at most what the deadline leaves (and > 0)."""
        left = max(0.001, self.remaining())
        return min(connect, left), min(read, left)


class _WaitRetryAfter(wait_base):
    """Sleep what the server asked; otherwise exponential backoff with jitter. Never more than the cap (a longer
    Retry-After is not retried at all: see RetryPolicy.call)."""

    def __init__(self, fallback: wait_base, cap: float):
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(max(0.0, exc.retry_after), self.cap)
        return self.fallback(retry_state)


class _StopAtDeadline(stop_base):
    """Stop when the wait about to begin would end past the request's deadline (tenacity computes the upcoming
    sleep before it asks whether to stop)."""

    def __init__(self, deadline: Deadline):
        self.deadline = deadline

    def __call__(self, retry_state) -> bool:
        return retry_state.upcoming_sleep >= self.deadline.remaining()


class RetryPolicy:
    """How many attempts, how long to wait between them, and the longest wait accepted. Shared by both clients."""

    def __init__(
        self,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        on_retry: Callable[[TransientError, int], None] | None = None,
    ):
        self.max_attempts = max(1, max_attempts)
        self.max_retry_after = max(0.0, max_retry_after)
        self.wait = _WaitRetryAfter(
            wait_exponential_jitter(multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial),
            self.max_retry_after,
        )
        self.on_retry = on_retry

    def call(self, attempt_once: Callable[[int], T], deadline: Deadline | None = None) -> T:
        """Run ``attempt_once(attempt_number)`` until it returns, raises a non-transient error, or attempts run out
        (the last TransientError is then re-raised).

        A Retry-After beyond ``max_retry_after``, or beyond what ``deadline`` leaves, raises RetryAfterTooLong at
        once (no sleep). When the deadline stops the retries, the last error is re-raised as DeadlineExceeded.
        """
        deadline = deadline or Deadline(None)

        def too_long(exc: TransientError) -> tuple[float, float, str] | None:
            """(the wait asked, the limit it passes, which limit), or None when the wait is acceptable."""
            if exc.retry_after is None:
                return None
            if exc.retry_after > self.max_retry_after:
                return exc.retry_after, self.max_retry_after, "the configured limit plan.max_retry_after_seconds"
            if exc.retry_after >= deadline.remaining() and deadline.seconds is not None:
                why = "this request's deadline plan.request_deadline_seconds leaves"
                return exc.retry_after, deadline.remaining(), why
            return None

        def worth_retrying(exc: BaseException) -> bool:
            return isinstance(exc, TransientError) and too_long(exc) is None

        def before_sleep(state) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if self.on_retry is not None and isinstance(exc, TransientError):
                self.on_retry(exc, state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | _StopAtDeadline(deadline),
            wait=self.wait,
            retry=retry_if_exception(worth_retrying),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return attempt_once(attempt.retry_state.attempt_number)
        except TransientError as exc:
            limit = too_long(exc)
            if limit is not None:
                raise RetryAfterTooLong(exc, *limit) from None
            if (
                deadline.seconds is not None
                and not isinstance(exc, DeadlineExceeded)
                and (deadline.expired or retrying.statistics.get("attempt_number", 0) < self.max_attempts)
            ):
                raise DeadlineExceeded(
                    exc.endpoint,
                    f"{exc.detail}; gave up at the request deadline of "
                    f"{deadline.seconds:g} s (plan.request_deadline_seconds)",
                    exc.status,
                ) from None
            raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")

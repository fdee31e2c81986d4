"""Typed errors of the TikLiveAPI client: each says what happened and what to do next, never the key."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tiklive_assets import paging, transport
from tiklive_assets.metering import BudgetExhausted
from tiklive_assets.tikliveapi.endpoints import POST_DETAIL


class TikLiveError(transport.ApiClientError):
    """Base class of every client error (the Research API's share its base, ``transport.ApiClientError``)."""


class AuthError(TikLiveError, transport.CredentialsError):
    """401/403 from the API: the key is missing, wrong or revoked. Fatal, never retried."""

    def __init__(self, status: int, endpoint: str):
        self.status = status
        self.endpoint = endpoint
        super().__init__(
            f"TikLiveAPI rejected the API key (HTTP {status} on {endpoint}). Check TIKLIVE_API_KEY: set it to a "
            "current key from your TikLiveAPI profile page, then verify it with `tiklive check-key`."
        )


class MissingApiKey(AuthError):
    def __init__(self) -> None:
        self.status = 0
        self.endpoint = ""
        Exception.__init__(
            self,
            "TIKLIVE_API_KEY is not set. Export your TikLiveAPI key as TIKLIVE_API_KEY, or run against the bundled "
            "sandbox with `tiklive run --sandbox`.",
        )


class NotFound(TikLiveError):
    """404: the video or account is deleted, private or region-locked. The credit is spent; never retried."""

    def __init__(self, endpoint: str, subject: str, reason: str):
        self.endpoint = endpoint
        self.subject = subject
        self.reason = reason
        super().__init__(f"{endpoint} {subject}: {reason} (HTTP 404; not retried)")


class VideoGone(NotFound):
    """A video that ``/post-detail/`` no longer serves (deleted, private, region-locked)."""

    def __init__(self, aweme_id: str, reason: str):
        self.aweme_id = aweme_id
        super().__init__(POST_DETAIL.path, aweme_id, reason)


class RateLimited(TikLiveError):
    """429 from the API: after the client's bounded retries gave up, or at once when the server asked for a wait
    longer than ``plan.max_retry_after_seconds`` (or than the request's deadline leaves). ``retry_at`` (UTC) is
    when the server said to come back, when it said; the run stops cleanly and no id is blamed."""

    def __init__(self, endpoint: str, retry_after: float | None, retry_at: datetime | None = None):
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.retry_at = retry_at
        if retry_at is not None:
            message = (
                f"TikLiveAPI asked to wait {retry_after:.0f} s before the next request (HTTP 429 on {endpoint}), "
                f"longer than this run waits; the run stops here with nothing blamed. Retry after "
                f"{retry_at:%Y-%m-%d %H:%M:%S} UTC (rerun then: it resumes where this stopped), or raise "
                "`plan.max_retry_after_seconds` in tiklive.yaml to wait inside the run"
            )
        else:
            message = (
                f"TikLiveAPI rate limit hit on {endpoint} (Retry-After: {retry_after}); lower `requests_per_minute` "
                "in tiklive.yaml to your plan's rate"
            )
        super().__init__(message)


class TransientError(transport.TransientError, TikLiveError):
    """5xx, a connection failure, an error inside a 200, a body that is not JSON: retried with backoff, bounded."""


class DeadlineExceeded(TransientError, transport.DeadlineExceeded):
    """One request ran past ``plan.request_deadline_seconds`` (attempts, waits and a body still dripping in): a
    slow or hostile server, never one id's fault."""


class BadResponse(TikLiveError):
    """A response that is not the JSON the wire format promises (or a 4xx other than 401/403/404/429, or a body
    larger than ``plan.max_response_bytes``). Never transient: retrying it only spends credits."""

    def __init__(self, endpoint: str, status: int, detail: str):
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"{endpoint} answered HTTP {status}: {detail}")


class CreditBudgetExhausted(TikLiveError, BudgetExhausted):
    """The configured daily credit budget is spent; the run stops cleanly before exceeding it.

    Raised by a ledger (``metering.Ledger``; the state database's is shared by every process) before a request is
    sent.
    """

    def __init__(self, day: date, spent: int, budget: int):
        shown = day.isoformat() if hasattr(day, "isoformat") else day
        BudgetExhausted.__init__(
            self,
            day,
            spent,
            budget,
            f"daily credit budget of {budget} reached for {shown}: {spent} credits spent; raise "
            "`daily_credit_budget` in tiklive.yaml or wait until tomorrow (UTC): a rerun resumes where this stopped",
        )

    @property
    def budget(self) -> int | None:
        """The day's budget; None for BalanceExhausted: the account's balance, not a budget."""
        return self.limit


class BalanceExhausted(CreditBudgetExhausted):
    """The TikLiveAPI account's credit balance is spent: the API answers HTTP 200 with a balance message.

    A stop, like the daily budget: nothing is marked done and no id is blamed, so a rerun after a top-up resumes.
    """

    def __init__(self, endpoint: str, message: str, spent: int):
        self.endpoint = endpoint
        self.message = message
        BudgetExhausted.__init__(
            self,
            datetime.now(UTC).date(),
            spent,
            None,
            f"the TikLiveAPI credit balance is exhausted: {endpoint} answered {message!r} instead of data. This "
            f"process spent {spent} credits before it stopped; nothing was marked done and no video was blamed. Top "
            "up the balance on your TikLiveAPI profile page, then rerun: it resumes where this run stopped.",
        )


class CursorStuck(TikLiveError, paging.CursorStuck):
    """A drifting paginator: a cursor that does not advance, a repeated page, or more pages than allowed."""

    next_step = "inspect them and reset the cursor with `tiklive cursors`"

"""Typed errors of the TikTok Research API client: each says what happened and what to do, never a secret."""

from __future__ import annotations

import re
from datetime import date

from tiklive_assets import paging
from tiklive_assets.metering import BudgetExhausted
from tiklive_assets.transport import ApiClientError, CredentialsError, TransientError


class ResearchError(ApiClientError):
    """Base class of every Research API error (TikLiveAPI's share its base, ``transport.ApiClientError``)."""


class MissingResearchCredentials(ResearchError, CredentialsError):
    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"{' and '.join(missing)} not set: export your Research API client key and secret (from the TikTok "
            "developer portal), or run `tiklive research --sandbox` against the bundled sandbox."
        )


class ApiError(ResearchError):
    """A response in the error envelope ``{"error": {"code", "message", "log_id"}}``."""

    def __init__(self, endpoint: str, status: int, code: str, message: str, log_id: str | None = None) -> None:
        self.endpoint = endpoint
        self.status: int | None = status  # always set here; typed as TransientError's, which a subclass shares
        self.code = code
        self.api_message = message
        self.log_id = log_id
        # Exception directly: a transient subclass also inherits TransientError, whose __init__ takes other arguments
        Exception.__init__(self, f"{endpoint} answered HTTP {status} {code}: {message} (log_id {log_id})")


class TransientApiError(ApiError, TransientError):
    """An answer the API is known to give by accident and to fix on a retry: HTTP 5xx, a gateway page that is not
    JSON, ``internal_error``, ``invalid_params`` "Invalid count or cursor", "Something went wrong. Please try again
    later". Retried by the shared transport with backoff, bounded and counted (every attempt costs quota); when the
    attempts run out it propagates: try the run again later, it resumes where it stopped."""

    def __init__(
        self,
        endpoint: str,
        status: int,
        code: str,
        message: str,
        log_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        ApiError.__init__(self, endpoint, status, code, message, log_id)
        self.detail = f"HTTP {status} {code}: {message}"
        self.retry_after = retry_after


class AuthFailed(ApiError, CredentialsError):
    """The client credentials or the token were rejected even after one refresh. Fatal.

    The token endpoint answers flat (``{"error", "error_description", "log_id"}``): its description and log id
    are kept here (quote the log id to TikTok support); the secret never is.
    """

    def __str__(self) -> str:
        return (
            f"{super().__str__()}. Check TIKTOK_RESEARCH_CLIENT_KEY and TIKTOK_RESEARCH_CLIENT_SECRET "
            "and that your Research API access is approved."
        )


class InvalidParams(ApiError):
    """400 ``invalid_params``: the request is wrong; the API's message says how. Never retried."""


class SearchIdExpired(InvalidParams):
    """The ``search_id`` is invalid or expired: its window must restart from its first page."""


class DailyQuotaExceeded(ApiError):
    """429 ``daily_quota_limit_exceeded``: stop cleanly; tomorrow's run resumes where this one stopped."""


class PacingViolated(TransientApiError):
    """429 ``rate_limit_exceeded``: a page of one search came too early. Retried after the pause."""


class InternalError(TransientApiError):
    """500 ``internal_error`` (it still costs quota): retried with backoff, bounded."""


class GatewayError(TransientApiError):
    """A 5xx without the API's envelope (a load balancer's HTML 504 page) or a connection failure: retried."""


class FlakyInvalidParams(TransientApiError):
    """``invalid_params`` "Invalid count or cursor" on a request that is valid: a known API bug that a retry of
    the same request fixes. Retried, not treated as a wrong request."""


class TryAgainLater(TransientApiError):
    """ "Something went wrong / is wrong. Please try again later", whatever its code: the API asks for a retry."""


class QuotaExhausted(ResearchError, BudgetExhausted):
    """The ledger refused a request before it was sent: it would exceed the day's quota or the run's cap."""

    def __init__(self, day: date, spent: int, limit: int, scope: str = "daily quota") -> None:
        self.scope = scope
        hint = (
            "the next UTC day's run resumes where this stopped"
            if scope == "daily quota"
            else "raise `research.run_request_cap` (or --max-requests) or run again"
        )
        BudgetExhausted.__init__(
            self,
            day,
            spent,
            limit,
            f"Research API {scope} of {limit} requests reached ({spent} spent, day {day}): {hint}",
        )


class CursorStuck(ResearchError, paging.CursorStuck):
    """The cursor did not move in the endpoint's declared direction: following it would fetch the same page again."""

    next_step = "report the endpoint's new cursor behaviour before collecting it again"


_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_params": InvalidParams,
    "daily_quota_limit_exceeded": DailyQuotaExceeded,
    "rate_limit_exceeded": PacingViolated,
    "internal_error": InternalError,
    "access_token_invalid": AuthFailed,
    "access_token_expired": AuthFailed,
    "invalid_client": AuthFailed,
}


_TRY_AGAIN = re.compile(r"something (went|is) wrong.*try again later", re.IGNORECASE | re.DOTALL)
_FLAKY_PARAMS = re.compile(r"invalid count or cursor", re.IGNORECASE)


def error_for(endpoint: str, status: int, code: str, message: str, log_id: str | None) -> ApiError:
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = InternalError if status >= 500 else InvalidParams if status == 400 else ApiError
    if _TRY_AGAIN.search(message) and cls not in (AuthFailed, DailyQuotaExceeded):
        cls = TryAgainLater
    elif cls is InvalidParams and _FLAKY_PARAMS.search(message):
        cls = FlakyInvalidParams
    elif cls is InvalidParams and "search id" in message.lower():
        cls = SearchIdExpired
    elif cls is ApiError and status >= 500:
        cls = InternalError
    return cls(endpoint, status, code, message, log_id)

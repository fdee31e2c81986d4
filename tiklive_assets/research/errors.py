"""Typed errors of the TikTok Research API client: each says what happened and what to do, never a secret."""

from __future__ import annotations

from datetime import date


class ResearchError(Exception):
    """Base class of every Research API error."""


class MissingResearchCredentials(ResearchError):
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
        self.status = status
        self.code = code
        self.api_message = message
        self.log_id = log_id
        super().__init__(f"{endpoint} answered HTTP {status} {code}: {message} (log_id {log_id})")


class AuthFailed(ApiError):
    """The client credentials or the token were rejected even after one refresh. Fatal."""

    def __str__(self) -> str:
        return (f"{super().__str__()}. Check TIKTOK_RESEARCH_CLIENT_KEY and TIKTOK_RESEARCH_CLIENT_SECRET "
                "and that your Research API access is approved.")


class InvalidParams(ApiError):
    """400 ``invalid_params``: the request is wrong; the API's message says how. Never retried."""


class SearchIdExpired(InvalidParams):
    """The ``search_id`` is invalid or expired: its window must restart from its first page."""


class DailyQuotaExceeded(ApiError):
    """429 ``daily_quota_limit_exceeded``: stop cleanly; tomorrow's run resumes where this one stopped."""


class PacingViolated(ApiError):
    """429 ``rate_limit_exceeded``: a page of one search came too early. Retried after the pause."""


class InternalError(ApiError):
    """500 ``internal_error`` (it still costs quota): retried after the pause, bounded."""


class QuotaExhausted(ResearchError):
    """The ledger refused a request before it was sent: it would exceed the day's quota or the run's cap."""

    def __init__(self, day: date, spent: int, limit: int, scope: str = "daily quota") -> None:
        self.day = day
        self.spent = spent
        self.limit = limit
        self.scope = scope
        hint = ("the next UTC day's run resumes where this stopped" if scope == "daily quota"
                else "raise `research.run_request_cap` (or --max-requests) or run again")
        super().__init__(f"Research API {scope} of {limit} requests reached ({spent} spent, day {day}): {hint}")

    def __reduce__(self):
        return (type(self), (self.day, self.spent, self.limit, self.scope))


class CursorStuck(ResearchError):
    def __init__(self, endpoint: str, cursor: int, why: str) -> None:
        self.endpoint = endpoint
        self.cursor = cursor
        super().__init__(f"paginator drift on {endpoint} at cursor {cursor}: {why}")


_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_params": InvalidParams,
    "daily_quota_limit_exceeded": DailyQuotaExceeded,
    "rate_limit_exceeded": PacingViolated,
    "internal_error": InternalError,
    "access_token_invalid": AuthFailed,
    "access_token_expired": AuthFailed,
    "invalid_client": AuthFailed,
}


def error_for(endpoint: str, status: int, code: str, message: str, log_id: str | None) -> ApiError:
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = InternalError if status >= 500 else InvalidParams if status == 400 else ApiError
    if cls is InvalidParams and "search id" in message.lower():
        cls = SearchIdExpired
    return cls(endpoint, status, code, message, log_id)

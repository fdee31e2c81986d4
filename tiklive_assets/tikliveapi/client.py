"""TikLiveAPI client: one session, every endpoint of the wire format, rate-limited, retried, credit-counted.

The client knows nothing of storage, the warehouse or Dagster. It hands every raw response to an optional
``on_response`` hook *before* parsing it (the archive writes it there), then returns it with its parsed JSON.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from tiklive_assets import transport
from tiklive_assets.capture.cdn import CdnFetcher
from tiklive_assets.metering import Ledger, RequestMeter, mark_exhausted
from tiklive_assets.storage.keys import InvalidKeyPart, check_id
from tiklive_assets.tikliveapi import endpoints as ep
from tiklive_assets.tikliveapi.endpoints import Endpoint
from tiklive_assets.tikliveapi.errors import (
    AuthError,
    BadResponse,
    BalanceExhausted,
    DeadlineExceeded,
    MissingApiKey,
    NotFound,
    RateLimited,
    TransientError,
    VideoGone,
)
from tiklive_assets.tikliveapi.ratelimit import RateLimiter
from tiklive_assets.tikliveapi.wire import DeadlinePassed, Sender, TooLarge, Unreachable, read_body, settle_environment
from tiklive_assets.tolerant import as_id, envelope_error, post_id, unwrap
from tiklive_assets.transport import (
    DEFAULT_MAX_RETRY_AFTER,
    Deadline,
    RetryAfterTooLong,
    RetryPolicy,
    parse_retry_after,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.tikliveapi.com"
DEFAULT_REQUEST_DEADLINE = 600.0  # seconds for one request: every attempt's connect + read and the waits between
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # the largest listing page seen is well under 1 MiB
_VIDEO_ID_IN_URL = re.compile(r"/video/(\d+)")


def video_url(handle: str, aweme_id: str) -> str:
    """The public TikTok URL that /post-detail/ and the comment endpoints take."""
    return f"https://www.tiktok.com/@{handle}/video/{aweme_id}"


def aweme_id_from_url(url: str) -> str | None:
    match = _VIDEO_ID_IN_URL.search(url)
    return match.group(1) if match else None


@dataclass(frozen=True)
class ApiResponse:
    """One response exactly as received, plus when and how it was fetched."""

    endpoint: str
    params: dict[str, Any]
    status: int
    body: bytes
    fetched_at: datetime
    attempt: int = 1
    error_kind: str | None = None  # a 200 that is not data: balance, upstream, notjson or invalid (classify_body)
    # the body as the client already parsed it to classify it, handed to the first json() call (later calls
    # parse again: a caller may change what it was given)
    _parsed: list[Any] = field(default_factory=list, compare=False, repr=False)

    def json(self) -> Any:
        """The parsed body; a ``{"code": 0, "data": {...}}`` envelope is unwrapped, so callers see the payload."""
        try:
            parsed = self._parsed.pop()
        except IndexError:
            pass
        else:
            return unwrap(parsed)
        try:
            return unwrap(json.loads(self.body))
        except ValueError as exc:
            raise BadResponse(self.endpoint, self.status, f"body is not JSON ({exc})") from None


_GONE_RE = re.compile(
    r"not (?:be )?found|not exist|does ?n[o']t exist|deleted|removed|private|unavailable|no longer", re.IGNORECASE
)
_BALANCE_RE = re.compile(r"balance|insufficient|out of credits|no credits|credits? (?:exhausted|left)", re.IGNORECASE)


def user_id_from(data: Any) -> str | None:
    """The user id of a ``/userid/`` answer (``id``, ``user_id`` or ``user.id``), only if it is a non-empty string of
    at most 32 decimal digits, the only shape that may be cached and become an object key; else None."""
    if not isinstance(data, dict):
        return None
    user = data.get("user")
    for value in (data.get("id"), data.get("user_id"), user.get("id") if isinstance(user, dict) else None):
        text = as_id(value)
        if text is not None:
            try:
                return check_id(text, "user id")
            except InvalidKeyPart:
                return None
    return None


# What an answer of these endpoints must hold to be data at all; without it, it is kept under an error slug.
_MUST_HOLD: dict[str, tuple[str, Callable[[Any], bool]]] = {
    ep.USERID.path: ("numeric id", lambda d: user_id_from(d) is not None),
    ep.POST_DETAIL.path: ("post id", lambda d: post_id(d) is not None),
    ep.USERINFO_BY_ID.path: ("user object", lambda d: isinstance(d, dict) and isinstance(d.get("user"), dict)),
    ep.USERINFO_BY_USERNAME.path: ("user object", lambda d: isinstance(d, dict) and isinstance(d.get("user"), dict)),
}


def classify_body(body: bytes, endpoint: str | None = None) -> tuple[str | None, str]:
    """Whether a 200 body is data (``(None, "")``) or one of the answers that only look like data.

    * ``balance``: ``{"message": "Insufficient balance..."}``, what TikLiveAPI answers when the credits run out;
    * ``upstream``: ``{"code": <non-zero>, "msg": ...}``, an error of the upstream service inside a 200;
    * ``notjson``: a body that is not JSON at all (truncated in transit, an HTML gateway page);
    * ``invalid``: JSON without what the endpoint's answer must hold (``/userid/`` answering ``{"id": null}``);
    * ``gone``: an upstream error that says the video or account is deleted, private or unavailable: a 404 in a
      200's clothing, never retried (a retry would be billed for the same answer).
    """
    kind, detail, _ = _classify(body, endpoint)
    return kind, detail


def _classify(body: bytes, endpoint: str | None) -> tuple[str | None, str, list[Any]]:
    """:func:`classify_body`, plus the parsed body (``[data]``, or ``[]`` when it is not JSON)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        return "notjson", f"the body is not JSON ({exc}; {len(body)} bytes)", []
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and len(data) <= 3 and _BALANCE_RE.search(message):
            return "balance", message[:200], [data]
        problem = envelope_error(data)
        if problem is not None:
            return ("gone" if _GONE_RE.search(problem) else "upstream"), problem[:200], [data]
    rule = _MUST_HOLD.get(endpoint or "")
    if rule is not None and not rule[1](unwrap(data)):
        return "invalid", f"the answer holds no {rule[0]}", [data]
    return None, "", [data]


CreditLedger = Ledger  # TikLiveAPI's name for the shared ledger protocol: one credit reserved before each request
CreditMeter = RequestMeter  # ... and for the shared meter: 1 request = 1 credit, whatever it returned


class _Throttled(TransientError):
    def __init__(self, endpoint: str, retry_after: float | None):
        super().__init__(endpoint, f"HTTP 429, Retry-After {retry_after}", 429, retry_after)


class _NotData(TransientError):
    """A 200 whose body is not data (an upstream error inside it, or not JSON): retried, bounded, then BadResponse."""


class _OneParameter:
    """The typed method of an endpoint that takes exactly one parameter and does not page: ``client.userid("x")``
    sends ``/userid/?username=x``; the path and the parameter's name are the declaration's."""

    def __init__(self, endpoint: Endpoint) -> None:
        if len(endpoint.params) != 1 or endpoint.pages != "none":
            raise ValueError(f"{endpoint.path} does not take exactly one parameter without paging")
        self.endpoint = endpoint
        self.__doc__ = f"GET {endpoint.path} for one {endpoint.params[0]}."

    def __get__(self, client: TikLiveClient, owner: type | None = None) -> Callable[[str], ApiResponse]:
        endpoint = self.endpoint
        return lambda value: client._call(endpoint, **{endpoint.params[0]: value})


class TikLiveClient:
    """Calls TikLiveAPI. Thread-safe: share one instance between download and detail workers."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        rate_limiter: RateLimiter | None = None,
        credit_ledger: CreditLedger | None = None,
        on_response: Callable[[ApiResponse], object] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        pool_size: int = 32,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        request_deadline: float | None = DEFAULT_REQUEST_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        if not api_key:
            raise MissingApiKey()
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.rate_limiter = rate_limiter
        self.credit_ledger = credit_ledger
        self.on_response = on_response
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.request_deadline = request_deadline
        self.max_response_bytes = max_response_bytes
        self.credits = RequestMeter()
        self.retry = RetryPolicy(max_attempts, backoff_initial, backoff_max, max_retry_after, on_retry=self._on_retry)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"X-Api-Key": api_key, "Accept": "application/json", "User-Agent": "tiklive-assets/0.1"}
        )
        settle_environment(self.session, self.base_url)
        self.sender = Sender(self.session, pool_size)  # urllib3's pools directly when the session needs nothing more
        # media: a separate fetcher with its own sessions (the API key is never sent to a CDN), which refuses
        # inside addresses, caps sizes and bounds every download (capture/cdn.py)
        self.cdn = CdnFetcher(connect_timeout, read_timeout, pool_size)

    def __repr__(self) -> str:  # never show the key
        return f"TikLiveClient(base_url={self.base_url!r}, credits={self.credits.total})"

    def close(self) -> None:
        self.sender.close()
        self.cdn.close()
        if self.rate_limiter is not None:  # its backend connections and lock file; rebuilt if used again
            self.rate_limiter.close()

    # -- transport ---------------------------------------------------------------------------------------

    def _on_retry(self, exc: transport.TransientError, attempt: int) -> None:
        self.credits.count_retry(str(exc.status or "connection-error"))

    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> ApiResponse:
        """GET one endpoint with retries. Returns the 200 response; raises a typed error otherwise."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        deadline = Deadline(self.request_deadline)
        try:
            return self.retry.call(lambda attempt: self._send_once(endpoint, params, attempt, deadline), deadline)
        except RetryAfterTooLong as exc:  # the server asked for more than we wait: stop now, say when to retry
            log.warning("%s", exc)
            raise RateLimited(endpoint, exc.retry_after, exc.retry_at) from None
        except _Throttled as exc:
            raise RateLimited(endpoint, exc.retry_after) from None
        except transport.DeadlineExceeded as exc:
            if isinstance(exc, DeadlineExceeded):
                raise
            raise DeadlineExceeded(exc.endpoint, exc.detail, exc.status) from None
        except _NotData as exc:  # persisted through every retry: a problem of this request, not of the system
            raise BadResponse(endpoint, 200, f"{exc.detail} (after {self.retry.max_attempts} attempts)") from None

    # one branch per way a request can end (rate limit, transport error, status, body); splitting it is a refactor
    # for its own change
    def _send_once(  # noqa: C901
        self,
        endpoint: str,
        params: dict[str, Any],
        attempt: int,
        deadline: Deadline,
    ) -> ApiResponse:
        if self.rate_limiter is not None:
            started = time.monotonic()
            self.rate_limiter.acquire()
            deadline.extend(time.monotonic() - started)  # our own rate limit is not the server's slowness
        if deadline.expired:
            raise TransientError(endpoint, "the request deadline passed before this attempt")
        # Reserved only now, right before sending: a limiter outage or a passed deadline records no credit.
        if self.credit_ledger is not None:
            self.credit_ledger.reserve(endpoint)
        url = f"{self.base_url}{endpoint}"
        try:
            http = self.sender.get(url, params, deadline.timeout(*self.timeout))  # never follows a redirect
        except Unreachable as exc:
            self.credits.count(endpoint, "connection-error")
            log.warning("%s: %s (attempt %d)", endpoint, exc.kind, attempt)
            raise TransientError(endpoint, f"connection failed: {exc.kind}") from None
        status = http.status_code
        try:
            body = read_body(http, self.max_response_bytes, deadline)
        except TooLarge as exc:  # paid for, but never read whole: not archived, never retried (it would be again)
            self.credits.count(endpoint, status)
            how = "declares" if exc.declared else "passed"
            raise BadResponse(
                endpoint,
                status,
                f"the response {how} {exc.size} bytes, over the cap of "
                f"{self.max_response_bytes} (plan.max_response_bytes); not archived",
            ) from None
        except DeadlinePassed:
            self.credits.count(endpoint, "connection-error")
            log.warning("%s: body still arriving at the request deadline (attempt %d)", endpoint, attempt)
            raise DeadlineExceeded(
                endpoint,
                f"the body was still arriving at the request deadline of "
                f"{self.request_deadline:g} s (plan.request_deadline_seconds)",
            ) from None
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            self.credits.count(endpoint, "connection-error")
            log.warning("%s: body broke off: %s (attempt %d)", endpoint, type(exc).__name__, attempt)
            raise TransientError(endpoint, f"connection failed while reading: {type(exc).__name__}") from None
        finally:
            http.close()
        self.credits.count(endpoint, status)
        kind, detail, parsed = _classify(body, endpoint) if status == 200 else (None, "", [])
        response = ApiResponse(endpoint, params, status, body, datetime.now(UTC), attempt, kind, parsed)
        if status in (200, 404) and self.on_response is not None:
            self.on_response(response)  # archived before anything parses it (a non-data 200 under an error slug)
        if status == 200:
            if kind == "balance":
                mark_exhausted(self.credit_ledger)
                raise BalanceExhausted(endpoint, detail, self.credits.total)
            if kind == "gone":
                self.credits.count_not_data(kind)
                self._raise_not_found(endpoint, params, detail)
            if kind == "invalid":  # JSON without what the answer must hold: a retry would be billed for the same
                self.credits.count_not_data(kind)
                raise BadResponse(endpoint, 200, detail)
            if kind is not None:
                self.credits.count_not_data(kind)
                log.info("%s: HTTP 200 that is not data (%s; attempt %d, retried)", endpoint, detail, attempt)
                raise _NotData(endpoint, detail, 200)
            return response
        if status == 404:
            self._raise_not_found(endpoint, params, _error_message(body) or "not found")
        if status in (401, 403):
            raise AuthError(status, endpoint)
        if 300 <= status < 400:
            raise BadResponse(
                endpoint,
                status,
                "the API answered with a redirect, which is never followed (the key "
                "would go to another host); check TIKLIVE_BASE_URL",
            )
        if status == 429:
            retry_after = parse_retry_after(http.headers.get("Retry-After"))
            log.warning("%s: rate limited, waiting %s s (attempt %d)", endpoint, retry_after, attempt)
            raise _Throttled(endpoint, retry_after)
        if status >= 500:
            log.warning("%s: HTTP %d (attempt %d)", endpoint, status, attempt)
            raise TransientError(endpoint, f"HTTP {status}", status)
        raise BadResponse(endpoint, status, _error_message(body) or "unexpected status")

    @staticmethod
    def _raise_not_found(endpoint: str, params: dict[str, Any], reason: str) -> None:
        """Deleted, private or region-locked: the credit is spent, and asking again would only spend another."""
        aweme_id = aweme_id_from_url(str(params.get("url", "")))
        if endpoint == ep.POST_DETAIL.path and aweme_id:
            raise VideoGone(aweme_id, reason)
        subject = ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("count",))
        raise NotFound(endpoint, subject, reason)

    # -- endpoints: one typed method each; the path and the parameter names are the declarations' (endpoints.py) --

    def _call(self, endpoint: Endpoint, **params: Any) -> ApiResponse:
        if "count" in params:  # a page of the declared size unless the caller asked for another
            params["count"] = endpoint.count(params["count"])
        return self.get(endpoint.path, endpoint.request(params))

    # an endpoint that takes one parameter and does not page: the method is its declaration's
    userid = _OneParameter(ep.USERID)
    userinfo_by_username = _OneParameter(ep.USERINFO_BY_USERNAME)
    userinfo_by_id = _OneParameter(ep.USERINFO_BY_ID)
    challenge_info_id = _OneParameter(ep.CHALLENGE_INFO_ID)
    challenge_info_name = _OneParameter(ep.CHALLENGE_INFO_NAME)

    def user_posts(self, userid: str, cursor: str | int | None = None, count: int | None = None) -> ApiResponse:
        return self._call(ep.USER_POSTS, userid=userid, count=count, cursor=cursor or 0)

    def user_followers(self, userid: str, time: int | None = None, count: int | None = None) -> ApiResponse:
        return self._call(ep.USER_FOLLOWERS, userid=userid, count=count, time=time or 0)

    def user_following(self, userid: str, time: int | None = None, count: int | None = None) -> ApiResponse:
        return self._call(ep.USER_FOLLOWING, userid=userid, count=count, time=time or 0)

    def post_detail(self, aweme_id: str, handle: str) -> ApiResponse:
        return self._call(ep.POST_DETAIL, url=video_url(handle, aweme_id))

    def download_video(self, aweme_id: str, handle: str) -> ApiResponse:
        return self._call(ep.DOWNLOAD_VIDEO, url=video_url(handle, aweme_id))

    def post_comments(
        self, aweme_id: str, handle: str, cursor: str | int | None = None, count: int | None = None
    ) -> ApiResponse:
        return self._call(ep.POST_COMMENTS, url=video_url(handle, aweme_id), count=count, cursor=cursor or 0)

    def post_comment_replies(
        self, comment_id: str, aweme_id: str, handle: str, cursor: str | int | None = None, count: int | None = None
    ) -> ApiResponse:
        return self._call(
            ep.POST_COMMENT_REPLIES,
            comment_id=comment_id,
            url=video_url(handle, aweme_id),
            count=count,
            cursor=cursor or 0,
        )

    def challenge_posts(
        self, challenge_id: str, cursor: str | int | None = None, count: int | None = None, region: str | None = None
    ) -> ApiResponse:
        return self._call(ep.CHALLENGE_POSTS, challenge_id=challenge_id, count=count, cursor=cursor or 0, region=region)

    def search_video(
        self,
        keyword: str,
        cursor: str | int | None = None,
        count: int | None = None,
        publish_time: int | None = None,
        sort_by: int | None = None,
        region: str | None = None,
    ) -> ApiResponse:
        return self._call(
            ep.SEARCH_VIDEO,
            keyword=keyword,
            count=count,
            cursor=cursor or 0,
            publish_time=publish_time,
            sort_by=sort_by,
            region=region,
        )

    def music_posts(self, music_id: str, cursor: str | int | None = None, count: int | None = None) -> ApiResponse:
        return self._call(ep.MUSIC_POSTS, music_id=music_id, count=count, cursor=cursor or 0)

    def region_list(self) -> ApiResponse:
        return self._call(ep.REGION_LIST)

    def search_user(self, keyword: str, cursor: str | int | None = None, count: int | None = None) -> ApiResponse:
        return self._call(ep.SEARCH_USER, keyword=keyword, count=count, cursor=cursor or 0)


def _error_message(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("error", "message", "msg"):
            if isinstance(data.get(key), str):
                return data[key]
    return None

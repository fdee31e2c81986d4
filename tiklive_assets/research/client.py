"""TikTok Research API client: the client-credentials token (cached, refreshed), video query, user endpoints.

Like the TikLiveAPI client it knows nothing of storage, the warehouse or Dagster: it takes parameters and
returns :class:`ResearchResponse` (raw bytes + parsed envelope). Every response, errors included, goes to the
optional ``on_response`` hook before anything else (the archive writes it there). A ``quota`` ledger, when
given, reserves one request before each attempt is sent (a retry is a request too), so a run never starts a
request it knows would exceed the day's quota. Secrets are never logged, repr'd or put in an exception.

Retries go through the transport shared with the TikLiveAPI client (``tiklive_assets.transport.RetryPolicy``):
what the API is known to fix on a retry (5xx, a gateway page that is not JSON, ``internal_error``, the spurious
``invalid_params`` "Invalid count or cursor", "Something went wrong. Please try again later", the pacing error)
is raised as a :class:`~tiklive_assets.research.errors.TransientApiError` and retried with backoff, bounded by
``max_attempts`` and counted in ``meter.retries``; anything else propagates at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import requests

from tiklive_assets import settings
from tiklive_assets.metering import Ledger, RequestMeter, mark_exhausted
from tiklive_assets.research import endpoints as ep
from tiklive_assets.research.endpoints import COMMENT_FIELDS, MAX_COUNT, QUERY_FIELDS, USER_FIELDS, VIDEO_FIELDS
from tiklive_assets.research.errors import (
    ApiError,
    AuthFailed,
    GatewayError,
    MissingResearchCredentials,
    ResearchError,
    TransientApiError,
    error_for,
)
from tiklive_assets.transport import RetryPolicy, TransientError

log = logging.getLogger(__name__)

# the variables' names and the default host, for callers that name them (the settings module is their one home)
CLIENT_KEY_ENV = settings.RESEARCH_CLIENT_KEY
CLIENT_SECRET_ENV = settings.RESEARCH_CLIENT_SECRET
BASE_URL_ENV = settings.RESEARCH_BASE_URL
DEFAULT_BASE_URL = settings.DEFAULT_RESEARCH_BASE_URL
QuotaReserver = Ledger  # the Research API's name for the shared ledger protocol

# the paths, for callers that name an endpoint by its path (meters, fault scripts); the declarations are endpoints.py's
TOKEN_PATH = ep.TOKEN.path
VIDEO_QUERY = ep.VIDEO_QUERY.path
USER_INFO = ep.USER_INFO.path
USER_FOLLOWERS = ep.USER_FOLLOWERS.path
USER_FOLLOWING = ep.USER_FOLLOWING.path
VIDEO_COMMENTS = ep.VIDEO_COMMENTS.path

DEFAULT_MAX_ATTEMPTS = 4  # one request and three retries: each attempt costs quota


def base_url_from_env() -> str:
    return settings.research_base_url()


# -- query builder ------------------------------------------------------------------------------------------


def condition(field_name: str, values: str | Iterable[str], operation: str | None = None) -> dict[str, Any]:
    """One condition: ``EQ`` for one value, ``IN`` for several (values sorted, so the query hash is stable)."""
    if field_name not in QUERY_FIELDS:
        raise ValueError(f"unsupported query field {field_name!r}; one of {', '.join(QUERY_FIELDS)}")
    vals = [values] if isinstance(values, str) else sorted({str(v) for v in values})
    if not vals:
        raise ValueError(f"a {field_name} condition needs at least one value")
    op = operation or ("EQ" if len(vals) == 1 else "IN")
    if op not in ("EQ", "IN") or (op == "EQ" and len(vals) != 1):
        raise ValueError(f"operation {op!r} with {len(vals)} values: EQ takes one value, IN several")
    return {"operation": op, "field_name": field_name, "field_values": vals}


def build_query(
    usernames: Iterable[str] = (),
    *,
    hashtags: Iterable[str] = (),
    keywords: Iterable[str] = (),
    regions: Iterable[str] = (),
) -> dict[str, Any]:
    """``{"and": [...]}`` of the given filters (each one EQ or IN); at least one filter is required."""
    conditions = []
    for name, values in (
        ("username", usernames),
        ("hashtag_name", hashtags),
        ("keyword", keywords),
        ("region_code", regions),
    ):
        values = [v.lstrip("@#") if name in ("username", "hashtag_name") else v for v in values]
        if values:
            conditions.append(condition(name, values))
    if not conditions:
        raise ValueError("a Research API query needs at least one of usernames, hashtags, keywords, regions")
    return {"and": conditions}


def query_hash(query: dict[str, Any], fields: Sequence[str] = VIDEO_FIELDS) -> str:
    """Ten hex digits naming a query (and the fields asked for) in archive slugs and window progress."""
    canonical = json.dumps({"query": query, "fields": list(fields)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


# -- responses and quota ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResearchResponse:
    """One response exactly as received, with the request that fetched it."""

    endpoint: str
    request: dict[str, Any]  # the JSON body sent
    status: int
    body: bytes
    fetched_at: datetime
    attempt: int = 1
    fields: tuple[str, ...] = ()  # the ``fields`` query parameter

    def envelope(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiError(self.endpoint, self.status, "bad_response", "the body is not a JSON object")
        return data

    @property
    def data(self) -> dict[str, Any]:
        return self.envelope().get("data") or {}

    @property
    def error_code(self) -> str:
        try:
            return str((self.envelope().get("error") or {}).get("code") or "ok")
        except ApiError:
            return "bad_response"


class Pacer(Protocol):
    """Spaces the requests of one search: ``wait`` before each attempt, ``mark`` when its answer arrived."""

    def wait(self) -> None: ...

    def mark(self) -> None: ...


# -- the client -------------------------------------------------------------------------------------------


class ResearchClient:
    """Calls the Research API with a cached bearer token. One instance per run; not shared across threads."""

    def __init__(
        self,
        client_key: str | None,
        client_secret: str | None,
        base_url: str | None = None,
        *,
        quota: QuotaReserver | None = None,
        on_response: Callable[[ResearchResponse], object] | None = None,
        refresh_margin: float = 300.0,
        timeout: tuple[float, float] = (5.0, 60.0),
        clock: Callable[[], float] = time.time,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_initial: float = 2.0,
        backoff_max: float = 60.0,
    ) -> None:
        if not client_key or not client_secret:
            missing = [
                name for name, value in ((CLIENT_KEY_ENV, client_key), (CLIENT_SECRET_ENV, client_secret)) if not value
            ]
            raise MissingResearchCredentials(missing)
        self._client_key = client_key
        self._client_secret = client_secret
        self.base_url = (base_url or base_url_from_env()).rstrip("/")
        self.quota = quota
        self.on_response = on_response
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.clock = clock
        self.meter = RequestMeter()
        # tests scale the backoff down (backoff_initial=0.01); the pacing of one search's pages is the Pacer's job
        self.retry = RetryPolicy(max_attempts, backoff_initial, backoff_max, on_retry=self._on_retry)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": "tiklive-assets/0.1 (research)"})
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, **kwargs: Any) -> ResearchClient:
        return cls(*settings.research_credentials(), **kwargs)

    def __repr__(self) -> str:  # never show the secret or the token
        return f"ResearchClient(base_url={self.base_url!r}, requests={self.meter.total})"

    def close(self) -> None:
        self.session.close()

    # -- token --------------------------------------------------------------------------------------------

    def token(self, *, force: bool = False) -> str:
        """The cached token, fetched anew when missing, forced, or within ``refresh_margin`` of its expiry."""
        with self._lock:
            if not force and self._token and self.clock() < self._token_expires - self._margin():
                return self._token
            form = {
                "client_key": self._client_key,
                "client_secret": self._client_secret,
                "grant_type": "client_credentials",
            }
            http = self._http(
                TOKEN_PATH,
                f"{self.base_url}{TOKEN_PATH}",
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-cache"},
            )
            self.meter.count_token()
            try:
                body = http.json()
            except ValueError:
                body = None
            if http.status_code >= 500 and not isinstance(body, dict):
                raise GatewayError(TOKEN_PATH, http.status_code, "gateway_error", _page_title(http.content))
            if http.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
                body = body if isinstance(body, dict) else {}
                err = body.get("error")
                if isinstance(err, dict):  # the v2 envelope {"error": {"code", "message", "log_id"}}
                    code, message, log_id = err.get("code"), err.get("message"), err.get("log_id")
                else:  # the token endpoint's flat error {"error", "error_description", "log_id"}
                    code, message, log_id = err, body.get("error_description"), body.get("log_id")
                message = str(message or "no token").replace(self._client_secret, "***")  # never echo the secret
                exc = error_for(
                    TOKEN_PATH,
                    http.status_code,
                    str(code or "invalid_client"),
                    message,
                    None if log_id is None else str(log_id),
                )
                if isinstance(exc, TransientApiError):
                    raise exc
                raise AuthFailed(TOKEN_PATH, http.status_code, exc.code, exc.api_message, exc.log_id)
            self._token = str(body["access_token"])
            self._ttl = float(body.get("expires_in") or 7200)
            self._token_expires = self.clock() + self._ttl
            log.info("Research API token fetched, valid %.0f s", self._ttl)
            return self._token

    def _margin(self) -> float:
        # a 2-hour token is refreshed 5 minutes early; a (sandbox) token of seconds, a tenth of its life early
        return min(self.refresh_margin, getattr(self, "_ttl", 7200.0) / 10)

    # -- transport ----------------------------------------------------------------------------------------

    def post(
        self, endpoint: str, body: dict[str, Any], fields: Sequence[str] | None = None, *, pacer: Pacer | None = None
    ) -> ResearchResponse:
        """POST one research endpoint; returns the ``ok`` response, raises a typed ``ApiError`` otherwise.

        Transient answers are retried (see the module docstring); ``access_token_expired``/``access_token_invalid``
        refreshes the token and sends once more within the same attempt. ``pacer`` spaces the attempts of one
        search (the API rejects pages of one search that come faster than about 10 s).
        """
        return self.retry.call(lambda attempt: self._attempt(endpoint, body, fields, attempt, pacer))

    def _on_retry(self, exc: TransientError, attempt: int) -> None:
        code = getattr(exc, "code", None) or "transient"
        self.meter.count_retry(code)
        log.warning("%s: %s; retrying (attempt %d failed)", exc.endpoint, exc.detail, attempt)

    def _attempt(
        self, endpoint: str, body: dict[str, Any], fields: Sequence[str] | None, attempt: int, pacer: Pacer | None
    ) -> ResearchResponse:
        for refresh in (False, True):
            if pacer is not None:
                pacer.wait()  # before the token check: a pause must not outlive the token it started with
            token = self.token(force=refresh)
            response = self._send(endpoint, body, fields, token, attempt, pacer)
            if response.status == 200 and response.error_code == "ok":
                return response
            exc = self._error(response)
            if (
                isinstance(exc, AuthFailed)
                and exc.code in ("access_token_expired", "access_token_invalid")
                and not refresh
            ):
                log.info("%s: %s; refreshing the token once", endpoint, exc.code)
                continue
            raise exc
        raise AssertionError("unreachable")

    def _http(self, endpoint: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.post(url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise GatewayError(endpoint, 0, "connection_failed", type(exc).__name__) from None

    def _send(
        self,
        endpoint: str,
        body: dict[str, Any],
        fields: Sequence[str] | None,
        token: str,
        attempt: int,
        pacer: Pacer | None = None,
    ) -> ResearchResponse:
        if self.quota is not None:
            self.quota.reserve(endpoint)
        url = f"{self.base_url}{endpoint}"
        params = {"fields": ",".join(fields)} if fields else None
        try:
            http = self._http(
                endpoint,
                url,
                params=params,
                data=json.dumps(body),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        finally:
            if pacer is not None:
                pacer.mark()
        response = ResearchResponse(
            endpoint, dict(body), http.status_code, http.content, datetime.now(UTC), attempt, tuple(fields or ())
        )
        self.meter.count(endpoint, http.status_code, response.error_code)
        if self.on_response is not None:
            self.on_response(response)  # archived before anything else reads it
        if response.error_code == "daily_quota_limit_exceeded":
            mark_exhausted(self.quota)
        return response

    @staticmethod
    def _error(response: ResearchResponse) -> ApiError:
        try:
            err = response.envelope().get("error") or {}
        except ApiError as exc:
            if response.status >= 500:  # a gateway's HTML page (504) rather than the API's own answer
                return GatewayError(response.endpoint, response.status, "gateway_error", _page_title(response.body))
            return exc
        if not isinstance(err, dict):
            err = {"code": str(err)}
        return error_for(
            response.endpoint,
            response.status,
            str(err.get("code") or "unknown"),
            str(err.get("message") or ""),
            err.get("log_id"),
        )

    # -- endpoints ----------------------------------------------------------------------------------------

    def query_videos(
        self,
        query: dict[str, Any],
        start_date: date,
        end_date: date,
        *,
        cursor: int = 0,
        search_id: str | None = None,
        max_count: int = MAX_COUNT,
        fields: Sequence[str] = VIDEO_FIELDS,
        pacer: Pacer | None = None,
    ) -> ResearchResponse:
        if not 1 <= max_count <= MAX_COUNT:
            raise ValueError(f"max_count must be 1..{MAX_COUNT}, got {max_count}")
        body: dict[str, Any] = {
            "query": query,
            "max_count": max_count,
            "start_date": start_date.strftime("%Y%m%d"),
            "end_date": end_date.strftime("%Y%m%d"),
        }
        if cursor:
            body["cursor"] = cursor
        if search_id:
            body["search_id"] = search_id
        return self.post(VIDEO_QUERY, body, fields, pacer=pacer)

    def user_info(self, username: str, fields: Sequence[str] = USER_FIELDS) -> ResearchResponse:
        return self.post(USER_INFO, {"username": username.lstrip("@")}, fields)

    def user_followers(
        self, username: str, cursor: int | None = None, max_count: int = MAX_COUNT, pacer: Pacer | None = None
    ) -> ResearchResponse:
        """One page of followers. ``cursor`` is a Unix time in seconds: follows on or before it come back, newest
        first; the first page sends none (the API then starts from now)."""
        return self.post(USER_FOLLOWERS, _follow_body(username, cursor, max_count), pacer=pacer)

    def user_following(
        self, username: str, cursor: int | None = None, max_count: int = MAX_COUNT, pacer: Pacer | None = None
    ) -> ResearchResponse:
        """One page of the accounts ``username`` follows; the cursor as for :meth:`user_followers`."""
        return self.post(USER_FOLLOWING, _follow_body(username, cursor, max_count), pacer=pacer)

    def video_comments(
        self,
        video_id: str | int,
        cursor: int | None = None,
        max_count: int = MAX_COUNT,
        fields: Sequence[str] = COMMENT_FIELDS,
        pacer: Pacer | None = None,
    ) -> ResearchResponse:
        """One page of a video's comments. The id is kept as text everywhere else; the API wants a JSON integer,
        and a Python int carries all its digits (a float would not)."""
        body = {"video_id": int(str(video_id)), "max_count": max_count, "cursor": int(cursor or 0)}
        return self.post(VIDEO_COMMENTS, body, fields, pacer=pacer)


def _follow_body(username: str, cursor: int | None, max_count: int) -> dict[str, Any]:
    body: dict[str, Any] = {"username": username.lstrip("@"), "max_count": max_count}
    if cursor:
        body["cursor"] = int(cursor)
    return body


def _page_title(body: bytes) -> str:
    """A short, safe description of a non-JSON page (its <title>, else its first characters)."""
    import re

    text = body[:2000].decode("utf-8", "replace")
    m = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    snippet = (m.group(1) if m else text).strip()
    return "not JSON: " + (" ".join(snippet.split())[:80] or "empty body")


__all__ = [
    "BASE_URL_ENV",
    "CLIENT_KEY_ENV",
    "COMMENT_FIELDS",
    "Pacer",
    "VIDEO_COMMENTS",
    "CLIENT_SECRET_ENV",
    "DEFAULT_BASE_URL",
    "MAX_COUNT",
    "QuotaReserver",
    "RequestMeter",
    "ResearchClient",
    "ResearchError",
    "ResearchResponse",
    "USER_FIELDS",
    "VIDEO_FIELDS",
    "build_query",
    "condition",
    "query_hash",
]

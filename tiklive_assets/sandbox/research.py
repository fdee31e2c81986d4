"""The official TikTok Research API on the sandbox: token, video query, user info, followers and following.

Served under ``/v2/`` by :class:`~tiklive_assets.sandbox.server.SandboxServer` (``sb.research``), enforcing
the Research API's documented rules, so a client that passes here passes against the real service:

- ``POST /v2/oauth/token/`` (form ``client_key``, ``client_secret``, ``grant_type=client_credentials``) returns
  ``access_token`` + ``expires_in``; a token past its expiry answers 401 ``access_token_expired``.
- ``POST /v2/research/video/query/?fields=…``: ``start_date``..``end_date`` (YYYYMMDD, inclusive) at most 30 days,
  ``max_count`` 1..100 (default 20), ``cursor`` an offset into the search, ``search_id`` naming a frozen result
  list; an unknown or expired ``search_id`` answers 400 ``invalid_params`` "Search Id … is invalid or expired".
- Pages of one search must come ``page_interval`` seconds apart (10 s by default, scaled down in tests); the
  server measures every gap (``page_gaps``) and answers a too-early page with 429 ``rate_limit_exceeded``.
- ``daily_quota`` requests per UTC day of the research clock, then 429 ``daily_quota_limit_exceeded``;
  ``internal_error`` (500) injected with :meth:`ResearchSandbox.fail_next` still consumes quota.
- Errors use the envelope ``{"error": {"code", "message", "log_id"}}``; success adds ``"data"``.
- Followers/following: ``cursor`` is a Unix time in seconds, follows on or before it come back newest first, and
  the next cursor is older (TikTok's documentation); no cursor (or 0) starts from now.
- ``POST /v2/research/video/comment/list/`` (``video_id`` a JSON integer, ``cursor`` an offset).

``realism=True`` (``ResearchSandboxConfig``, ``tiklive research --sandbox --realism``) serves what recorded
responses of the real API show, so a client is tested against the API rather than against this sandbox's
picture of it: videos withheld from pages (short pages whose cursor still jumps by ``max_count``), scripted
transient failures (``invalid_params`` "Invalid count or cursor", an HTML 504 gateway page, a 500
``internal_error``, "Something went wrong. Please try again later"), NUL characters in usernames, descriptions and
names, missing per-item fields, 19-digit playlist ids, a private account whose followers and following answer an
error, and the token endpoint's flat error ``{"error", "error_description", "log_id"}``.

Assumed (no public recording shows them): the pacing error's code, that token requests cost no quota, the user
endpoints' response shapes (those of TikTok's docs) and the error a private account's lists answer.

The corpus (accounts, videos, comments, follows) is ``research_corpus.py``; what a request must look like and which
videos a query matches, ``research_rules.py``; the endpoints, their paths, fields and defaults are the
declarations of ``tiklive_assets/research/endpoints.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from tiklive_assets.research import endpoints as ep
from tiklive_assets.research.endpoints import VIDEO_FIELDS  # noqa: F401 - re-exported: the fields the sandbox serves
from tiklive_assets.research.windows import MAX_WINDOW_DAYS
from tiklive_assets.sandbox.research_corpus import (
    ACCOUNTS,
    CORPUS_END,
    CORPUS_START,
    PRIVATE_USERNAME,
    ResearchVideo,
    corpus_videos,
    find_video,
    follows_of,
    video_comments,
    videos_on,
)
from tiklive_assets.sandbox.research_rules import (
    Refusal,
    asked_fields,
    body_account,
    body_count,
    body_date,
    body_int,
    matches,
    usernames_in,
)

DEFAULT_CLIENT_KEY = "sandbox-research-key"
DEFAULT_CLIENT_SECRET = "sandbox-research-secret"

GATEWAY_504 = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)

# Injected failures: kind -> (HTTP status, code, message); "gateway_504" is an HTML page, not the envelope.
FAULTS: dict[str, tuple[int, str, str]] = {
    "internal_error": (500, "internal_error", "injected internal_error"),
    "invalid_count_or_cursor": (400, "invalid_params", "Invalid count or cursor"),
    "something_went_wrong": (400, "unknown_error", "Something went wrong. Please try again later."),
    "gateway_504": (504, "", ""),
}

# Under realism: (endpoint, n-th request to it) -> the failure it answers once, as real runs meet them.
REALISTIC_FAULTS: dict[tuple[str, int], str] = {
    (ep.VIDEO_QUERY.path, 2): "invalid_count_or_cursor",
    (ep.VIDEO_QUERY.path, 3): "gateway_504",  # the retry of the same page fails again, differently
    (ep.VIDEO_QUERY.path, 5): "internal_error",
    (ep.VIDEO_QUERY.path, 6): "something_went_wrong",
    (ep.USER_FOLLOWERS.path, 2): "invalid_count_or_cursor",
    (ep.USER_FOLLOWING.path, 1): "gateway_504",
    (ep.USER_INFO.path, 2): "internal_error",
    (ep.VIDEO_COMMENTS.path, 2): "something_went_wrong",
    (ep.VIDEO_COMMENTS.path, 5): "gateway_504",
}


class RawBody(bytes):
    """A response body sent as is (an HTML gateway page), with its content type."""

    content_type = "text/html"


@dataclass
class ResearchSandboxConfig:
    client_key: str = DEFAULT_CLIENT_KEY
    client_secret: str = DEFAULT_CLIENT_SECRET
    seed: int = 3
    token_ttl_seconds: float = 7200.0
    page_interval: float = 10.0  # seconds between pages of one search; tests use e.g. 0.2
    daily_quota: int = 1000
    search_ttl_seconds: float = 6 * 3600.0
    realism: bool = False  # serve what recorded responses of the real API show (see the module docstring)
    # (endpoint, n-th request to it) -> a kind of FAULTS answered once; None: REALISTIC_FAULTS under realism
    faults: dict[tuple[str, int], str] | None = None


@dataclass
class _Search:
    search_id: str
    fingerprint: str
    ids: list[ResearchVideo]
    created: float
    pages_served: int = 0
    last_arrival: float | None = None  # monotonic


@dataclass
class ResearchStats:
    requests: Counter = field(default_factory=Counter)  # by endpoint, quota-counted requests only
    codes: Counter = field(default_factory=Counter)  # by error code ('ok' too)
    token_requests: int = 0
    page_gaps: list[tuple[str, float]] = field(default_factory=list)  # (search_id, seconds since previous page)
    pace_violations: int = 0
    searches: int = 0


class ResearchSandbox:
    """State and handlers of the sandbox Research API. Thread-safe; controlled directly from tests."""

    def __init__(self, config: ResearchSandboxConfig | None = None, clock=time.time) -> None:
        self.config = config or ResearchSandboxConfig()
        self._clock = clock
        self.offset = 0.0  # seconds added to the clock: tests move to "tomorrow" with next_day()
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expires at (research clock)
        self._searches: dict[str, _Search] = {}
        self._quota: Counter = Counter()  # day -> requests
        self._fail_queue: deque[str] = deque()
        self._expire_after_pages: deque[int] = deque()
        self._per_endpoint: Counter = Counter()  # requests per endpoint, for the realistic fault script
        self.stats = ResearchStats()

    # -- clock and controls ----------------------------------------------------------------------------

    def now(self) -> float:
        return float(self._clock()) + self.offset

    def today(self) -> date:
        return datetime.fromtimestamp(self.now(), UTC).date()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds

    def next_day(self) -> None:
        """Move the research clock to 00:00:05 UTC of the next day: a fresh daily quota."""
        now = self.now()
        tomorrow = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
        target = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC).timestamp() + 5
        self.advance(target - now)

    def quota_used(self, day: date | None = None) -> int:
        with self._lock:
            return self._quota[day or self.today()]

    def set_quota_used(self, n: int, day: date | None = None) -> None:
        with self._lock:
            self._quota[day or self.today()] = n

    def fail_next(self, n: int = 1, code: str = "internal_error") -> None:
        """The next ``n`` research requests (after auth) fail with ``code`` (they still cost quota): an API error
        code, or a kind of :data:`FAULTS` ("invalid_count_or_cursor", "gateway_504", "something_went_wrong")."""
        with self._lock:
            self._fail_queue.extend([code] * n)

    def expire_tokens(self) -> None:
        """Every issued token expires now (the next call answers ``access_token_expired``)."""
        with self._lock:
            t = self.now()
            self._tokens = {k: min(v, t) for k, v in self._tokens.items()}

    def expire_search_after(self, pages: int) -> None:
        """One-shot: the next search asked for a page after it has served ``pages`` pages is expired instead."""
        with self._lock:
            self._expire_after_pages.append(pages)

    def expire_searches(self) -> None:
        with self._lock:
            self._searches.clear()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = ResearchStats()

    # -- dispatch --------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON object or :class:`RawBody`, headers) for one request."""
        log_id = uuid.uuid4().hex[:20]
        try:
            if method != "POST":
                raise Refusal(405, "invalid_params", f"{path} takes POST")
            if path == ep.TOKEN.path:
                try:
                    return 200, self._token(body), {}
                except Refusal as e:
                    if not self.config.realism:
                        raise
                    self._count_code(e.code)  # the token endpoint's own, flat error shape
                    return e.status, {"error": e.code, "error_description": e.message, "log_id": log_id}, {}
            route = _ROUTES.get(path)
            if route is None:
                raise Refusal(404, "invalid_params", f"unknown endpoint {path}")
            self._authorize(headers)
            self._spend_quota(path)
            with self._lock:
                injected = self._fail_queue.popleft() if self._fail_queue else None
                self._per_endpoint[path] += 1
                script = (
                    self.config.faults
                    if self.config.faults is not None
                    else (REALISTIC_FAULTS if self.config.realism else {})
                )
                if injected is None:
                    injected = script.get((path, self._per_endpoint[path]))
            if injected == "gateway_504":
                self._count_code("gateway_504")
                return 504, RawBody(GATEWAY_504), {}
            if injected in FAULTS:
                raise Refusal(*FAULTS[injected])
            if injected is not None:
                raise Refusal(500 if injected == "internal_error" else 400, injected, f"injected {injected}")
            params = {k: v[-1] for k, v in parse_qs(query).items()}
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise Refusal(400, "invalid_params", "the body is not JSON") from None
            if not isinstance(request, dict):
                raise Refusal(400, "invalid_params", "the body must be a JSON object")
            data = route(self, params, request)
            self._count_code("ok")
            return 200, {"data": data, "error": {"code": "ok", "message": "", "log_id": log_id}}, {}
        except Refusal as e:
            self._count_code(e.code)
            return e.status, {"error": {"code": e.code, "message": e.message, "log_id": log_id}}, {}

    def _count_code(self, code: str) -> None:
        with self._lock:
            self.stats.codes[code] += 1

    def _token(self, body: bytes) -> dict:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        with self._lock:
            self.stats.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            raise Refusal(400, "invalid_request", "grant_type must be client_credentials")
        if form.get("client_key") != self.config.client_key or form.get("client_secret") != self.config.client_secret:
            raise Refusal(401, "invalid_client", "client_key or client_secret is wrong")
        token = "clt." + uuid.uuid4().hex
        ttl = self.config.token_ttl_seconds
        with self._lock:
            self._tokens[token] = self.now() + ttl
        return {"access_token": token, "expires_in": int(ttl) if ttl >= 1 else ttl, "token_type": "Bearer"}

    def _authorize(self, headers: Any) -> None:
        auth = headers.get("Authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            raise Refusal(401, "access_token_invalid", "The access token is invalid or not found in the request.")
        if self.now() >= expires:
            raise Refusal(401, "access_token_expired", "The access token has expired; request a new one.")

    def _spend_quota(self, path: str) -> None:
        day = self.today()
        with self._lock:
            if self._quota[day] >= self.config.daily_quota:
                raise Refusal(
                    429,
                    "daily_quota_limit_exceeded",
                    f"The daily quota of {self.config.daily_quota} requests is exceeded; retry after 00:00 UTC.",
                )
            self._quota[day] += 1
            self.stats.requests[path] += 1

    # -- video query -----------------------------------------------------------------------------------

    def video_query(self, params: dict[str, str], request: dict) -> dict:
        fields = asked_fields(params.get("fields"), ep.VIDEO_QUERY)
        start, end = body_date(request, "start_date"), body_date(request, "end_date")
        if end < start:
            raise Refusal(400, "invalid_params", "end_date must not be before start_date")
        if (end - start).days + 1 > MAX_WINDOW_DAYS:
            raise Refusal(
                400,
                "invalid_params",
                f"The time range between start_date and end_date must be at most {MAX_WINDOW_DAYS} days",
            )
        max_count = body_count(request, ep.VIDEO_QUERY)
        cursor = body_int(request, "cursor", 0)
        if cursor < 0:
            raise Refusal(400, "invalid_params", "cursor must be a non-negative integer")
        query = request.get("query")
        if not isinstance(query, dict) or not any(query.get(k) for k in ("and", "or", "not")):
            raise Refusal(400, "invalid_params", "query must have at least one of and/or/not")
        fingerprint = json.dumps([query, request.get("start_date"), request.get("end_date")], sort_keys=True)
        search_id = request.get("search_id") or None
        mono = time.monotonic()
        with self._lock:
            if search_id is not None:
                search = self._searches.get(str(search_id))
                if search is not None and (
                    self.now() - search.created > self.config.search_ttl_seconds or search.fingerprint != fingerprint
                ):
                    search = None
                if (
                    search is not None
                    and self._expire_after_pages
                    and search.pages_served >= self._expire_after_pages[0]
                ):
                    self._expire_after_pages.popleft()
                    self._searches.pop(search.search_id, None)
                    search = None
                if search is None:
                    raise Refusal(400, "invalid_params", f"Search Id {search_id} is invalid or expired")
                gap = None if search.last_arrival is None else mono - search.last_arrival
                search.last_arrival = mono
                if gap is not None:
                    self.stats.page_gaps.append((search.search_id, gap))
                    if gap < self.config.page_interval:
                        self.stats.pace_violations += 1
                        raise Refusal(
                            429,
                            "rate_limit_exceeded",
                            f"Requests of one search must be {self.config.page_interval:g} s apart "
                            f"(this one came after {gap:.3f} s)",
                        )
        if search_id is None:
            found = [v for v in self._candidates(query, start, end) if matches(query, v)]
            found.sort(key=lambda v: (v.create_time, v.id), reverse=True)
            search = _Search(uuid.uuid4().hex, fingerprint, found, self.now(), last_arrival=mono)
            with self._lock:
                self._searches[search.search_id] = search
                self.stats.searches += 1
        assert search is not None  # found (or refused) above when a search_id came, created otherwise
        page = search.ids[cursor : cursor + max_count]
        end_cursor = cursor + len(page)  # under realism too: the cursor counts withheld videos
        realism = self.config.realism
        if realism:
            page = [v for v in page if not v.withheld]
        with self._lock:
            search.pages_served += 1
        today = self.today()
        return {
            ep.VIDEO_QUERY.items_key: [v.as_json(fields, today, realism) for v in page],
            "cursor": end_cursor,
            "has_more": end_cursor < len(search.ids),
            "search_id": search.search_id,
        }

    def _candidates(self, query: dict, start: date, end: date) -> list[ResearchVideo]:
        names = usernames_in(query) or [a.username for a in ACCOUNTS]
        out: list[ResearchVideo] = []
        for name in names:
            out.extend(corpus_videos(name, start, end, self.config.seed))
        return out

    # -- users -----------------------------------------------------------------------------------------

    def user_info(self, params: dict[str, str], request: dict) -> dict:
        fields = asked_fields(params.get("fields"), ep.USER_INFO)
        account = body_account(request)
        videos = (
            sum(
                len(videos_on(account.username, CORPUS_START + timedelta(days=d), self.config.seed))
                for d in range(0, (min(self.today(), CORPUS_END) - CORPUS_START).days + 1, 7)
            )
            * 7
        )
        full: dict[str, Any] = {
            "display_name": account.username.capitalize(),
            "bio_description": f"Official account of {account.username}",
            "avatar_url": f"https://sandbox.invalid/avatar/{account.username}.jpg",
            "is_verified": True,
            "follower_count": account.followers,
            "following_count": account.following,
            "likes_count": account.followers * 137,
            "video_count": videos,
        }
        return {k: full[k] for k in fields}

    def _follow(self, request: dict, kind: str) -> dict:
        account = body_account(request)
        if self.config.realism and account.username == PRIVATE_USERNAME:
            raise Refusal(403, "scope_not_authorized", f"The user {account.username}'s {kind} list is private.")
        endpoint = ep.USER_FOLLOWERS if kind == "followers" else ep.USER_FOLLOWING
        max_count = body_count(request, endpoint)
        cursor = body_int(request, "cursor", 0) or int(self.now())  # a Unix time: follows on or before it
        rows = [(t, i) for t, i in follows_of(account, kind) if t <= cursor][:max_count]
        people = []
        for _t, i in rows:
            person = {
                "display_name": f"{kind[:-1]} {i} of {account.username}",
                "username": f"{account.username}_{kind[:3]}{i:04d}",
            }
            if self.config.realism and i % 31 == 7:
                del person["display_name"]
            elif self.config.realism and i % 23 == 5:
                person["display_name"] += "\x00"
            people.append(person)
        oldest = follows_of(account, kind)[-1][0] if rows else cursor
        next_cursor = rows[-1][0] - 1 if rows else cursor
        return {endpoint.items_key: people, "cursor": next_cursor, "has_more": bool(rows) and next_cursor >= oldest}

    def video_comment_list(self, params: dict[str, str], request: dict) -> dict:
        fields = asked_fields(params.get("fields"), ep.VIDEO_COMMENTS)
        raw_id = request.get("video_id")
        if type(raw_id) is not int:  # noqa: E721 - the API takes a JSON integer
            raise Refusal(400, "invalid_params", "video_id must be an integer")
        video = find_video(raw_id, self.config.seed)
        if video is None:
            raise Refusal(400, "invalid_params", f"video {raw_id} does not exist or is not available")
        max_count = body_count(request, ep.VIDEO_COMMENTS)
        cursor = body_int(request, "cursor", 0)
        comments = video_comments(video, self.config.seed, self.config.realism)
        page = comments[cursor : cursor + max_count]
        return {
            ep.VIDEO_COMMENTS.items_key: [{k: c[k] for k in fields if k in c} for c in page],
            "cursor": cursor + len(page),
            "has_more": cursor + len(page) < len(comments),
        }


# one handler per archived endpoint, by its declaration's archive name; the paths are the declarations'
_HANDLERS = {
    ep.VIDEO_QUERY.name: lambda sb, p, r: sb.video_query(p, r),
    ep.USER_INFO.name: lambda sb, p, r: sb.user_info(p, r),
    ep.USER_FOLLOWERS.name: lambda sb, p, r: sb._follow(r, "followers"),
    ep.USER_FOLLOWING.name: lambda sb, p, r: sb._follow(r, "following"),
    ep.VIDEO_COMMENTS.name: lambda sb, p, r: sb.video_comment_list(p, r),
}
_missing = [e.path for e in ep.ARCHIVED if e.name not in _HANDLERS]
if _missing:
    raise RuntimeError(f"the research sandbox has no handler for {', '.join(_missing)}")
_ROUTES = {e.path: _HANDLERS[e.name] for e in ep.ARCHIVED}
RESEARCH_ENDPOINTS = tuple(e.path for e in ep.ENDPOINTS)

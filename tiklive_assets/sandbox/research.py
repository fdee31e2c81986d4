"""The official TikTok Research API on the sandbox: token, video query, user info, followers and following.

Served under ``/v2/`` by :class:`~tiklive_assets.sandbox.server.SandboxServer` (``sb.research``), enforcing
the rules of ``wire-format.md`` so a client that passes here passes there:

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

The corpus is deterministic: the research scenario's ``tagesschau`` (~1.5 videos a day), ``zeitimbild`` (~1 a day),
``20minuten`` (~4.5 a day, so more than 100 in every 30-day window) and ``srfnews``, every day from 2023-01-01
through 2025-12-31, ordered newest first. Counters grow with the research clock's day, so captures differ.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from tiklive_assets.research import endpoints as ep
from tiklive_assets.research.endpoints import (  # noqa: F401 - VIDEO_FIELDS re-exported for the sandbox's callers
    COMMENT_FIELDS,
    MAX_COUNT,
    OPERATIONS,
    QUERY_FIELDS,
    USER_FIELDS,
    VIDEO_FIELDS,
)
from tiklive_assets.research.windows import MAX_WINDOW_DAYS

DEFAULT_CLIENT_KEY = "sandbox-research-key"
DEFAULT_CLIENT_SECRET = "sandbox-research-secret"

CORPUS_START = date(2023, 1, 1)
CORPUS_END = date(2025, 12, 31)


@dataclass(frozen=True)
class ResearchAccount:
    username: str
    region: str
    per_day: tuple[int, int]  # inclusive range of videos a day
    followers: int
    following: int
    hashtags: tuple[str, ...]


PRIVATE_USERNAME = "privat.konto"  # under realism its followers and following answer an error

ACCOUNTS: tuple[ResearchAccount, ...] = (
    ResearchAccount("tagesschau", "DE", (0, 3), 240, 12, ("nachrichten", "tagesschau", "politik")),
    ResearchAccount("zeitimbild", "AT", (0, 2), 130, 8, ("zib", "nachrichten", "oesterreich")),
    ResearchAccount("20minuten", "CH", (2, 7), 310, 45, ("20minuten", "news", "schweiz")),
    ResearchAccount("srfnews", "CH", (0, 2), 90, 5, ("srf", "news", "schweiz")),
    ResearchAccount(PRIVATE_USERNAME, "DE", (0, 1), 40, 9, ("privat",)),
)
FOLLOW_EPOCH = int(datetime(2025, 12, 31, tzinfo=UTC).timestamp())  # the newest follow; older ones 1 h apart
_BY_NAME = {a.username: a for a in ACCOUNTS}


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class ResearchVideo:
    id: int
    username: str
    create_time: int
    region_code: str
    hashtags: tuple[str, ...]
    description: str
    music_id: int
    base_views: int

    @property
    def create_date(self) -> date:
        return datetime.fromtimestamp(self.create_time, UTC).date()

    def as_json(self, fields: tuple[str, ...], today: date, realism: bool = False) -> dict[str, Any]:
        age = max(0, (today - self.create_date).days)
        views = self.base_views + age * (self.base_views // 50 + 7)
        full: dict[str, Any] = {
            "id": self.id,
            "video_description": self.description,
            "create_time": self.create_time,
            "region_code": self.region_code,
            "share_count": views // 300,
            "view_count": views,
            "like_count": views // 20,
            "comment_count": views // 400,
            "music_id": self.music_id,
            "hashtag_names": list(self.hashtags),
            "username": self.username,
            "effect_ids": [],
            "playlist_id": self.id % 7 * 10**17 or None,
            "voice_to_text": None if self.id % 3 else f"voice of {self.id}",
        }
        if realism:
            if self.id % 17 == 0:  # NULs inside text, as recorded
                full["video_description"] = full["video_description"].replace(" ", "\x00 ", 1) + "\x00\x00"
            if self.id % 19 == 0:
                full["username"] = self.username + "\x00" * 6
            full["playlist_id"] = 7_402_634_000_000_000_000 + self.id % 999_983 if self.id % 2 else None
            out = {k: full[k] for k in fields}
            if self.id % 5 == 0:  # often absent on the wire
                out.pop("playlist_id", None)
                out.pop("voice_to_text", None)
            if self.id % 7 == 1:
                out.pop("region_code", None)
                out.pop("view_count", None)
                out.pop("hashtag_names", None)
            return out
        return {k: full[k] for k in fields}

    @property
    def withheld(self) -> bool:
        """Under realism the API counts this video in the search but does not return it (a short page)."""
        return self.id % 11 == 0


@lru_cache(maxsize=8192)
def videos_on(username: str, day: date, seed: int = 3) -> tuple[ResearchVideo, ...]:
    """The account's videos created on ``day`` (UTC), deterministic for a seed."""
    account = _BY_NAME.get(username)
    if account is None or not (CORPUS_START <= day <= CORPUS_END):
        return ()
    lo, hi = account.per_day
    n = lo + _h(seed, username, day) % (hi - lo + 1)
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    seconds = sorted({_h(seed, username, day, i) % 86_400 for i in range(n)})
    out = []
    for i, s in enumerate(seconds):
        ct = midnight + s
        vid = (ct << 32) | (_h(seed, "id", username, ct) & 0xFFFF_FFFF)
        tags = tuple(t for j, t in enumerate(account.hashtags) if (_h(seed, vid, j) % 3) or j == 0)
        out.append(
            ResearchVideo(
                id=vid,
                username=username,
                create_time=ct,
                region_code=account.region,
                hashtags=tags,
                description=f"{username} video {day.isoformat()} #{i} " + " ".join(f"#{t}" for t in tags),
                music_id=7_000_000_000_000_000_000 + _h(seed, "music", vid) % 10**15,
                base_views=1_000 + _h(seed, "views", vid) % 300_000,
            )
        )
    return tuple(out)


def corpus_videos(
    username: str, start: date, end: date, seed: int = 3, *, realism: bool = False
) -> list[ResearchVideo]:
    """Every video of ``username`` created from ``start`` to ``end`` inclusive (for tests and benchmarks); with
    ``realism``, only those the API returns (withheld videos left out)."""
    out: list[ResearchVideo] = []
    day = start
    while day <= end:
        out.extend(v for v in videos_on(username, day, seed) if not (realism and v.withheld))
        day += timedelta(days=1)
    return out


def find_video(video_id: int, seed: int = 3) -> ResearchVideo | None:
    """The corpus video with this id (its create time is in the id's high bits), or None."""
    try:
        day = datetime.fromtimestamp(int(video_id) >> 32, UTC).date()
    except (OverflowError, OSError, ValueError):
        return None
    for account in ACCOUNTS:
        for v in videos_on(account.username, day, seed):
            if v.id == video_id:
                return v
    return None


def video_comments(video: ResearchVideo, seed: int = 3, realism: bool = False) -> list[dict[str, Any]]:
    """The comments of a corpus video, oldest first: ids are 19-digit integers, replies name their parent."""
    n = _h(seed, "comments", video.id) % 140
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid = video.id + 1 + i * 7919 + (_h(seed, "cid", video.id, i) % 7000)
        parent = out[i // 3]["id"] if i % 4 == 3 and out else video.id  # top-level comments name the video
        comment: dict[str, Any] = {
            "id": cid,
            "video_id": video.id,
            "text": f"comment {i} on {video.id}",
            "like_count": _h(seed, "likes", cid) % 500,
            "reply_count": sum(1 for c in out if c["id"] == parent),
            "parent_comment_id": parent,
            "create_time": video.create_time + 60 * (i + 1),
        }
        if realism:
            if i % 9 == 4:
                comment["text"] = comment["text"] + "\x00"
            if i % 2:
                comment.pop("reply_count")  # the recorded page has no reply_count
        out.append(comment)
    return out


def follows_of(account: ResearchAccount, kind: str) -> list[tuple[int, int]]:
    """(follow time, index) of ``kind`` ('followers'/'following'), newest first, one hour apart."""
    total = account.followers if kind == "followers" else account.following
    return [(FOLLOW_EPOCH - i * 3600, i) for i in range(total)]


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


class _Err(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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
                raise _Err(405, "invalid_params", f"{path} takes POST")
            if path == ep.TOKEN.path:
                try:
                    return 200, self._token(body), {}
                except _Err as e:
                    if not self.config.realism:
                        raise
                    self._count_code(e.code)  # the token endpoint's own, flat error shape
                    return e.status, {"error": e.code, "error_description": e.message, "log_id": log_id}, {}
            route = _ROUTES.get(path)
            if route is None:
                raise _Err(404, "invalid_params", f"unknown endpoint {path}")
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
                raise _Err(*FAULTS[injected])
            if injected is not None:
                raise _Err(500 if injected == "internal_error" else 400, injected, f"injected {injected}")
            params = {k: v[-1] for k, v in parse_qs(query).items()}
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise _Err(400, "invalid_params", "the body is not JSON") from None
            if not isinstance(request, dict):
                raise _Err(400, "invalid_params", "the body must be a JSON object")
            data = route(self, params, request)
            self._count_code("ok")
            return 200, {"data": data, "error": {"code": "ok", "message": "", "log_id": log_id}}, {}
        except _Err as e:
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
            raise _Err(400, "invalid_request", "grant_type must be client_credentials")
        if form.get("client_key") != self.config.client_key or form.get("client_secret") != self.config.client_secret:
            raise _Err(401, "invalid_client", "client_key or client_secret is wrong")
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
            raise _Err(401, "access_token_invalid", "The access token is invalid or not found in the request.")
        if self.now() >= expires:
            raise _Err(401, "access_token_expired", "The access token has expired; request a new one.")

    def _spend_quota(self, path: str) -> None:
        day = self.today()
        with self._lock:
            if self._quota[day] >= self.config.daily_quota:
                raise _Err(
                    429,
                    "daily_quota_limit_exceeded",
                    f"The daily quota of {self.config.daily_quota} requests is exceeded; retry after 00:00 UTC.",
                )
            self._quota[day] += 1
            self.stats.requests[path] += 1

    # -- video query -----------------------------------------------------------------------------------

    def video_query(self, params: dict[str, str], request: dict) -> dict:
        fields = _fields(params.get("fields"), ep.VIDEO_QUERY)
        start, end = _date(request, "start_date"), _date(request, "end_date")
        if end < start:
            raise _Err(400, "invalid_params", "end_date must not be before start_date")
        if (end - start).days + 1 > MAX_WINDOW_DAYS:
            raise _Err(
                400,
                "invalid_params",
                f"The time range between start_date and end_date must be at most {MAX_WINDOW_DAYS} days",
            )
        max_count = _count(request, ep.VIDEO_QUERY)
        cursor = _int(request, "cursor", 0)
        if cursor < 0:
            raise _Err(400, "invalid_params", "cursor must be a non-negative integer")
        query = request.get("query")
        if not isinstance(query, dict) or not any(query.get(k) for k in ("and", "or", "not")):
            raise _Err(400, "invalid_params", "query must have at least one of and/or/not")
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
                    raise _Err(400, "invalid_params", f"Search Id {search_id} is invalid or expired")
                gap = None if search.last_arrival is None else mono - search.last_arrival
                search.last_arrival = mono
                if gap is not None:
                    self.stats.page_gaps.append((search.search_id, gap))
                    if gap < self.config.page_interval:
                        self.stats.pace_violations += 1
                        raise _Err(
                            429,
                            "rate_limit_exceeded",
                            f"Requests of one search must be {self.config.page_interval:g} s apart "
                            f"(this one came after {gap:.3f} s)",
                        )
        if search_id is None:
            matches = [v for v in self._candidates(query, start, end) if _matches(query, v)]
            matches.sort(key=lambda v: (v.create_time, v.id), reverse=True)
            search = _Search(uuid.uuid4().hex, fingerprint, matches, self.now(), last_arrival=mono)
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
            "videos": [v.as_json(fields, today, realism) for v in page],
            "cursor": end_cursor,
            "has_more": end_cursor < len(search.ids),
            "search_id": search.search_id,
        }

    def _candidates(self, query: dict, start: date, end: date) -> list[ResearchVideo]:
        names = _usernames_in(query) or [a.username for a in ACCOUNTS]
        out: list[ResearchVideo] = []
        for name in names:
            out.extend(corpus_videos(name, start, end, self.config.seed))
        return out

    # -- users -----------------------------------------------------------------------------------------

    def user_info(self, params: dict[str, str], request: dict) -> dict:
        fields = _fields(params.get("fields"), ep.USER_INFO)
        account = _account(request)
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
        account = _account(request)
        if self.config.realism and account.username == PRIVATE_USERNAME:
            raise _Err(403, "scope_not_authorized", f"The user {account.username}'s {kind} list is private.")
        endpoint = ep.USER_FOLLOWERS if kind == "followers" else ep.USER_FOLLOWING
        max_count = _count(request, endpoint)
        cursor = _int(request, "cursor", 0) or int(self.now())  # a Unix time: follows on or before it
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
        return {str(endpoint.items): people, "cursor": next_cursor, "has_more": bool(rows) and next_cursor >= oldest}

    def video_comment_list(self, params: dict[str, str], request: dict) -> dict:
        fields = _fields(params.get("fields"), ep.VIDEO_COMMENTS)
        raw_id = request.get("video_id")
        if type(raw_id) is not int:  # noqa: E721 - the API takes a JSON integer
            raise _Err(400, "invalid_params", "video_id must be an integer")
        video = find_video(raw_id, self.config.seed)
        if video is None:
            raise _Err(400, "invalid_params", f"video {raw_id} does not exist or is not available")
        max_count = _count(request, ep.VIDEO_COMMENTS)
        cursor = _int(request, "cursor", 0)
        comments = video_comments(video, self.config.seed, self.config.realism)
        page = comments[cursor : cursor + max_count]
        return {
            "comments": [{k: c[k] for k in fields if k in c} for c in page],
            "cursor": cursor + len(page),
            "has_more": cursor + len(page) < len(comments),
        }


def _fields(raw: str | None, endpoint: ep.Endpoint) -> tuple[str, ...]:
    if not raw:
        return endpoint.default_fields
    fields = tuple(f.strip() for f in raw.split(",") if f.strip())
    unknown = [f for f in fields if f not in endpoint.fields]
    if unknown:
        raise _Err(400, "invalid_params", f"unknown fields: {', '.join(unknown)}")
    return fields


def _date(request: dict, name: str) -> date:
    raw = request.get(name)
    try:
        return datetime.strptime(str(raw), "%Y%m%d").date()
    except ValueError:
        raise _Err(400, "invalid_params", f"{name} must be a date YYYYMMDD, got {raw!r}") from None


def _int(request: dict, name: str, default: int) -> int:
    raw = request.get(name, default)
    if raw in (None, ""):
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).lstrip("-").isdigit():
        raise _Err(400, "invalid_params", f"{name} must be an integer")
    return int(raw)


def _count(request: dict, endpoint: ep.Endpoint) -> int:
    """The request's ``max_count`` (the endpoint's default when none), refused outside 1..MAX_COUNT."""
    max_count = _int(request, "max_count", endpoint.default_count or MAX_COUNT)
    if not 1 <= max_count <= MAX_COUNT:
        raise _Err(400, "invalid_params", f"max_count must be between 1 and {MAX_COUNT}")
    return max_count


def _account(request: dict) -> ResearchAccount:
    name = request.get("username")
    if not isinstance(name, str) or not name:
        raise _Err(400, "invalid_params", "username is required")
    account = _BY_NAME.get(name)
    if account is None:
        raise _Err(400, "invalid_params", f"user {name!r} does not exist or is private")
    return account


def _conditions(query: dict) -> dict[str, list[dict]]:
    out = {}
    for clause in ("and", "or", "not"):
        items = query.get(clause) or []
        if not isinstance(items, list):
            raise _Err(400, "invalid_params", f"query.{clause} must be a list of conditions")
        for c in items:
            if (
                not isinstance(c, dict)
                or c.get("operation") not in OPERATIONS
                or c.get("field_name") not in QUERY_FIELDS
            ):
                raise _Err(
                    400,
                    "invalid_params",
                    f"invalid condition {c!r}: operation one of {OPERATIONS}, field_name one of {QUERY_FIELDS}",
                )
            values = c.get("field_values")
            if not isinstance(values, list) or not values or (c["operation"] == "EQ" and len(values) != 1):
                raise _Err(400, "invalid_params", f"invalid field_values in {c!r} (EQ takes exactly one value)")
        out[clause] = items
    return out


def _usernames_in(query: dict) -> list[str] | None:
    """Candidate accounts when an ``and`` condition pins the username (a fast path; ``_matches`` decides)."""
    for c in _conditions(query)["and"]:
        if c["field_name"] == "username":
            return [str(v) for v in c["field_values"]]
    return None


def _holds(c: dict, v: ResearchVideo) -> bool:
    values = {str(x).lower() for x in c["field_values"]}
    name = c["field_name"]
    if name == "username":
        return v.username in values
    if name == "hashtag_name":
        return any(t in values for t in v.hashtags)
    if name == "keyword":
        return any(k in v.description.lower() for k in values)
    if name == "region_code":
        return v.region_code.lower() in values
    if name == "video_id":
        return str(v.id) in values
    return str(v.music_id) in values


def _matches(query: dict, v: ResearchVideo) -> bool:
    clauses = _conditions(query)
    if clauses["and"] and not all(_holds(c, v) for c in clauses["and"]):
        return False
    if clauses["or"] and not any(_holds(c, v) for c in clauses["or"]):
        return False
    return not any(_holds(c, v) for c in clauses["not"])


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

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

Assumed (the seeds leave it open): the pacing error's code, an integer offset ``cursor`` for followers and
following, that token requests cost no quota, and the user endpoints' response shapes (those of TikTok's docs).

The corpus is deterministic: seed 003's ``tagesschau`` (~1.5 videos a day), ``zeitimbild`` (~1 a day),
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

DEFAULT_CLIENT_KEY = "sandbox-research-key"
DEFAULT_CLIENT_SECRET = "sandbox-research-secret"

VIDEO_FIELDS = (
    "id", "video_description", "create_time", "region_code", "share_count", "view_count", "like_count",
    "comment_count", "music_id", "hashtag_names", "username", "effect_ids", "playlist_id", "voice_to_text",
)
USER_FIELDS = (
    "display_name", "bio_description", "avatar_url", "is_verified", "follower_count", "following_count",
    "likes_count", "video_count",
)
QUERY_FIELDS = ("username", "hashtag_name", "keyword", "region_code", "video_id", "music_id")
OPERATIONS = ("EQ", "IN")
CORPUS_START = date(2023, 1, 1)
CORPUS_END = date(2025, 12, 31)
MAX_WINDOW_DAYS = 30
MAX_COUNT = 100


@dataclass(frozen=True)
class ResearchAccount:
    username: str
    region: str
    per_day: tuple[int, int]  # inclusive range of videos a day
    followers: int
    following: int
    hashtags: tuple[str, ...]


ACCOUNTS: tuple[ResearchAccount, ...] = (
    ResearchAccount("tagesschau", "DE", (0, 3), 240, 12, ("nachrichten", "tagesschau", "politik")),
    ResearchAccount("zeitimbild", "AT", (0, 2), 130, 8, ("zib", "nachrichten", "oesterreich")),
    ResearchAccount("20minuten", "CH", (2, 7), 310, 45, ("20minuten", "news", "schweiz")),
    ResearchAccount("srfnews", "CH", (0, 2), 90, 5, ("srf", "news", "schweiz")),
)
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

    def as_json(self, fields: tuple[str, ...], today: date) -> dict[str, Any]:
        age = max(0, (today - self.create_date).days)
        views = self.base_views + age * (self.base_views // 50 + 7)
        full = {
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
        return {k: full[k] for k in fields}


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
        out.append(ResearchVideo(
            id=vid, username=username, create_time=ct, region_code=account.region, hashtags=tags,
            description=f"{username} video {day.isoformat()} #{i} " + " ".join(f"#{t}" for t in tags),
            music_id=7_000_000_000_000_000_000 + _h(seed, "music", vid) % 10**15,
            base_views=1_000 + _h(seed, "views", vid) % 300_000,
        ))
    return tuple(out)


def corpus_videos(username: str, start: date, end: date, seed: int = 3) -> list[ResearchVideo]:
    """Every video of ``username`` created from ``start`` to ``end`` inclusive (for tests and benchmarks)."""
    out: list[ResearchVideo] = []
    day = start
    while day <= end:
        out.extend(videos_on(username, day, seed))
        day += timedelta(days=1)
    return out


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
        """The next ``n`` research requests (after auth) fail with ``code`` (they still cost quota)."""
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

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> tuple[int, dict, dict[str, str]]:
        log_id = uuid.uuid4().hex[:20]
        try:
            if method != "POST":
                raise _Err(405, "invalid_params", f"{path} takes POST")
            if path == "/v2/oauth/token/":
                return 200, self._token(body), {}
            route = _ROUTES.get(path)
            if route is None:
                raise _Err(404, "invalid_params", f"unknown endpoint {path}")
            self._authorize(headers)
            self._spend_quota(path)
            with self._lock:
                injected = self._fail_queue.popleft() if self._fail_queue else None
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
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
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
                raise _Err(429, "daily_quota_limit_exceeded",
                           f"The daily quota of {self.config.daily_quota} requests is exceeded; retry after 00:00 UTC.")
            self._quota[day] += 1
            self.stats.requests[path] += 1

    # -- video query -----------------------------------------------------------------------------------

    def video_query(self, params: dict[str, str], request: dict) -> dict:
        fields = _fields(params.get("fields"), VIDEO_FIELDS, default=("id",))
        start, end = _date(request, "start_date"), _date(request, "end_date")
        if end < start:
            raise _Err(400, "invalid_params", "end_date must not be before start_date")
        if (end - start).days + 1 > MAX_WINDOW_DAYS:
            raise _Err(400, "invalid_params",
                       f"The time range between start_date and end_date must be at most {MAX_WINDOW_DAYS} days")
        max_count = _int(request, "max_count", 20)
        if not 1 <= max_count <= MAX_COUNT:
            raise _Err(400, "invalid_params", f"max_count must be between 1 and {MAX_COUNT}")
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
                if search is not None and (self.now() - search.created > self.config.search_ttl_seconds
                                           or search.fingerprint != fingerprint):
                    search = None
                if search is not None and self._expire_after_pages and search.pages_served >= self._expire_after_pages[0]:
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
                        raise _Err(429, "rate_limit_exceeded",
                                   f"Requests of one search must be {self.config.page_interval:g} s apart "
                                   f"(this one came after {gap:.3f} s)")
        if search_id is None:
            matches = [v for v in self._candidates(query, start, end) if _matches(query, v)]
            matches.sort(key=lambda v: (v.create_time, v.id), reverse=True)
            search = _Search(uuid.uuid4().hex, fingerprint, matches, self.now(), last_arrival=mono)
            with self._lock:
                self._searches[search.search_id] = search
                self.stats.searches += 1
        page = search.ids[cursor: cursor + max_count]
        end_cursor = cursor + len(page)
        with self._lock:
            search.pages_served += 1
        today = self.today()
        return {
            "videos": [v.as_json(fields, today) for v in page],
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
        fields = _fields(params.get("fields"), USER_FIELDS, default=USER_FIELDS)
        account = _account(request)
        videos = sum(len(videos_on(account.username, CORPUS_START + timedelta(days=d), self.config.seed))
                     for d in range(0, (min(self.today(), CORPUS_END) - CORPUS_START).days + 1, 7)) * 7
        full = {
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
        max_count = _int(request, "max_count", 20)
        if not 1 <= max_count <= MAX_COUNT:
            raise _Err(400, "invalid_params", f"max_count must be between 1 and {MAX_COUNT}")
        cursor = _int(request, "cursor", 0)
        total = account.followers if kind == "followers" else account.following
        people = [
            {"display_name": f"{kind[:-1]} {i} of {account.username}", "username": f"{account.username}_{kind[:3]}{i:04d}"}
            for i in range(cursor, min(total, cursor + max_count))
        ]
        key = "user_followers" if kind == "followers" else "user_following"
        return {key: people, "cursor": cursor + len(people), "has_more": cursor + len(people) < total}


def _fields(raw: str | None, allowed: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    if not raw:
        return default
    fields = tuple(f.strip() for f in raw.split(",") if f.strip())
    unknown = [f for f in fields if f not in allowed]
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
            if not isinstance(c, dict) or c.get("operation") not in OPERATIONS or c.get("field_name") not in QUERY_FIELDS:
                raise _Err(400, "invalid_params",
                           f"invalid condition {c!r}: operation one of {OPERATIONS}, field_name one of {QUERY_FIELDS}")
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


_ROUTES = {
    "/v2/research/video/query/": lambda sb, p, r: sb.video_query(p, r),
    "/v2/research/user/info/": lambda sb, p, r: sb.user_info(p, r),
    "/v2/research/user/followers/": lambda sb, p, r: sb._follow(r, "followers"),
    "/v2/research/user/following/": lambda sb, p, r: sb._follow(r, "following"),
}
RESEARCH_ENDPOINTS = ("/v2/oauth/token/", *_ROUTES)

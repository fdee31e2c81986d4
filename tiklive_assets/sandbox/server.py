"""The sandbox HTTP server: a local, executable statement of the TikLiveAPI wire format.

Standard library only (and the endpoint declarations, pure data: the paths served and the parameters each one
requires).  Serves the API endpoints of ``/work/shared/wire-format.md`` from a deterministic
:class:`~tiklive_assets.sandbox.corpus.Corpus`, signed expiring CDN URLs under ``/cdn/``, and test controls
under ``/__sandbox__/`` (no API key).  Fault injection (latency, random 5xx, scripted failures, drifting
paginators, deletions, private accounts) and a sliding-window rate limiter are configurable live through
``SandboxServer.faults`` or ``POST /__sandbox__/faults``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tiklive_assets.tikliveapi.endpoints import ENDPOINTS, Endpoint

from .corpus import HASHTAG_IDS, HASHTAGS, MUSIC, REGIONS, Corpus, cover_bytes, iter_video_bytes, music_bytes
from .realism import Realism
from .research import RawBody, ResearchSandbox, ResearchSandboxConfig

DEFAULT_API_KEY = "sandbox-key"

_VIDEO_RE = re.compile(r"/video/(\d+)")
_CDN_RE = re.compile(r"^/cdn/([a-z_]+)/([0-9A-Za-z]+)\.(mp4|jpg|mp3)$")
_VIDEO_VARIANTS = {"play", "wmplay", "hdplay"}
_IMAGE_VARIANTS = {"cover", "origin_cover", "ai_dynamic_cover", "avatar", "image"}  # image: a photo post's pictures
BALANCE_MESSAGE = "Insufficient balance. Please top up your credits to continue using the API."


@dataclass
class SandboxConfig:
    api_key: str = DEFAULT_API_KEY
    seed: int = 7
    rate_limit: int | None = None
    rate_window_seconds: float = 60.0
    latency_ms: float = 0
    error_rate: float = 0.0
    cdn_ttl_seconds: float = 300
    video_size: int = 50_000
    clock: Callable[[], float] = time.time
    accounts: int = 6
    realism: bool = False  # serve the payload variants real responses show (see sandbox/realism.py)
    credit_balance: int | None = None  # requests the account may still make; None: unlimited
    research: ResearchSandboxConfig | None = None  # the Research API under /v2/; None: defaults, same realism


@dataclass
class Faults:
    """Live-tunable fault knobs (read on every request)."""

    latency_ms: float = 0
    error_rate: float = 0.0
    rate_limit: int | None = None
    rate_window_seconds: float = 60.0
    cdn_ttl_seconds: float = 300
    drift: set[str] = field(default_factory=set)
    fail_queue: deque = field(default_factory=deque)  # of (status, retry_after, body or None, endpoint or None)
    credit_balance: int | None = None  # at 0, every request is answered 200 {"message": "Insufficient balance..."}


class _ApiError(Exception):
    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, body: dict | bytes | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.body = body  # a scripted answer, sent as is (a dict as JSON, bytes raw)


def _norm_endpoint(endpoint: str) -> str:
    e = endpoint.strip()
    if not e.startswith("/"):
        e = "/" + e
    if not e.endswith("/"):
        e += "/"
    return e


def _parse_aweme_id(url: str | None) -> str | None:
    if not url:
        return None
    m = _VIDEO_RE.search(url)
    return m.group(1) if m else None


class _Params:
    def __init__(self, query: str) -> None:
        self.q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

    def required(self, name: str) -> str:
        v = self.q.get(name)
        if v is None or v == "":
            raise _ApiError(400, f"missing parameter: {name}")
        return v

    def optional(self, name: str, default: str | None = None) -> str | None:
        v = self.q.get(name)
        return default if v in (None, "") else v

    def int(self, name: str, default: int, lo: int | None = None, hi: int | None = None, clamp: bool = True) -> int:
        raw = self.q.get(name)
        if raw in (None, ""):
            return default
        try:
            v = int(raw)
        except ValueError:
            raise _ApiError(400, f"invalid parameter: {name} must be an integer") from None
        if lo is not None and v < lo:
            if not clamp:
                raise _ApiError(400, f"invalid parameter: {name}")
            v = lo
        if hi is not None and v > hi:
            if not clamp:
                raise _ApiError(400, f"invalid parameter: {name}")
            v = hi
        return v


class SandboxServer:
    """A TikLiveAPI look-alike on 127.0.0.1.  Use as a context manager (background thread) or call
    :meth:`serve_forever` (blocking)."""

    def __init__(self, config: SandboxConfig | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.config = config or SandboxConfig()
        cfg = self.config
        self.faults = Faults(
            latency_ms=cfg.latency_ms,
            error_rate=cfg.error_rate,
            rate_limit=cfg.rate_limit,
            rate_window_seconds=cfg.rate_window_seconds,
            cdn_ttl_seconds=cfg.cdn_ttl_seconds,
            credit_balance=cfg.credit_balance,
        )
        self.realism = Realism(cfg.seed) if cfg.realism else None
        self.clock = cfg.clock
        self.corpus = Corpus(
            seed=cfg.seed,
            clock=cfg.clock,
            accounts=cfg.accounts,
            video_size=cfg.video_size,
            ttl=lambda: self.faults.cdn_ttl_seconds,
        )
        self._lock = threading.Lock()
        self._error_rng = random.Random(f"sandbox-errors:{cfg.seed}")
        self._window: deque[float] = deque()
        # the official Research API under /v2/ (its own clock offset and quota), as realistic as the rest
        self.research = ResearchSandbox(cfg.research or ResearchSandboxConfig(realism=cfg.realism))
        self.reset_stats()
        self._httpd = _HTTPServer((host, port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}"
        self.corpus.base_url = self.base_url
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SandboxServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="tiklive-sandbox", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.close_all()

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._httpd.close_all()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ controls

    def delete_video(self, aweme_id: str | int) -> None:
        aid = str(aweme_id)
        if self.corpus.find_post(aid) is None:
            raise KeyError(f"unknown aweme_id {aid}")
        self.corpus.deleted.add(aid)

    def make_private(self, handle: str) -> None:
        a = self.corpus.account(handle)
        if a is None:
            raise KeyError(f"unknown handle {handle!r}")
        self.corpus.private.add(a.handle)

    def make_public(self, handle: str) -> None:
        self.corpus.private.discard(handle)

    def set_drift(self, endpoint: str | None) -> None:
        with self._lock:
            self.faults.drift.clear()
            if endpoint:
                self.faults.drift.add(_norm_endpoint(endpoint))

    def fail_next(
        self,
        n: int,
        status: int = 503,
        retry_after: float | int | None = None,
        *,
        body: dict | bytes | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Answer the next ``n`` API requests (of ``endpoint`` only, when given) with ``status``, and ``body`` when
        given (a dict as JSON, bytes as they are: ``fail_next(1, 200, body={"code": -1, "msg": "busy"})``)."""
        with self._lock:
            for _ in range(int(n)):
                self.faults.fail_queue.append((int(status), retry_after, body, endpoint and _norm_endpoint(endpoint)))

    def top_up(self, credits: int | None) -> None:
        """Add ``credits`` to the account's balance (None: unlimited again)."""
        with self._lock:
            if credits is None:
                self.faults.credit_balance = None
            else:
                self.faults.credit_balance = max(0, self.faults.credit_balance or 0) + int(credits)

    def publish_video(self, handle: str) -> str:
        return self.corpus.publish(handle).aweme_id

    def apply_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a ``POST /__sandbox__/faults`` body; returns the resulting fault settings."""
        f = self.faults
        if "latency_ms" in body:
            f.latency_ms = float(body["latency_ms"] or 0)
        if "error_rate" in body:
            f.error_rate = float(body["error_rate"] or 0)
        if "rate_limit" in body:
            f.rate_limit = None if body["rate_limit"] is None else int(body["rate_limit"])
        if "rate_window_seconds" in body:
            f.rate_window_seconds = float(body["rate_window_seconds"])
        if "cdn_ttl_seconds" in body:
            f.cdn_ttl_seconds = float(body["cdn_ttl_seconds"])
        if "drift" in body:
            self.set_drift(body["drift"] or None)
        if "credit_balance" in body:
            f.credit_balance = None if body["credit_balance"] is None else int(body["credit_balance"])
        if "top_up" in body:
            self.top_up(body["top_up"])
        for aid in body.get("delete") or ():
            self.delete_video(aid)
        for h in body.get("private") or ():
            self.make_private(h)
        fn = body.get("fail_next")
        if fn:
            self.fail_next(
                int(fn.get("n", 1)),
                int(fn.get("status", 503)),
                fn.get("retry_after"),
                body=fn.get("body"),
                endpoint=fn.get("endpoint"),
            )
        return self.fault_settings()

    def fault_settings(self) -> dict[str, Any]:
        f = self.faults
        return {
            "latency_ms": f.latency_ms,
            "error_rate": f.error_rate,
            "rate_limit": f.rate_limit,
            "rate_window_seconds": f.rate_window_seconds,
            "cdn_ttl_seconds": f.cdn_ttl_seconds,
            "drift": sorted(f.drift),
            "fail_next": len(f.fail_queue),
            "credit_balance": f.credit_balance,
            "realism": self.realism is not None,
            "deleted": sorted(self.corpus.deleted),
            "private": sorted(self.corpus.private),
        }

    # ------------------------------------------------------------------ stats

    def reset_stats(self) -> None:
        with self._lock:
            self._arrivals: list[tuple[float, str, int]] = []
            self._by_endpoint: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._detail_by_id: Counter[str] = Counter()
            self._cdn_requests = 0
            self._rate_limited = 0

    def arrivals(self) -> list[tuple[float, str, int]]:
        with self._lock:
            return sorted(self._arrivals)

    def max_in_window(self, seconds: float | None = None) -> int:
        w = self.faults.rate_window_seconds if seconds is None else float(seconds)
        times = [t for t, _, _ in self.arrivals()]
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - w:
                j += 1
            best = max(best, i - j + 1)
        return best

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out = {
                "api_requests": len(self._arrivals),
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "cdn_requests": self._cdn_requests,
                "rate_limited": self._rate_limited,
                "detail_requests_by_id": dict(self._detail_by_id),
            }
        out["max_in_window"] = self.max_in_window()
        return out

    def _record(self, t: float, endpoint: str, status: int, detail_id: str | None) -> None:
        with self._lock:
            self._arrivals.append((t, endpoint, status))
            self._by_endpoint[endpoint] += 1
            self._by_status[str(status)] += 1
            if status == 429:
                self._rate_limited += 1
            if detail_id is not None:
                self._detail_by_id[detail_id] += 1

    def _count_cdn(self) -> None:
        with self._lock:
            self._cdn_requests += 1

    # ------------------------------------------------------------------ API pipeline

    def _admit(self, now: float) -> None:
        """Sliding-window log rate limiter; raises 429 when the window is full."""
        f = self.faults
        with self._lock:
            w = f.rate_window_seconds
            while self._window and self._window[0] <= now - w:
                self._window.popleft()
            if f.rate_limit is not None and len(self._window) >= f.rate_limit:
                wait = self._window[0] + w - now if self._window else w
                raise _ApiError(429, "rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
            self._window.append(now)

    def _injected(self, path: str) -> None:
        f = self.faults
        with self._lock:
            scripted = next((entry for entry in f.fail_queue if entry[3] in (None, path)), None)
            if scripted is not None:
                f.fail_queue.remove(scripted)
            elif f.error_rate > 0 and self._error_rng.random() < f.error_rate:
                scripted = (self._error_rng.choice((500, 502, 503)), None, None, None)
        if scripted is not None:
            status, retry_after, body, _ = scripted
            if body is not None:
                raise _ApiError(status, "scripted answer", {}, body)
            headers = {"Retry-After": str(int(math.ceil(float(retry_after))))} if retry_after is not None else {}
            msg = {
                429: "rate limit exceeded",
                500: "internal server error",
                502: "bad gateway",
                503: "service unavailable",
            }.get(status, "injected fault")
            raise _ApiError(status, msg, headers)

    def _charge(self) -> bool:
        """Spend one credit of the account's balance; False when there was none left."""
        with self._lock:
            if self.faults.credit_balance is None:
                return True
            if self.faults.credit_balance <= 0:
                return False
            self.faults.credit_balance -= 1
            return True

    def _realistic(self, path: str, query: str, body: dict, now: float) -> dict | bytes:
        """The clean answer in the shapes real responses take, a one-off fault now and then (realism on)."""
        realism = self.realism
        assert realism is not None
        fault = realism.one_off_fault(path, query)
        if fault is not None:
            return fault
        if path == "/post-detail/" or isinstance(body.get("videos"), list):
            items = [body] if path == "/post-detail/" else body["videos"]
            photos = [
                self._as_photo(item, now, realism) if realism.is_photo(str(item.get("aweme_id"))) else item
                for item in items
            ]
            body = photos[0] if path == "/post-detail/" else {**body, "videos": photos}
        return realism.rewrite(path, body)

    def _as_photo(self, item: dict, now: float, realism: Realism) -> dict:
        aweme_id = str(item["aweme_id"])
        images = [
            self.corpus.cdn_url("image", f"{aweme_id}x{n}", "jpg", now)
            for n in range(1, realism.image_count(aweme_id) + 1)
        ]
        music_id = (item.get("music_info") or {}).get("id")
        sound = self.corpus.cdn_url("music", music_id, "mp3", now) if music_id else ""
        return realism.photo(item, images, sound)

    def handle_api(self, path: str, query: str, headers: Any) -> tuple[int, dict | bytes, dict[str, str]]:
        now = float(self.clock())
        endpoint = path
        detail_id = _parse_aweme_id(_Params(query).q.get("url")) if path == "/post-detail/" else None
        body: dict | bytes = {"error": "internal server error"}
        extra: dict[str, str] = {}
        status = 500
        try:
            if path not in _ROUTES:
                raise _ApiError(404, "unknown endpoint")
            if headers.get("X-Api-Key") != self.config.api_key:
                raise _ApiError(401, "invalid or missing API key")
            self._admit(now)
            if not self._charge():
                self._record(now, endpoint, 200, detail_id)
                return 200, {"message": BALANCE_MESSAGE}, {}
            self._injected(path)
            if self.faults.latency_ms:
                time.sleep(self.faults.latency_ms / 1000.0)
            declared, handler = _ROUTES[path]
            params = _Params(query)
            for name in declared.required:  # in declared order: the first one missing is the one named
                params.required(name)
            body = handler(self, params, float(self.clock()))
            status = 200
            if path in self.faults.drift:
                body = self._drift(path, _Params(query), body)
            if self.realism is not None:
                body = self._realistic(path, query, body, float(self.clock()))
        except _ApiError as e:
            status, body, extra = e.status, (e.body if e.body is not None else {"error": e.message}), e.headers
        except Exception as e:  # pragma: no cover - a bug in the sandbox itself
            status, body = 500, {"error": f"sandbox bug: {type(e).__name__}: {e}"}
        self._record(now, endpoint, status, detail_id)
        return status, body, extra

    def _drift(self, path: str, params: _Params, body: dict) -> dict:
        if "time" in body:
            body["time"] = params.int("time", 0)
        elif "cursor" in body:
            body["cursor"] = params.optional("cursor", "0")
        body["hasMore"] = True
        return body

    # ------------------------------------------------------------------ CDN

    def handle_cdn(self, path: str, query: str) -> tuple[int, dict | None, str | None, int, Any]:
        """Returns (status, json_error_or_None, content_type, length, chunk_iterable)."""
        self._count_cdn()
        m = _CDN_RE.match(path)
        if not m:
            return 404, {"error": "not found"}, None, 0, None
        variant, key, ext = m.groups()
        kind_ok = (
            (variant in _VIDEO_VARIANTS and ext == "mp4")
            or (variant in _IMAGE_VARIANTS and ext == "jpg")
            or (variant == "music" and ext == "mp3")
        )
        if not kind_ok:
            return 404, {"error": "not found"}, None, 0, None
        p = _Params(query)
        if not self.corpus.verify(path, p.q.get("expires", ""), p.q.get("sig", ""), float(self.clock())):
            return 403, {"error": "URL expired"}, None, 0, None
        if ext == "mp4":
            size = self.corpus.video_size(key, variant)
            return 200, None, "video/mp4", size, iter_video_bytes(key, variant, size)
        if ext == "jpg":
            data = cover_bytes(key)
            return 200, None, "image/jpeg", len(data), (data,)
        if key not in MUSIC:
            return 404, {"error": "not found"}, None, 0, None
        data = music_bytes(key)
        return 200, None, "audio/mpeg", len(data), (data,)

    # ------------------------------------------------------------------ endpoint helpers

    def _account_param(self, params: _Params, name: str = "userid"):
        uid = params.required(name)
        a = self.corpus.account_by_id(uid)
        if a is None:
            raise _ApiError(404, "user not found")
        return a

    def _video_param(self, params: _Params, now: float):
        url = params.required("url")
        aid = _parse_aweme_id(url)
        if aid is None:
            raise _ApiError(400, "invalid parameter: url (expected https://www.tiktok.com/@handle/video/<id>)")
        p = self.corpus.find_post(aid)
        if p is None or not self.corpus.is_visible(p, now):
            raise _ApiError(404, "video not found")
        if aid in self.corpus.deleted:
            raise _ApiError(404, "video not found (deleted)")
        if self.corpus.author_of(p).handle in self.corpus.private:
            raise _ApiError(404, "video is private")
        return p

    def _videos_page(self, posts: list, params: _Params, now: float, max_count: int = 30) -> dict:
        count = params.int("count", max_count, 1, max_count)
        offset = params.int("cursor", 0, 0)
        page = posts[offset : offset + count]
        end = offset + len(page)
        return {
            "videos": [self.corpus.listing_item(p, now) for p in page],
            "cursor": str(end),
            "hasMore": end < len(posts),
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], handler: type, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet on client disconnects
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TikLiveSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), "application/json", headers)

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        sb = self.server.sandbox
        parts = urlsplit(self.path)
        path, query = parts.path, parts.query
        body = self._read_body() if method == "POST" else b""
        try:
            if path.startswith("/__sandbox__/"):
                self._control(sb, method, path, body)
            elif path.startswith("/cdn/"):
                self._cdn(sb, path, query)
            elif path.startswith("/v2/"):
                status, obj, headers = sb.research.handle(
                    method, path if path.endswith("/") else path + "/", query, self.headers, body
                )
                if isinstance(obj, RawBody):  # a gateway page, sent as the real one is (HTML, not JSON)
                    self._send(status, bytes(obj), obj.content_type, headers)
                else:
                    self._json(status, obj, headers)
            else:
                if path != "/" and not path.endswith("/"):
                    path += "/"
                status, obj, headers = sb.handle_api(path, query, self.headers)
                if isinstance(obj, bytes):  # a body that is not JSON (realism: cut short in transit)
                    self._send(status, obj, "application/json", headers)
                else:
                    self._json(status, obj, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _cdn(self, sb: SandboxServer, path: str, query: str) -> None:
        status, err, ctype, length, chunks = sb.handle_cdn(path, query)
        if err is not None:
            self._json(status, err)
            return
        assert ctype is not None  # set whenever there is no error
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "private, max-age=0")
        self.end_headers()
        if self.command == "HEAD":
            return
        for chunk in chunks:
            self.wfile.write(chunk)

    def _control(self, sb: SandboxServer, method: str, path: str, raw: bytes) -> None:
        try:
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            if path == "/__sandbox__/stats/" or path == "/__sandbox__/stats":
                self._json(200, sb.stats())
            elif path.rstrip("/") == "/__sandbox__/reset-stats" and method == "POST":
                sb.reset_stats()
                self._json(200, {"ok": True})
            elif path.rstrip("/") == "/__sandbox__/faults":
                self._json(200, sb.apply_faults(data) if method == "POST" else sb.fault_settings())
            elif path.rstrip("/") == "/__sandbox__/publish" and method == "POST":
                if not data.get("handle"):
                    raise ValueError("missing handle")
                self._json(200, {"aweme_id": sb.publish_video(str(data["handle"]))})
            elif path.rstrip("/") == "/__sandbox__/corpus":
                c = sb.corpus
                self._json(
                    200,
                    {
                        "accounts": [{"handle": a.handle, "id": a.id} for a in c.accounts],
                        "hashtags": c.hashtags,
                        "music_ids": c.music_ids,
                        "base_url": sb.base_url,
                    },
                )
            else:
                self._json(404, {"error": "unknown control endpoint"})
        except (ValueError, KeyError, TypeError) as e:
            self._json(400, {"error": f"bad control request: {e}"})


# ---------------------------------------------------------------------- endpoints


def _userid(sb: SandboxServer, p: _Params, now: float) -> dict:
    a = sb.corpus.account(p.required("username"))
    if a is None:
        raise _ApiError(404, "user not found")
    return {"id": a.id}


def _userinfo_by_username(sb: SandboxServer, p: _Params, now: float) -> dict:
    a = sb.corpus.account(p.required("username"))
    if a is None:
        raise _ApiError(404, "user not found")
    return sb.corpus.profile(a, now)


def _userinfo_by_id(sb: SandboxServer, p: _Params, now: float) -> dict:
    return sb.corpus.profile(sb._account_param(p), now)


def _check_public(sb: SandboxServer, a: Any) -> None:
    if a.handle in sb.corpus.private:
        raise _ApiError(404, "account is private")


def _user_posts(sb: SandboxServer, p: _Params, now: float) -> dict:
    a = sb._account_param(p)
    count = p.int("count", 30, 1, 30)
    cursor = p.int("cursor", 0, 0)
    _check_public(sb, a)
    posts = sb.corpus.visible_posts(a, now)
    if cursor > 0:
        posts = [x for x in posts if x.ct_ms < cursor]
    page = posts[:count]
    return {
        "videos": [sb.corpus.listing_item(x, now) for x in page],
        "cursor": str(page[-1].ct_ms) if page else str(cursor),
        "hasMore": len(posts) > len(page),
    }


def _follow(kind: str, key: str) -> Callable[[SandboxServer, _Params, float], dict]:
    def handler(sb: SandboxServer, p: _Params, now: float) -> dict:
        a = sb._account_param(p)
        count = p.int("count", 50, 1, 50)
        t = p.int("time", 0, 0)
        _check_public(sb, a)
        times, items = sb.corpus.follow_list(a, kind, now)
        if t > 0:
            keep = [i for i, ft in enumerate(times) if ft < t]
            times, items = [times[i] for i in keep], [items[i] for i in keep]
        return {key: items[:count], "time": times[:count][-1] if items[:count] else t, "hasMore": len(items) > count}

    return handler


def _post_detail(sb: SandboxServer, p: _Params, now: float) -> dict:
    return sb.corpus.detail_item(sb._video_param(p, now), now)


def _download_video(sb: SandboxServer, p: _Params, now: float) -> dict:
    post = sb._video_param(p, now)
    c = sb.corpus
    return {
        "video": c.cdn_url("play", post.aweme_id, "mp4", now),
        "video_hd": c.cdn_url("hdplay", post.aweme_id, "mp4", now) if post.has_hd else None,
    }


def _post_comments(sb: SandboxServer, p: _Params, now: float) -> dict:
    post = sb._video_param(p, now)
    count = p.int("count", 20, 1, 50)
    offset = p.int("cursor", 0, 0)
    comments = sb.corpus.comments(post.aweme_id, now)
    page = comments[offset : offset + count]
    end = offset + len(page)
    return {
        "comments": [sb.corpus.comment_item(c, post.aweme_id, now) for c in page],
        "cursor": str(end),
        "hasMore": end < len(comments),
    }


def _post_comment_replies(sb: SandboxServer, p: _Params, now: float) -> dict:
    cid = p.required("comment_id")
    post = sb._video_param(p, now)
    count = p.int("count", 20, 1, 50)
    offset = p.int("cursor", 0, 0)
    parent = next((c for c in sb.corpus.comments(post.aweme_id, now) if c.id == cid), None)
    if parent is None:
        raise _ApiError(404, "comment not found")
    replies = [r for r in parent.replies if r.ct <= now]
    page = replies[offset : offset + count]
    end = offset + len(page)
    return {
        "comments": [sb.corpus.comment_item(r, post.aweme_id, now, parent) for r in page],
        "cursor": str(end),
        "hasMore": end < len(replies),
    }


def _region_param(p: _Params) -> str | None:
    region = p.optional("region")
    if region is not None:
        region = region.upper()
        if region not in {r["code"] for r in REGIONS}:
            raise _ApiError(400, f"invalid parameter: region (unsupported region {region!r})")
    return region


def _challenge_posts(sb: SandboxServer, p: _Params, now: float) -> dict:
    cid = p.required("challenge_id")
    _region_param(p)  # validated; the hashtag feed is global in the sandbox
    name = HASHTAGS.get(cid)
    if name is None:
        raise _ApiError(404, "challenge not found")
    posts = [x for x in sb.corpus.discoverable_posts(now) if name in x.hashtags]
    return sb._videos_page(posts, p, now)


def _music_posts(sb: SandboxServer, p: _Params, now: float) -> dict:
    mid = p.required("music_id")
    if mid not in MUSIC:
        raise _ApiError(404, "music not found")
    posts = [x for x in sb.corpus.discoverable_posts(now) if x.music_id == mid]
    return sb._videos_page(posts, p, now)


_PUBLISH_TIMES = {0, 1, 7, 30, 90, 180}


def _search_video(sb: SandboxServer, p: _Params, now: float) -> dict:
    kw = p.required("keyword").strip().lower().lstrip("#")
    if not kw:
        raise _ApiError(400, "missing parameter: keyword")
    publish_time = p.int("publish_time", 0)
    if publish_time not in _PUBLISH_TIMES:
        raise _ApiError(400, "invalid parameter: publish_time (one of 0, 1, 7, 30, 90, 180)")
    sort_by = p.int("sort_by", 0)
    if sort_by not in (0, 1, 2):
        raise _ApiError(400, "invalid parameter: sort_by (0 relevance, 1 likes, 2 date)")
    region = _region_param(p)
    c = sb.corpus
    since_ms = int((now - publish_time * 86400) * 1000) if publish_time else None
    hits = []
    for x in c.discoverable_posts(now):
        if since_ms is not None and x.ct_ms < since_ms:
            continue
        if region is not None and x.region != region:
            continue
        a = c.author_of(x)
        hay = f"{x.title} {a.handle} {a.nickname}".lower()
        n = hay.count(kw)
        if n:
            hits.append((n, x))
    if sort_by == 1:
        hits.sort(key=lambda h: (c.digg_count(h[1], now), h[1].aweme_id), reverse=True)
    elif sort_by == 2:
        hits.sort(key=lambda h: (h[1].ct_ms, h[1].aweme_id), reverse=True)
    else:
        from .corpus import _h

        hits.sort(key=lambda h: (-h[0], _h(c.seed, "relevance", kw, h[1].aweme_id)))
    return sb._videos_page([x for _, x in hits], p, now)


def _region_list(sb: SandboxServer, p: _Params, now: float) -> dict:
    return {"regions": [dict(r) for r in REGIONS]}


def _challenge_info_id(sb: SandboxServer, p: _Params, now: float) -> dict:
    cid = p.required("challenge_id")
    if cid not in HASHTAGS:
        raise _ApiError(404, "challenge not found")
    return sb.corpus.challenge_info(cid, now)


def _challenge_info_name(sb: SandboxServer, p: _Params, now: float) -> dict:
    name = p.required("challenge_name").strip().lstrip("#").lower()
    cid = HASHTAG_IDS.get(name)
    if cid is None:
        raise _ApiError(404, "challenge not found")
    return sb.corpus.challenge_info(cid, now)


def _search_user(sb: SandboxServer, p: _Params, now: float) -> dict:
    kw = p.required("keyword").strip().lower().lstrip("@")
    count = p.int("count", 10, 1, 30)
    offset = p.int("cursor", 0, 0)
    users = [a for a in sb.corpus.all_authors() if kw in a.handle.lower() or kw in a.nickname.lower()]
    page = users[offset : offset + count]
    end = offset + len(page)
    return {
        "user_list": [sb.corpus.profile(a, now) for a in page],
        "cursor": str(end),
        "hasMore": end < len(users),
    }


_Respond = Callable[[SandboxServer, _Params, float], dict]
# one handler per declared endpoint, by name; the paths served and the parameters they require are the declarations'
_HANDLERS: dict[str, _Respond] = {
    "userid": _userid,
    "userinfo-by-username": _userinfo_by_username,
    "userinfo-by-id": _userinfo_by_id,
    "user-posts": _user_posts,
    "user-followers": _follow("followers", "followers"),
    "user-following": _follow("following", "followings"),
    "post-detail": _post_detail,
    "download-video": _download_video,
    "post-comments": _post_comments,
    "post-comment-replies": _post_comment_replies,
    "challenge-posts": _challenge_posts,
    "search-video": _search_video,
    "music-posts": _music_posts,
    "region-list": _region_list,
    "challenge-info-id": _challenge_info_id,
    "challenge-info-name": _challenge_info_name,
    "search-user": _search_user,
}
if set(_HANDLERS) != {e.name for e in ENDPOINTS}:  # every declared endpoint served, nothing else
    raise RuntimeError(
        f"sandbox handlers without a declaration: {sorted(set(_HANDLERS) - {e.name for e in ENDPOINTS})}"
        f"; declarations without a handler: {sorted({e.name for e in ENDPOINTS} - set(_HANDLERS))}"
    )
_ROUTES: dict[str, tuple[Endpoint, _Respond]] = {e.path: (e, _HANDLERS[e.name]) for e in ENDPOINTS}
API_ENDPOINTS = tuple(_ROUTES)

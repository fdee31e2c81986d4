"""The sandbox HTTP server: a local, executable statement of the TikLiveAPI wire format.

Standard library only (and the endpoint declarations, pure data: the paths served and the parameters each one
requires).  Serves every declared TikLiveAPI endpoint, in its documented wire format, from a deterministic
:class:`~tiklive_assets.sandbox.corpus.Corpus`, signed expiring CDN URLs under ``/cdn/``, and test controls
under ``/__sandbox__/`` (no API key).  Fault injection (latency, random 5xx, scripted failures, drifting
paginators, deletions, private accounts) and a sliding-window rate limiter are configurable live through
``SandboxServer.faults`` or ``POST /__sandbox__/faults``.

The pieces: ``endpoints`` answers each declared endpoint, ``faults`` the knobs and what they do to a request,
``cdn`` the media, ``router`` the HTTP; this module puts them together and counts what arrives.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiklive_assets.tikliveapi.endpoints import POST_DETAIL

from . import cdn
from .corpus import Corpus
from .endpoints import API_ENDPOINTS, ROUTES, parse_aweme_id, query_params, respond
from .faults import BALANCE_MESSAGE, ApiError, FaultInjector, Faults
from .realism import Realism
from .research import ResearchSandbox, ResearchSandboxConfig
from .router import SandboxHTTPServer

__all__ = ["API_ENDPOINTS", "BALANCE_MESSAGE", "DEFAULT_API_KEY", "Faults", "SandboxConfig", "SandboxServer"]

DEFAULT_API_KEY = "sandbox-key"


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
        self._injector = FaultInjector(self.faults, cfg.seed)
        self.realism = Realism(cfg.seed) if cfg.realism else None
        self.clock_offset = 0.0  # seconds the clock was moved by (advance_clock): a test simulates time passing
        self.corpus = Corpus(
            seed=cfg.seed,
            clock=self.clock,
            accounts=cfg.accounts,
            video_size=cfg.video_size,
            ttl=lambda: self.faults.cdn_ttl_seconds,
        )
        self._lock = threading.Lock()
        # the official Research API under /v2/ (its own clock offset and quota), as realistic as the rest
        self.research = ResearchSandbox(cfg.research or ResearchSandboxConfig(realism=cfg.realism))
        self.reset_stats()
        self._httpd = SandboxHTTPServer((host, port), self)
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

    def clock(self) -> float:
        """The sandbox's time: the configured clock, moved by :meth:`advance_clock`. Every answer (ages, counters,
        what is visible) and the CDN's signed URLs read it."""
        return float(self.config.clock()) + self.clock_offset

    def advance_clock(self, seconds: float) -> float:
        """Move the sandbox's clock forward by ``seconds`` (a test captures, then lets hours pass); returns now."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self.clock_offset += float(seconds)
        return self.clock()

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
        """Make ``endpoint``'s paginator drift (None: no paginator drifts)."""
        self._injector.set_drift(endpoint)

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
        self._injector.fail_next(n, status, retry_after, body, endpoint)

    def top_up(self, credits: int | None) -> None:
        """Add ``credits`` to the account's balance (None: unlimited again)."""
        self._injector.top_up(credits)

    def publish_video(self, handle: str) -> str:
        return self.corpus.publish(handle).aweme_id

    def apply_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a ``POST /__sandbox__/faults`` body; returns the resulting fault settings."""
        self._injector.apply(body)
        for aid in body.get("delete") or ():
            self.delete_video(aid)
        for h in body.get("private") or ():
            self.make_private(h)
        for h in body.get("public") or ():
            self.make_public(h)
        return self.fault_settings()

    def fault_settings(self) -> dict[str, Any]:
        return {
            **self._injector.settings(),
            "realism": self.realism is not None,
            "deleted": sorted(self.corpus.deleted),
            "private": sorted(self.corpus.private),
            "clock": self.clock(),
            "clock_offset_seconds": self.clock_offset,
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

    # ------------------------------------------------------------------ serving

    def handle_api(self, path: str, query: str, headers: Any) -> tuple[int, dict | bytes, dict[str, str]]:
        """The answer to an API request: ``(status, body, headers)``; a body that is bytes is sent as it is."""
        now = float(self.clock())
        detail_id = parse_aweme_id(query_params(query).get("url")) if path == POST_DETAIL.path else None
        body: dict | bytes = {"error": "internal server error"}
        extra: dict[str, str] = {}
        status = 500
        try:
            if path not in ROUTES:
                raise ApiError(404, "unknown endpoint")
            if headers.get("X-Api-Key") != self.config.api_key:
                raise ApiError(401, "invalid or missing API key")
            self._injector.admit(now)
            if not self._injector.charge():
                self._record(now, path, 200, detail_id)
                return 200, {"message": BALANCE_MESSAGE}, {}
            self._injector.inject(path)
            if self.faults.latency_ms:
                time.sleep(self.faults.latency_ms / 1000.0)
            answer = respond(self.corpus, path, query, float(self.clock()))
            answer = self._injector.drift(path, query_params(query), answer)
            status, body = 200, answer
            if self.realism is not None:
                body = self.realism.answer(path, query, answer, self.corpus, float(self.clock()))
        except ApiError as e:
            status, body, extra = e.status, (e.body if e.body is not None else {"error": e.message}), e.headers
        except Exception as e:  # pragma: no cover - a bug in the sandbox itself
            status, body = 500, {"error": f"sandbox bug: {type(e).__name__}: {e}"}
        self._record(now, path, status, detail_id)
        return status, body, extra

    def handle_cdn(self, path: str, query: str) -> cdn.CdnAnswer:
        """The answer to a CDN request: ``(status, json_error_or_None, content_type, length, chunks)``."""
        with self._lock:
            self._cdn_requests += 1
        return cdn.serve(self.corpus, path, query, float(self.clock()))

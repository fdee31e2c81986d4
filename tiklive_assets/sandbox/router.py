"""The sandbox's HTTP layer: the threaded server on 127.0.0.1 and the handler that routes each request.

``/__sandbox__/`` is the test controls (stats, faults, publishing, moving the clock, the corpus's names; no API
key), ``/cdn/`` the media, ``/v2/`` the official Research API, and every other path the TikLiveAPI endpoints. The
handler only speaks HTTP: what to answer is :class:`~tiklive_assets.sandbox.server.SandboxServer`'s.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .research import RawBody

if TYPE_CHECKING:
    from .server import SandboxServer


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that can close every open connection at once (``close_all``)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, SandboxHandler)

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


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TikLiveSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

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
                status, answer, headers = sb.handle_api(path, query, self.headers)
                if isinstance(answer, bytes):  # a body that is not JSON (realism: cut short in transit)
                    self._send(status, answer, "application/json", headers)
                else:
                    self._json(status, answer, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _cdn(self, sb: SandboxServer, path: str, query: str) -> None:
        answer = sb.handle_cdn(path, query)
        if answer.error is not None:
            self._json(answer.status, answer.error)
            return
        assert answer.content_type is not None  # set whenever there is no error
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(answer.length))
        self.send_header("Cache-Control", "private, max-age=0")
        self.end_headers()
        if self.command == "HEAD":
            return
        for chunk in answer.chunks:
            self.wfile.write(chunk)

    def _control(self, sb: SandboxServer, method: str, path: str, raw: bytes) -> None:
        try:
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            name = path.rstrip("/")
            if name == "/__sandbox__/stats":
                self._json(200, sb.stats())
            elif name == "/__sandbox__/reset-stats" and method == "POST":
                sb.reset_stats()
                self._json(200, {"ok": True})
            elif name == "/__sandbox__/faults":
                self._json(200, sb.apply_faults(data) if method == "POST" else sb.fault_settings())
            elif name == "/__sandbox__/clock":
                if method == "POST":
                    sb.advance_clock(float(data.get("advance_seconds", 0)))
                self._json(200, {"now": sb.clock(), "offset_seconds": sb.clock_offset})
            elif name == "/__sandbox__/publish" and method == "POST":
                if not data.get("handle"):
                    raise ValueError("missing handle")
                self._json(200, {"aweme_id": sb.publish_video(str(data["handle"]))})
            elif name == "/__sandbox__/corpus":
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

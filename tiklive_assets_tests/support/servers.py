"""Servers the tests stand up on 127.0.0.1: a scriptable hostile CDN, and a moto S3 server that can be stopped and
started again on the same port (an outage that ends)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

BODY = bytes(range(256)) * 400  # 102,400 bytes


class HostileServer:
    """A tiny HTTP server on 127.0.0.1 whose answers a test scripts per path; it records what reached it."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append((self.path, dict(self.headers)))
                route = outer.routes.get(self.path.split("?")[0])
                if route is None:
                    send(self, 404, b"no such object")
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    else:
        handler.send_header("Connection", "close")  # a body delimited by the end of the connection
        handler.close_connection = True
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def redirect(location: str) -> Callable[[BaseHTTPRequestHandler], None]:
    return lambda h: send(h, 302, b"", {"Location": location})


def drip(interval: float, total: int = 100) -> Callable[[BaseHTTPRequestHandler], None]:
    """Headers at once, then one byte every ``interval`` seconds: each read is quick, the body never ends."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(total))
        h.end_headers()
        h.wfile.flush()
        for _ in range(total):
            time.sleep(interval)
            h.wfile.write(b"x")
            h.wfile.flush()

    return route


@pytest.fixture
def hostile():
    with HostileServer() as server:
        yield server


@pytest.fixture
def internal():
    """A second server: the 'inside' service an attacker would aim at."""
    with HostileServer() as server:
        server.routes["/internal"] = lambda h: send(h, 200, b"SECRET INTERNAL DATA")
        yield server


@dataclass
class RestartableMoto:
    """A moto S3 server we can stop and start again on the same port (moto keeps its buckets in-process)."""

    port: int = 0
    server: object = None

    def start(self) -> RestartableMoto:
        from moto.server import ThreadedMotoServer

        for _ in range(50):  # the port may linger for a moment after a stop
            try:
                self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
                self.server.start()
                break
            except OSError:
                time.sleep(0.1)
        self.port = self.server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def moto_with_bucket(prefix: str) -> Iterator[tuple[RestartableMoto, str]]:
    """A RestartableMoto of its own with one new bucket; stopped at the end (unless the test stopped it)."""
    server = RestartableMoto().start()
    bucket = f"{prefix}-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    try:
        yield server, bucket
    finally:
        with suppress(Exception):  # already stopped by the test
            server.stop()

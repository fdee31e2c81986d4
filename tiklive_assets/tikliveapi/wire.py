"""Sending one API request and reading its body, bounded: the HTTP layer under the TikLiveAPI client.

The client's ``requests.Session`` holds what the environment says about its one origin (proxy, CA bundle, ``.netrc``
login), read once. When that is nothing requests must apply per request (no proxy, no login, no client
certificate), requests go through urllib3's connection pools directly, as the session would send them (its
headers, no redirect followed, the same timeouts and CA bundle) without its per-request merging of settings,
hooks and cookies, which cost more CPU than the request itself. Otherwise the session sends them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import requests
import urllib3

from tiklive_assets.transport import Deadline


class Answer(Protocol):
    """What the client reads of a response: the status, the headers, the raw stream, and closing it."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def raw(self) -> Any: ...

    def close(self) -> None: ...


class Unreachable(Exception):
    """The request got no answer (refused, reset, timed out, a TLS failure); ``kind`` names it as requests would."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class TooLarge(Exception):
    def __init__(self, size: int, declared: bool):
        self.size = size
        self.declared = declared


class DeadlinePassed(Exception):
    pass


def read_body(http: Answer, limit: int, deadline: Deadline) -> bytes:
    """The whole body of a streamed response, at most ``limit`` bytes and within ``deadline``: a hostile server can
    neither fill memory nor drip one byte at a time to hold the request open (read1 returns after each socket
    read, so the deadline is checked between drips)."""
    declared = http.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise TooLarge(int(declared), True)
    parts: list[bytes] = []
    size = 0
    raw = http.raw
    while True:
        if deadline.expired:
            raise DeadlinePassed()
        chunk = raw.read1(1 << 16, decode_content=True)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise TooLarge(size, False)
        parts.append(chunk)


def settle_environment(session: requests.Session, base_url: str) -> None:
    """Read once what requests would read from the environment on every request to ``base_url`` (its proxy, CA
    bundle and ``.netrc`` login): every request goes to that one origin, and the lookup cost a request's CPU."""
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update({k: v for k, v in found["proxies"].items() if v})
    session.verify = found["verify"]
    netrc = requests.utils.get_netrc_auth(base_url)
    if netrc:
        session.auth = netrc
    session.trust_env = False


class _Direct:
    """A urllib3 response as the client reads it. Closing drops a connection whose body was not read to its end
    (as requests does) and returns the connection to its pool otherwise."""

    __slots__ = ("raw",)

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.raw = raw

    @property
    def status_code(self) -> int:
        return self.raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self.raw.headers

    def close(self) -> None:
        self.raw.close()
        self.raw.release_conn()


# urllib3's names for a request that got no answer, as requests names them (the client logs the name)
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (urllib3.exceptions.NewConnectionError, "ConnectionError"),  # a ConnectTimeoutError to urllib3, not to requests
    (urllib3.exceptions.ConnectTimeoutError, "ConnectTimeout"),
    (urllib3.exceptions.ReadTimeoutError, "ReadTimeout"),
    (urllib3.exceptions.SSLError, "SSLError"),
    (urllib3.exceptions.ProxyError, "ProxyError"),
)
_NO_ANSWER = (
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.ProxyError,
    OSError,
)


class Sender:
    """GETs of one client: urllib3 directly when the session needs nothing per request, else the session."""

    def __init__(self, session: requests.Session, pool_size: int) -> None:
        self.session = session
        self.pools: urllib3.PoolManager | None = None
        verify = session.verify
        direct = not session.proxies and session.auth is None and session.cert is None
        if direct and (verify is True or (isinstance(verify, str) and os.path.isfile(verify))):
            ca_certs = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
            self.pools = urllib3.PoolManager(
                num_pools=4, maxsize=pool_size, block=False, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs
            )

    def get(self, url: str, params: Mapping[str, Any], timeout: tuple[float, float]) -> Answer:
        """One GET of ``url`` with ``params``, never following a redirect (requests would forward the key to
        whatever host it names); the body is left to stream. Raises Unreachable when no answer came."""
        if self.pools is None:
            try:
                return self.session.get(url, params=params, timeout=timeout, allow_redirects=False, stream=True)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Unreachable(type(exc).__name__) from None
        query = urlencode([(k, v) for k, v in params.items()], doseq=True)
        try:
            raw = self.pools.urlopen(
                "GET",
                f"{url}?{query}" if query else url,
                headers=dict(self.session.headers),
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                preload_content=False,
                decode_content=True,
            )
        except _NO_ANSWER as exc:
            raise Unreachable(
                next((name for kind, name in _KINDS if isinstance(exc, kind)), "ConnectionError")
            ) from None
        return _Direct(raw)

    def close(self) -> None:
        self.session.close()
        if self.pools is not None:
            self.pools.clear()

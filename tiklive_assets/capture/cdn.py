"""The CDN fetcher: downloads the media URLs an API answer names, and cannot be aimed inside.

A ``/post-detail/`` answer names the URLs to download; whoever controls that answer (a hostile or compromised
upstream, a man in the middle of a plain-http gateway) would otherwise choose what this process connects to:
the cloud metadata service, a database on localhost, an admin page on the LAN (SSRF). So every URL passes one
policy, at every redirect hop:

* only ``https``, except for *trusted origins* (scheme, host and port exactly): the configured API origin itself
  (``TIKLIVE_BASE_URL``: how the bundled sandbox and a self-hosted gateway serve their media, over ``http`` on
  127.0.0.1) and the origins listed in ``capture.allowed_media_origins``;
* outside the trusted origins, no address that is private, loopback, link-local, multicast, reserved,
  unspecified or otherwise not globally routable. The check runs when the connection is opened, on the
  addresses DNS returned, and the socket connects to exactly those checked addresses (never a second lookup), so
  a DNS answer that changes between a check and the connect (rebinding) cannot slip an inside address through;
* redirects are never followed automatically: each ``Location`` is checked like the first URL (at most
  ``MAX_REDIRECTS`` hops);
* at most ``capture.max_video_bytes`` (``Content-Length`` checked up front, the stream counted as it arrives), and
  ``capture.download_deadline_seconds`` for the whole download (connect, redirects and body), on top of the
  connect/read timeouts, so a body that drips one byte every few seconds fails instead of holding a worker.

No API key, cookie or proxy credential is ever sent: the fetcher has its own connection pools (urllib3's, used
directly), which ignore the environment (``*_PROXY``, ``.netrc``).

Failure classes, as the capture needs them:

* :class:`MediaExpired`: HTTP 403, the signed URL expired; the caller resolves the id again;
* :class:`MediaRefused` (and :class:`MediaTooLarge`): a URL that can never work (a bad scheme, a refused address,
  credentials in the URL, too many redirects, over the size cap, malformed): the id's own failure;
* :class:`MediaStatus`: any other non-200 answer: the id's own failure (the caller may try the next URL);
* :class:`MediaUnreachable` (a ``ConnectionError``): the CDN cannot be reached, resets, or stalls past a timeout
  or the deadline: a failure of the system, never blamed on the id.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.storage.base import StagedFile

log = logging.getLogger(__name__)

CHUNK = 1 << 16
MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_DEADLINE_SECONDS = 900.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = (301, 302, 303, 307, 308)

Origin = tuple[str, str, int]  # (scheme, host, port), lowercase host without brackets


# -- errors ---------------------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """A URL as it may appear in logs and errors: without its query (signatures) and without credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else url.split("?")[0][:200]


class MediaError(Exception):
    """A media download that failed for a reason of its URL (never a secret in the message)."""

    def __init__(self, url: str, detail: str):
        self.url = redact(url)
        self.detail = detail
        super().__init__(f"{detail}: {self.url}")


class MediaRefused(MediaError):
    """The URL can never work: a scheme other than https outside the trusted origins, an inside address,
    credentials in the URL, too many redirects, a malformed URL. The id's own failure, never retried as an
    outage."""


class MediaTooLarge(MediaRefused):
    """The object is larger than ``capture.max_video_bytes``."""


class MediaExpired(MediaError):
    """HTTP 403: the signed URL expired before it was used."""


class MediaStatus(MediaError):
    """An HTTP status other than 200 or 403 (after redirects)."""

    def __init__(self, url: str, status: int):
        self.status = status
        super().__init__(url, f"CDN answered HTTP {status}")


class MediaUnreachable(ConnectionError):
    """The CDN could not be reached, reset the connection, or stalled past a timeout or the download deadline.
    Says nothing about the id: the caller stops the run as systemic."""


class _AddressRefused(Exception):
    """Raised inside the connection when DNS names a refused address (not an OSError: urllib3 must not wrap it)."""

    def __init__(self, host: str, address: str, reason: str):
        self.host, self.address, self.reason = host, address, reason
        super().__init__(f"{host} resolves to {address}, a {reason} address")


# -- the policy -----------------------------------------------------------------------------------------------


def parse_origin(text: str) -> Origin:
    """``scheme://host[:port]`` as an :data:`Origin`; ValueError (saying what is allowed) for anything else."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an origin ({exc}); write scheme://host[:port]") from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ValueError(f"{text!r} is not an origin: write http(s)://host[:port], without path, query or credentials")
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def origin_of(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def refused_address(address: str) -> str | None:
    """Why an IP address may not be fetched from (``"loopback"``, ``"private"``...), or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unparsable"
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address inside an IPv6 one is judged as itself too
        candidates += [inner for inner in (ip.ipv4_mapped, ip.sixtofour, ip.teredo and ip.teredo[1]) if inner]
    for candidate in candidates:
        for name in ("is_loopback", "is_link_local", "is_multicast", "is_unspecified", "is_reserved", "is_private"):
            if getattr(candidate, name):
                return name.removeprefix("is_").replace("_", "-")
        if not candidate.is_global:
            return "non-global"
    return None


@dataclass(frozen=True)
class MediaLimits:
    """What one download may do: the trusted origins, the size cap and the total deadline."""

    trusted_origins: frozenset[Origin] = frozenset()
    max_bytes: int = DEFAULT_MAX_BYTES
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS


def check_url(url: str, limits: MediaLimits) -> bool:
    """Raise MediaRefused for a URL the policy refuses before any connection; return whether its origin is trusted
    (a trusted origin skips the address check; every other one is checked on connect)."""
    if not isinstance(url, str) or not url or len(url) > 8192 or any(c in url for c in "\r\n\t\x00 "):
        raise MediaRefused(str(url)[:200], "malformed media URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise MediaRefused(url, "malformed media URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise MediaRefused(url, f"media URL scheme {scheme or '(none)'!r} refused: only https is fetched")
    if not parts.hostname:
        raise MediaRefused(url, "media URL without a host")
    if parts.username is not None or parts.password is not None:
        raise MediaRefused(url, "media URL carrying credentials refused")
    origin = origin_of(url)
    if origin in limits.trusted_origins:
        return True
    if scheme != "https":
        raise MediaRefused(
            url,
            "plain-http media URL refused outside the trusted origins (the API's own origin and "
            "capture.allowed_media_origins): only https is fetched",
        )
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return False  # a name: checked on connect, on the addresses it resolves to
    reason = refused_address(str(literal))
    if reason:
        raise MediaRefused(url, f"media URL pointing at a {reason} address refused")
    return False


# -- the guarded connection -----------------------------------------------------------------------------------


if TYPE_CHECKING:  # the mixin's methods run on urllib3's HTTP(S)Connection and read its attributes
    _ConnectionBase = HTTPConnection
else:
    _ConnectionBase = object


class _GuardedConnectionMixin(_ConnectionBase):
    """Resolve the host once, refuse it if any address is not public, connect only to the checked addresses."""

    def _new_conn(self) -> socket.socket:
        host, port = self.host, self.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(host, self, exc) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # an IP address: str for AF_INET(6)
        for address in addresses:  # every address: a round-robin answer cannot hide one inside address
            reason = refused_address(address)
            if reason:
                raise _AddressRefused(host, address, reason)
        error: Exception | None = None
        for address in addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (address, port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                error = ConnectTimeoutError(self, f"Connection to {host} timed out. (connect timeout={self.timeout})")
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
                error.__cause__ = exc
            else:
                return sock
        raise error or NewConnectionError(self, f"{host} resolved to no address")


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


# What every media request sends: no API key, cookie or credential, ever; identity encoding, so the bytes stored are
# the bytes served.
_HEADERS = {"User-Agent": "tiklive-assets/0.1", "Accept-Encoding": "identity", "Accept": "*/*"}


def _pools(pool_size: int, num_pools: int, guarded: bool) -> urllib3.PoolManager:
    """urllib3's connection pools, used directly: no proxy from the environment, no ``.netrc`` credentials, no
    cookies, and none of a requests session's per-request merging. Certificates are checked against the same CA
    bundle requests uses. ``guarded``: every connection checks the addresses it connects to."""
    manager = urllib3.PoolManager(
        num_pools=num_pools, maxsize=pool_size, block=False, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where()
    )
    if guarded:
        manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return manager


# -- the fetcher ----------------------------------------------------------------------------------------------


class CdnFetcher:
    """Downloads media to ``.part`` files under the policy above. Thread-safe: one instance per client."""

    def __init__(self, connect_timeout: float = 5.0, read_timeout: float = 30.0, pool_size: int = 32):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._trusted = _pools(pool_size, 4, guarded=False)
        self._guarded = _pools(pool_size, 8, guarded=True)

    def close(self) -> None:
        self._trusted.clear()
        self._guarded.clear()

    def fetch(self, url: str, directory: Path, suffix: str, limits: MediaLimits) -> tuple[Path, str, int]:
        """Stream ``url`` to a new ``.part`` file in ``directory``; return (path, sha256, size).

        Never holds the object in memory; the ``.part`` file is removed on any failure. The path is a StagedFile
        carrying the sha256 and size, so a store takes it without reading it again.
        """
        end = time.monotonic() + limits.deadline_seconds
        url, response = self._open(url, limits, end)
        complete = False
        try:
            found = self._stream(url, response, directory, suffix, limits, end)
            complete = True
            return found
        finally:
            if not complete:  # the rest of the body is never read: the connection cannot be reused
                response.close()
            response.release_conn()

    def _open(self, url: str, limits: MediaLimits, end: float) -> tuple[str, urllib3.BaseHTTPResponse]:
        """The answer to ``url`` after the redirects the policy allows: (the URL that answered, its response)."""
        first = url
        for hop in range(MAX_REDIRECTS + 1):
            trusted = check_url(url, limits)
            pools = self._trusted if trusted else self._guarded
            left = end - time.monotonic()
            if left <= 0:
                raise MediaUnreachable(
                    f"CDN download deadline of {limits.deadline_seconds:g} s passed before "
                    f"{redact(url)} answered (capture.download_deadline_seconds)"
                )
            timeout = urllib3.Timeout(connect=min(self.connect_timeout, left), read=min(self.read_timeout, left))
            try:
                response = pools.urlopen(
                    "GET",
                    url,
                    headers=_HEADERS,
                    redirect=False,  # each hop is checked by the policy first
                    retries=False,
                    timeout=timeout,
                    preload_content=False,
                    decode_content=False,
                )
            except _AddressRefused as exc:
                raise MediaRefused(url, f"media URL refused: {exc}") from None
            except (urllib3.exceptions.LocationValueError, ValueError) as exc:
                # a URL no client can open (a bad host, a malformed label): the id's own failure, never an outage
                raise MediaRefused(url, f"malformed media URL ({type(exc).__name__})") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # unreachable, reset, timed out: not the id's
                raise MediaUnreachable(f"CDN unreachable: {type(exc).__name__} for {redact(url)}") from None
            if response.status not in _REDIRECTS:
                return url, response
            location = response.headers.get("Location")
            response.close()
            response.release_conn()
            if not location:
                raise MediaStatus(url, response.status)
            url = urljoin(url, location)
            log.debug("CDN redirect %d: %s -> %s", hop + 1, redact(first), redact(url))
        raise MediaRefused(first, f"more than {MAX_REDIRECTS} redirects")

    def _stream(
        self,
        url: str,
        response: urllib3.BaseHTTPResponse,
        directory: Path,
        suffix: str,
        limits: MediaLimits,
        end: float,
    ) -> tuple[Path, str, int]:
        if response.status == 403:
            raise MediaExpired(url, "CDN answered HTTP 403 (the signed URL expired)")
        if response.status != 200:
            raise MediaStatus(url, response.status)
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limits.max_bytes:
            raise MediaTooLarge(
                url,
                f"the object is {int(declared)} bytes, over the cap of {limits.max_bytes} (capture.max_video_bytes)",
            )
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="dl.", suffix=f"{suffix}.part", dir=directory)
        digest, size = hashlib.sha256(), 0
        raw = response
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    if time.monotonic() > end:
                        raise MediaUnreachable(
                            f"CDN download of {redact(url)} passed its deadline of {limits.deadline_seconds:g} s "
                            f"after {size} bytes (capture.download_deadline_seconds): the CDN stalls"
                        )
                    try:
                        # read1: whatever one socket read brings, so the deadline is checked between drips
                        chunk = raw.read1(CHUNK, decode_content=True)
                    except (urllib3.exceptions.HTTPError, OSError) as exc:
                        raise MediaUnreachable(
                            f"CDN stream broke: {type(exc).__name__} for {redact(url)} after {size} bytes"
                        ) from None
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limits.max_bytes:
                        raise MediaTooLarge(
                            url,
                            f"the object passed the cap of {limits.max_bytes} bytes while "
                            "streaming (capture.max_video_bytes)",
                        )
                    out.write(chunk)
                    digest.update(chunk)
                    if size == len(chunk):  # the first bytes are in the .part file, the rest still on the wire
                        out.flush()
                        crashpoint("cdn.body.first_chunk")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        sha256 = digest.hexdigest()
        # closed and never written again, its digest known: the store may take the file itself (storage/base.py)
        return StagedFile.of(tmp, sha256, size), sha256, size


def trusted_origins(api_base_url: str, allowed: Iterable[str] = ()) -> frozenset[Origin]:
    """The API's own origin plus the listed ones."""
    origins = {parse_origin(text) for text in allowed}
    api = origin_of(api_base_url)
    if api is not None:
        origins.add(api)
    return frozenset(origins)


def fetch_media(session, url: str, suffix: str) -> tuple[Path, str, int]:
    """Download one media URL of a capture session: its client's fetcher, its config's limits, its scratch dir."""
    capture = session.config.capture
    limits = _limits(
        session.client.base_url,
        tuple(capture.allowed_media_origins),
        capture.max_video_bytes,
        capture.download_deadline_seconds,
    )
    return session.client.cdn.fetch(url, session.scratch, suffix, limits)


@functools.lru_cache(maxsize=32)
def _limits(base_url: str, allowed: tuple[str, ...], max_bytes: int, deadline: float) -> MediaLimits:
    """A session's limits, parsed once per configuration rather than once per download."""
    return MediaLimits(trusted_origins(base_url, allowed), max_bytes, deadline)

"""The CDN fetcher cannot be aimed inside: real HTTP servers on 127.0.0.1 playing a hostile CDN.

Each server counts the connections it accepted, so "refused" means the fetcher never connected, not that it
connected and then gave up.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest

from tiklive_assets.capture import cdn
from tiklive_assets.capture.cdn import (
    CdnFetcher,
    MediaExpired,
    MediaLimits,
    MediaRefused,
    MediaStatus,
    MediaTooLarge,
    MediaUnreachable,
    check_url,
    parse_origin,
    refused_address,
    trusted_origins,
)
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets_tests.support.servers import BODY, HostileServer, drip, redirect, send


@pytest.fixture
def fetcher():
    f = CdnFetcher(connect_timeout=2, read_timeout=5)
    yield f
    f.close()


def _limits(*servers: HostileServer, max_bytes: int = 10_000_000, deadline: float = 10.0) -> MediaLimits:
    return MediaLimits(frozenset(parse_origin(s.origin) for s in servers), max_bytes, deadline)


def _parts(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("*.part"))


# -- the address policy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # IPv4 inside IPv6: mapped, 6to4
    ],
)
def test_inside_addresses_are_refused(address):
    assert refused_address(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "151.101.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert refused_address(address) is None


@pytest.mark.parametrize(
    "url, why",
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://cdn.example/v.mp4", "scheme 'ftp'"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme 'gopher'"),
        ("//cdn.example/v.mp4", "scheme '(none)'"),
        ("http://cdn.example/v.mp4", "plain-http media URL refused"),
        ("https://127.0.0.1/v.mp4", "loopback"),
        ("https://[::1]:8443/v.mp4", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://user:secret@cdn.example/v.mp4", "credentials"),
        ("https://cdn.example:99999/v.mp4", "malformed"),
        ("https://cdn.example/v.mp4\r\nX-Injected: 1", "malformed"),
        ("", "malformed"),
    ],
)
def test_urls_that_can_never_work_are_refused_before_any_connection(url, why):
    with pytest.raises(MediaRefused) as info:
        check_url(url, MediaLimits())
    assert why in str(info.value)
    assert "secret" not in str(info.value)


def test_public_https_names_pass_the_url_check_and_are_judged_on_connect():
    assert check_url("https://v16-webapp.tiktokcdn.com/a/b.mp4?sig=1", MediaLimits()) is False


def test_trusted_origins_match_scheme_host_and_port_exactly():
    trusted = trusted_origins("http://127.0.0.1:8080", ["http://10.0.0.5:9000"])
    limits = MediaLimits(trusted)
    assert check_url("http://127.0.0.1:8080/cdn/play/1.mp4", limits) is True
    assert check_url("http://10.0.0.5:9000/v.mp4", limits) is True
    for other in ("http://127.0.0.1:8081/internal", "https://127.0.0.1:8080/x", "http://10.0.0.5/v.mp4"):
        with pytest.raises(MediaRefused):
            check_url(other, limits)
    assert trusted_origins("https://api.tikliveapi.com") == {("https", "api.tikliveapi.com", 443)}


# -- fetching from real servers ---------------------------------------------------------------------------------


def test_a_trusted_origin_streams_to_a_part_file_with_its_sha256(hostile, fetcher, tmp_path):
    hostile.routes["/v.mp4"] = lambda h: send(h, 200, BODY)
    path, digest, size = fetcher.fetch(hostile.url("/v.mp4?sig=abc"), tmp_path, ".mp4", _limits(hostile))
    assert path.read_bytes() == BODY and size == len(BODY)
    assert digest == hashlib.sha256(BODY).hexdigest()
    assert path.name.endswith(".mp4.part")


def test_an_internal_url_on_another_port_is_refused_without_connecting(hostile, internal, fetcher, tmp_path):
    with pytest.raises(MediaRefused, match="plain-http"):
        fetcher.fetch(internal.url("/internal"), tmp_path, ".mp4", _limits(hostile))
    assert internal.connections == 0 and _parts(tmp_path) == []


def test_a_name_resolving_to_loopback_is_refused_on_connect_without_connecting(internal, fetcher, tmp_path):
    # https + a host name passes the URL check; the guarded connection resolves it and refuses 127.0.0.1
    with pytest.raises(MediaRefused, match=r"localhost resolves to .*(loopback)"):
        fetcher.fetch(f"https://localhost:{internal.port}/internal", tmp_path, ".mp4", MediaLimits())
    assert internal.connections == 0


def test_one_inside_address_among_public_ones_refuses_the_name(internal, fetcher, tmp_path, monkeypatch):
    """A round-robin answer (or a rebinding resolver) naming one inside address: every address is checked, and the
    socket connects only to addresses from the one answer that was checked. (DNS is the one thing that cannot
    run here: getaddrinfo answers as a hostile resolver would.)"""
    calls = []

    def resolver(host, port, *args, **kwargs):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("8.8.8.8", "127.0.0.1")]

    monkeypatch.setattr(cdn.socket, "getaddrinfo", resolver)
    with pytest.raises(MediaRefused, match="127.0.0.1"):
        fetcher.fetch(f"https://cdn.example:{internal.port}/internal", tmp_path, ".mp4", MediaLimits())
    assert calls == ["cdn.example"] and internal.connections == 0


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(internal, fetcher, tmp_path, monkeypatch):
    """Rebinding: the first answer is public, any later one would be 127.0.0.1. The guard resolves once per
    connection and connects to what it checked, so the inside server is never reached."""
    answers = iter(["8.8.8.8"] + ["127.0.0.1"] * 10)
    connected = []

    def resolver(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    def create_connection(address, *args, **kwargs):
        connected.append(address[0])
        raise OSError("unreachable in this test")  # never leave 127.0.0.1: stop at the connect

    monkeypatch.setattr(cdn.socket, "getaddrinfo", resolver)
    monkeypatch.setattr(cdn.urllib3_connection, "create_connection", create_connection)
    with pytest.raises(MediaUnreachable):
        fetcher.fetch(f"https://cdn.example:{internal.port}/internal", tmp_path, ".mp4", MediaLimits())
    assert connected == ["8.8.8.8"] and internal.connections == 0


def test_a_redirect_to_an_internal_address_is_refused(hostile, internal, fetcher, tmp_path):
    hostile.routes["/v.mp4"] = redirect(internal.url("/internal"))
    with pytest.raises(MediaRefused):
        fetcher.fetch(hostile.url("/v.mp4"), tmp_path, ".mp4", _limits(hostile))
    assert internal.connections == 0 and _parts(tmp_path) == []


def test_a_redirect_to_a_name_resolving_inside_is_refused_on_connect(hostile, internal, fetcher, tmp_path):
    hostile.routes["/v.mp4"] = redirect(f"https://localhost:{internal.port}/internal")
    with pytest.raises(MediaRefused, match="loopback"):
        fetcher.fetch(hostile.url("/v.mp4"), tmp_path, ".mp4", _limits(hostile))
    assert internal.connections == 0


def test_a_redirect_to_file_is_refused(hostile, fetcher, tmp_path):
    hostile.routes["/v.mp4"] = redirect("file:///etc/passwd")
    with pytest.raises(MediaRefused, match="scheme 'file'"):
        fetcher.fetch(hostile.url("/v.mp4"), tmp_path, ".mp4", _limits(hostile))


def test_redirects_inside_a_trusted_origin_are_followed_but_bounded(hostile, fetcher, tmp_path):
    hostile.routes["/a"] = redirect("/b")
    hostile.routes["/b"] = lambda h: send(h, 200, BODY)
    path, _, size = fetcher.fetch(hostile.url("/a"), tmp_path, ".mp4", _limits(hostile))
    assert size == len(BODY)
    hostile.routes["/loop"] = redirect("/loop")
    hostile.requests.clear()
    with pytest.raises(MediaRefused, match="more than 5 redirects"):
        fetcher.fetch(hostile.url("/loop"), tmp_path, ".mp4", _limits(hostile))
    assert len(hostile.requests) == cdn.MAX_REDIRECTS + 1


def test_an_oversize_body_with_content_length_is_refused_before_reading_it(hostile, fetcher, tmp_path):
    hostile.routes["/big.mp4"] = lambda h: send(h, 200, BODY)
    with pytest.raises(MediaTooLarge, match=f"is {len(BODY)} bytes, over the cap of 1000"):
        fetcher.fetch(hostile.url("/big.mp4"), tmp_path, ".mp4", _limits(hostile, max_bytes=1000))
    assert _parts(tmp_path) == []


def test_an_oversize_body_without_content_length_is_stopped_at_the_cap(hostile, fetcher, tmp_path):
    hostile.routes["/big.mp4"] = lambda h: send(h, 200, BODY * 50, length=False)  # 5 MB, no Content-Length
    started = time.monotonic()
    with pytest.raises(MediaTooLarge, match="passed the cap of 200000 bytes while streaming"):
        fetcher.fetch(hostile.url("/big.mp4"), tmp_path, ".mp4", _limits(hostile, max_bytes=200_000))
    assert _parts(tmp_path) == [] and time.monotonic() - started < 5
    # exactly at the cap is fine
    hostile.routes["/exact.mp4"] = lambda h: send(h, 200, BODY, length=False)
    _, _, size = fetcher.fetch(hostile.url("/exact.mp4"), tmp_path, ".mp4", _limits(hostile, max_bytes=len(BODY)))
    assert size == len(BODY)


def test_a_dripping_body_is_stopped_by_the_download_deadline(hostile, fetcher, tmp_path):
    hostile.routes["/drip.mp4"] = drip(0.3)  # every read is quick (read timeout 5 s never fires); it never ends
    started = time.monotonic()
    with pytest.raises(MediaUnreachable, match="deadline of 1.5 s") as info:
        fetcher.fetch(hostile.url("/drip.mp4"), tmp_path, ".mp4", _limits(hostile, deadline=1.5))
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 3.0, elapsed
    assert isinstance(info.value, ConnectionError)  # systemic for the capture: a stalling CDN blames no id
    assert _parts(tmp_path) == []


def test_expired_and_other_statuses_are_typed(hostile, fetcher, tmp_path):
    hostile.routes["/old.mp4"] = lambda h: send(h, 403, b"expired")
    hostile.routes["/gone.mp4"] = lambda h: send(h, 410, b"gone")
    with pytest.raises(MediaExpired):
        fetcher.fetch(hostile.url("/old.mp4?sig=s3cr3t"), tmp_path, ".mp4", _limits(hostile))
    with pytest.raises(MediaStatus, match="HTTP 410") as info:
        fetcher.fetch(hostile.url("/gone.mp4?sig=s3cr3t"), tmp_path, ".mp4", _limits(hostile))
    assert "s3cr3t" not in str(info.value)  # signatures never reach logs or errors


def test_an_unreachable_cdn_is_a_connection_error(fetcher, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    limits = MediaLimits(frozenset({parse_origin(origin)}))
    with pytest.raises(MediaUnreachable) as info:
        fetcher.fetch(f"{origin}/v.mp4", tmp_path, ".mp4", limits)
    assert isinstance(info.value, ConnectionError)


def test_the_api_key_and_environment_credentials_never_reach_the_cdn(hostile, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login me password netrc-secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy from the environment is not used either
    hostile.routes["/v.mp4"] = lambda h: send(h, 200, BODY)
    client = TikLiveClient("the-api-key", hostile.origin)
    try:
        client.cdn.fetch(hostile.url("/v.mp4"), tmp_path, ".mp4", _limits(hostile))
    finally:
        client.close()
    [(_, headers)] = hostile.requests
    assert "the-api-key" not in str(headers) and "X-Api-Key" not in headers
    assert "Authorization" not in headers and "Cookie" not in headers

"""The TikLiveAPI client over real HTTP against the sandbox: retries, typed errors, credits, budget, secrets."""

from __future__ import annotations

import logging
import socket
import traceback
from datetime import date

import pytest

from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer
from tiklive_assets.tikliveapi.client import ApiResponse, TikLiveClient
from tiklive_assets.tikliveapi.errors import (
    AuthError,
    CreditBudgetExhausted,
    MissingApiKey,
    NotFound,
    RateLimited,
    TransientError,
    VideoGone,
)

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


def _client(sb: SandboxServer, key: str = DEFAULT_API_KEY, **kwargs) -> TikLiveClient:
    return TikLiveClient(key, sb.base_url, **{**FAST, **kwargs})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_plain_call_costs_one_credit_on_both_sides(sandbox):
    client = _client(sandbox)
    response = client.userid("cristiano")
    assert response.status == 200
    assert response.json() == {"id": "107955"}
    assert response.attempt == 1
    assert sandbox.stats()["api_requests"] == 1
    assert client.credits.total == 1
    assert client.credits.snapshot() == {"/userid/": 1}


def test_retry_after_is_honoured(sandbox):
    sandbox.fail_next(1, status=429, retry_after=1)
    client = _client(sandbox)
    response = client.userid("cristiano")
    assert response.json() == {"id": "107955"}
    assert response.attempt == 2
    arrivals = sandbox.arrivals()
    assert [status for _, _, status in arrivals] == [429, 200]
    assert arrivals[1][0] - arrivals[0][0] >= 1.0
    assert sandbox.stats()["api_requests"] == 2
    assert sandbox.stats()["rate_limited"] == 1
    assert client.credits.total == 2
    assert dict(client.credits.by_status) == {"429": 1, "200": 1}


def test_persistent_429_ends_in_rate_limited_after_max_attempts(sandbox):
    sandbox.fail_next(5, status=429, retry_after=0)
    client = _client(sandbox, max_attempts=3)
    with pytest.raises(RateLimited) as info:
        client.userid("cristiano")
    assert info.value.endpoint == "/userid/"
    assert sandbox.stats()["by_status"] == {"429": 3}
    assert client.credits.total == 3


def test_5xx_is_retried_until_success(sandbox):
    sandbox.fail_next(2, status=503)
    client = _client(sandbox)
    response = client.userid("cristiano")
    assert response.json() == {"id": "107955"}
    assert response.attempt == 3
    stats = sandbox.stats()
    assert stats["api_requests"] == 3
    assert stats["by_status"] == {"503": 2, "200": 1}
    assert client.credits.total == 3


def test_5xx_retries_are_bounded(sandbox):
    sandbox.fail_next(10, status=500)
    client = _client(sandbox, max_attempts=4)
    with pytest.raises(TransientError) as info:
        client.userid("cristiano")
    assert info.value.status == 500
    assert sandbox.stats()["api_requests"] == 4
    assert sandbox.stats()["by_status"] == {"500": 4}
    assert client.credits.total == 4
    assert sandbox.fault_settings()["fail_next"] == 6  # the other six were never asked for


def test_deleted_video_raises_video_gone_for_exactly_one_credit(sandbox):
    archived: list[ApiResponse] = []
    post = sandbox.corpus.visible_posts("alice123")[0]
    sandbox.delete_video(post.aweme_id)
    client = _client(sandbox, on_response=archived.append)
    with pytest.raises(VideoGone) as info:
        client.post_detail(post.aweme_id, "alice123")
    assert info.value.aweme_id == post.aweme_id
    assert "deleted" in info.value.reason
    stats = sandbox.stats()
    assert stats["detail_requests_by_id"] == {post.aweme_id: 1}
    assert stats["api_requests"] == 1
    assert client.credits.total == 1
    # the 404 was handed to the archive hook once, before the error was raised
    assert [r.status for r in archived] == [404]


def test_private_account_listing_raises_not_found_never_retried(sandbox):
    sandbox.make_private("bob")
    bob = sandbox.corpus.account("bob")
    client = _client(sandbox)
    with pytest.raises(NotFound) as info:
        client.user_posts(bob.id)
    assert not isinstance(info.value, VideoGone)
    assert info.value.endpoint == "/user-posts/"
    assert bob.id in info.value.subject
    assert sandbox.stats()["api_requests"] == 1
    assert client.credits.total == 1


def test_wrong_key_raises_auth_error_naming_the_variable_without_retry():
    with SandboxServer(SandboxConfig(api_key="the-right-key")) as sb:
        client = _client(sb, key="the-wrong-key")
        with pytest.raises(AuthError) as info:
            client.userid("cristiano")
        assert info.value.status == 401
        assert "TIKLIVE_API_KEY" in str(info.value)
        assert sb.stats()["api_requests"] == 1
        assert sb.stats()["by_status"] == {"401": 1}
        assert client.credits.total == 1


def test_missing_key_fails_before_any_request(sandbox):
    with pytest.raises(MissingApiKey) as info:
        TikLiveClient("", sandbox.base_url)
    assert "TIKLIVE_API_KEY" in str(info.value)
    assert sandbox.stats()["api_requests"] == 0


def test_connection_refused_is_transient_and_bounded():
    client = TikLiveClient("k", f"http://127.0.0.1:{_free_port()}", max_attempts=3, connect_timeout=1, **FAST)
    with pytest.raises(TransientError) as info:
        client.userid("cristiano")
    assert "connection failed" in str(info.value)
    assert dict(client.credits.by_status) == {"connection-error": 3}


class CountingLedger:
    """A daily budget of ``budget`` credits, kept in memory."""

    def __init__(self, budget: int):
        self.budget = budget
        self.spent = 0
        self.reserved: list[str] = []

    def reserve(self, endpoint: str) -> None:
        if self.spent >= self.budget:
            raise CreditBudgetExhausted(date(2026, 5, 29), self.spent, self.budget)
        self.spent += 1
        self.reserved.append(endpoint)


def test_credit_budget_stops_before_the_next_request_reaches_the_server(sandbox):
    ledger = CountingLedger(budget=3)
    client = _client(sandbox, credit_ledger=ledger)
    for _ in range(3):
        client.userid("cristiano")
    assert sandbox.stats()["api_requests"] == 3
    with pytest.raises(CreditBudgetExhausted) as info:
        client.userinfo_by_id("107955")
    assert info.value.spent == 3 and info.value.budget == 3
    stats = sandbox.stats()
    assert stats["api_requests"] == 3
    assert stats["by_endpoint"] == {"/userid/": 3}
    assert client.credits.total == 3
    assert ledger.reserved == ["/userid/"] * 3


def test_credit_budget_counts_every_retry(sandbox):
    """A retried 5xx spends a credit too, so the ledger is asked before every attempt."""
    sandbox.fail_next(1, status=503)
    ledger = CountingLedger(budget=2)
    client = _client(sandbox, credit_ledger=ledger)
    client.userid("cristiano")  # 503 then 200: both reserved
    with pytest.raises(CreditBudgetExhausted):
        client.userid("cristiano")
    assert sandbox.stats()["by_status"] == {"503": 1, "200": 1}
    assert client.credits.total == 2


SECRET = "SeCrEt-9f3a7c1e5b2d4068-tiklive"


def _assert_secret_absent(text: str) -> None:
    assert SECRET not in text
    assert SECRET[6:22] not in text  # nor a recognisable slice of it


def test_the_key_never_appears_in_logs_errors_or_repr(caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with SandboxServer(SandboxConfig(api_key=SECRET)) as sb, SandboxServer(SandboxConfig(api_key="other")) as other:
        good = _client(sb, key=SECRET, max_attempts=3)
        assert good.userid("cristiano").status == 200  # success
        post = sb.corpus.visible_posts("alice123")[0]
        sb.delete_video(post.aweme_id)
        for faults, call in (
            (0, lambda: good.post_detail(post.aweme_id, "alice123")),  # 404
            (3, lambda: good.userid("cristiano")),  # 5xx exhaustion
            (0, lambda: _client(other, key=SECRET).userid("cristiano")),  # 401
            (0, lambda: TikLiveClient(SECRET, f"http://127.0.0.1:{_free_port()}", max_attempts=2, **FAST).userid("x")),
        ):
            sb.fail_next(faults, status=503)
            with pytest.raises(Exception) as info:
                call()
            errors.append(info.value)
        sb.fail_next(1, status=429, retry_after=0)
        assert good.userid("cristiano").status == 200  # a 429 then a success
        assert [type(e) for e in errors] == [VideoGone, TransientError, AuthError, TransientError]
        assert sb.stats()["by_status"] == {"200": 2, "404": 1, "503": 3, "429": 1}
        assert other.stats()["by_status"] == {"401": 1}
        _assert_secret_absent(repr(good))
        _assert_secret_absent(str(good))
    for exc in errors:
        _assert_secret_absent(str(exc))
        _assert_secret_absent(repr(exc))
        _assert_secret_absent("".join(traceback.format_exception(exc)))
    # the logs were captured (so their absence of the key means something): retries and urllib3's debug lines
    messages = [record.getMessage() for record in caplog.records]
    assert any("HTTP 503" in m for m in messages)
    assert any("rate limited" in m for m in messages)
    assert any("ConnectionError" in m for m in messages)
    assert any(record.name.startswith("urllib3") and record.levelno == logging.DEBUG for record in caplog.records)
    for record in caplog.records:
        _assert_secret_absent(record.getMessage())
        _assert_secret_absent(repr(record.args))
    _assert_secret_absent(caplog.text)


def test_a_redirect_is_never_followed_so_the_key_never_reaches_another_host():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tiklive_assets.tikliveapi.errors import BadResponse

    seen: list[dict] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    target = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target.server_port}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    api = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (target, api):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = TikLiveClient("SECRET-KEY-123", f"http://127.0.0.1:{api.server_port}", max_attempts=1)
        with pytest.raises(BadResponse, match="redirect"):
            client.userid("alice123")
        assert seen == []
    finally:
        api.shutdown()
        target.shutdown()

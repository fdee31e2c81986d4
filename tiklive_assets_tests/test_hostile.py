"""Hostile servers and bad input, end to end: the capture against the sandbox with a hostile CDN beside it, and the
client against servers that stall, flood or ask for day-long waits. Every server is real, on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest

from tiklive_assets.defs.capture.assets import account_profiles, archived_videos, discovery_queue
from tiklive_assets.defs.resources import TikLiveApiResource
from tiklive_assets.sandbox import DEFAULT_API_KEY
from tiklive_assets.tikliveapi.client import TikLiveClient, classify_body, user_id_from
from tiklive_assets.tikliveapi.errors import BadResponse, DeadlineExceeded, RateLimited, TransientError
from tiklive_assets.tracking import Plan
from tiklive_assets.transport import parse_retry_after
from tiklive_assets_tests.support.capture import Rig, base_config, failures, frozen_sandbox, local_store, metadata
from tiklive_assets_tests.support.servers import BODY, HostileServer, drip, redirect, send

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
def sb():
    with frozen_sandbox() as server:
        yield server


@pytest.fixture
def rig(sb, tmp_path) -> Rig:
    return Rig(sb, tmp_path, local_store(tmp_path))


def _aim(sb, targets: dict[str, str]) -> None:
    """The /post-detail/ answers of ``targets`` (aweme_id -> URL) name that URL as the video (hdplay and play)."""
    original = sb.corpus.detail_item

    def detail_item(post, now=None):
        answer = original(post, now)
        if post.aweme_id in targets:
            answer = {**answer, "play": targets[post.aweme_id], "wmplay": targets[post.aweme_id]}
            if "hdplay" in answer:
                answer["hdplay"] = targets[post.aweme_id]
        return answer

    sb.corpus.detail_item = detail_item


def _discover(rig: Rig, **capture) -> set[str]:
    rig.config = base_config(capture={"download_concurrency": 2, "api_concurrency": 2, **capture})
    result = rig.run(account_profiles, discovery_queue)
    assert result.success, failures(result)
    return rig.ids_in("pending")


# -- the CDN fetcher in the capture ---------------------------------------------------------------------------


def test_an_internal_cdn_url_is_refused_and_dead_lettered_after_its_attempts_while_the_sandbox_works(rig, internal):
    queued = _discover(rig, max_attempts=2)
    target = min(queued)
    _aim(rig.sb, {target: internal.url("/internal")})

    first = rig.run(archived_videos)
    assert first.success, failures(first)  # the id's own failure: the run goes on, nothing systemic
    assert rig.ids_in("downloaded") == queued - {target}
    assert rig.queue()[target] != "dead"  # attempt 1 of 2
    rig.assert_archived(queued - {target})  # the sandbox's own origin (http on 127.0.0.1) still serves media

    second = rig.run(archived_videos)
    assert second.success, failures(second)
    assert rig.queue()[target] == "dead"
    with rig.state() as state:
        reason = state.dead_letter(target).reason
        assert {f.kind for f in state.files_for(target)} == set()  # nothing of it stored
    assert reason.startswith("gave up after 2 attempts") and "DownloadFailed" in reason and "refused" in reason
    assert internal.connections == 0  # never even connected
    assert not any(rig.home.glob("tmp/*.part"))


def test_a_file_url_is_the_ids_own_failure_never_a_poison_pill(rig):
    queued = _discover(rig, max_attempts=1)
    target = min(queued)
    _aim(rig.sb, {target: "file:///etc/passwd"})
    result = rig.run(archived_videos)
    assert result.success, failures(result)  # not "CDN unreachable": the run is not stopped
    assert rig.queue()[target] == "dead" and rig.ids_in("downloaded") == queued - {target}
    with rig.state() as state:
        assert "scheme 'file'" in state.dead_letter(target).reason
    again = rig.run(archived_videos)  # dead: never paid for again
    assert again.success and rig.sb.stats()["detail_requests_by_id"][target] == 1


def test_a_listed_origin_serves_media_and_its_redirect_inside_is_refused(rig, hostile, internal):
    queued = _discover(rig, max_attempts=1, allowed_media_origins=[hostile.origin])
    good, bad = sorted(queued)[:2]
    hostile.routes["/ok.mp4"] = lambda h: send(h, 200, BODY)
    hostile.routes["/v.mp4"] = redirect(internal.url("/internal"))
    _aim(rig.sb, {good: hostile.url("/ok.mp4"), bad: hostile.url("/v.mp4")})

    result = rig.run(archived_videos)
    assert result.success, failures(result)
    assert rig.queue()[good] == "downloaded" and rig.queue()[bad] == "dead"
    with rig.state() as state:
        video = {f.kind: f for f in state.files_for(good)}["video"]
        assert video.sha256 == hashlib.sha256(BODY).hexdigest() and video.size == len(BODY)
        assert "refused" in state.dead_letter(bad).reason
    assert internal.connections == 0
    assert any(path.startswith("/v.mp4") for path, _ in hostile.requests)


def test_a_day_long_retry_after_ends_the_run_in_seconds_naming_when_to_retry(rig):
    queued = _discover(rig, max_attempts=1)
    rig.config["capture"] = {"download_concurrency": 1, "api_concurrency": 1, "max_attempts": 1}
    rig.sb.fail_next(1, 429, 86400, endpoint="/post-detail/")
    started = time.monotonic()
    result = rig.run(archived_videos)
    elapsed = time.monotonic() - started
    assert not result.success
    message = failures(result)["archived_videos"]
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert "Retry after" in message and f"{tomorrow:%Y-%m-%d %H:}" in message, message
    assert "No id was blamed" in message
    assert elapsed < 15, elapsed
    assert rig.sb.stats()["by_status"].get("429") == 1  # asked once, never again in this run
    assert rig.ids_in("dead") == set() and rig.ids_in("pending") == queued  # attempt refunded: nothing lost
    rerun = rig.run(archived_videos)  # the next day (here: at once, the script is spent) converges
    assert rerun.success, failures(rerun)
    assert rig.ids_in("downloaded") == queued
    assert metadata(rerun, archived_videos)["videos_downloaded"] == len(queued)


# -- bounded waits in the client ----------------------------------------------------------------------------------


def test_retry_after_beyond_the_cap_raises_at_once_with_the_time_to_retry(sb):
    sb.fail_next(1, 429, 1000)
    client = TikLiveClient(DEFAULT_API_KEY, sb.base_url, max_retry_after=5, **FAST)
    started = time.monotonic()
    with pytest.raises(RateLimited) as info:
        client.userid("cristiano")
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 1000
    assert abs((info.value.retry_at - datetime.now(UTC)).total_seconds() - 1000) < 5
    assert "Retry after" in str(info.value) and "plan.max_retry_after_seconds" in str(info.value)
    assert sb.stats()["api_requests"] == 1 and client.credits.total == 1


def test_retry_after_within_the_cap_but_past_the_request_deadline_raises_at_once(sb):
    sb.fail_next(1, 429, 30)
    client = TikLiveClient(DEFAULT_API_KEY, sb.base_url, request_deadline=5, **FAST)
    started = time.monotonic()
    with pytest.raises(RateLimited) as info:
        client.userid("cristiano")
    assert time.monotonic() - started < 1.0 and info.value.retry_after == 30


def test_the_resource_passes_the_plans_bounded_waits_to_the_client(sb):
    resource = TikLiveApiResource(
        api_key=DEFAULT_API_KEY, base_url=sb.base_url, ratelimit_url="memory://", backoff_initial=0.01
    )
    plan = Plan(max_retry_after_seconds=2, request_deadline_seconds=7, max_response_bytes=4096)
    client = resource.client(requests_per_minute=100_000, plan=plan)
    assert (client.retry.max_retry_after, client.request_deadline, client.max_response_bytes) == (2, 7, 4096)
    sb.fail_next(1, 429, 5)
    with pytest.raises(RateLimited):
        client.userid("cristiano")
    default = resource.client(requests_per_minute=100_000)
    assert (default.retry.max_retry_after, default.max_response_bytes) == (300, 16 * 1024 * 1024)


def _http_date(when: datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


def test_an_http_date_retry_after_is_parsed_and_obeyed(hostile):
    answers = iter(
        [
            lambda h: send(h, 429, b"{}", {"Retry-After": _http_date(datetime.now(UTC) + timedelta(seconds=2))}),
            lambda h: send(h, 200, b'{"id": "107955"}'),
        ]
    )
    hostile.routes["/userid/"] = lambda h: next(answers)(h)
    client = TikLiveClient("k", hostile.origin, **FAST)
    started = time.monotonic()
    response = client.userid("cristiano")
    assert response.attempt == 2 and response.json() == {"id": "107955"}
    assert 0.5 <= time.monotonic() - started < 4  # waited for the date (1 s resolution), not plain backoff


def test_an_http_date_a_day_away_stops_at_once():
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with HostileServer() as server:
        server.routes["/userid/"] = lambda h: send(h, 429, b"{}", {"Retry-After": _http_date(when)})
        client = TikLiveClient("k", server.origin, **FAST)
        with pytest.raises(RateLimited) as info:
            client.userid("cristiano")
    assert abs((info.value.retry_at - when).total_seconds()) < 3 and len(server.requests) == 1


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120", 120.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("  7 ", 7.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: no wait
    ],
)
def test_retry_after_values(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_relative_to_now():
    now = datetime(2026, 5, 29, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Fri, 29 May 2026 12:05:00 GMT", now) == 300.0
    assert parse_retry_after("Fri, 29 May 2026 12:05:00 -0000", now) == 300.0


def test_an_oversize_api_response_is_refused_not_archived_not_retried(sb):
    archived = []
    sb.fail_next(1, 200, body=b'{"id": "107955", "pad": "' + b"x" * 10_000 + b'"}', endpoint="/userid/")
    client = TikLiveClient(DEFAULT_API_KEY, sb.base_url, max_response_bytes=4096, on_response=archived.append, **FAST)
    with pytest.raises(BadResponse, match="over the cap of 4096 .*plan.max_response_bytes"):
        client.userid("cristiano")
    assert archived == [] and sb.stats()["api_requests"] == 1 and client.credits.total == 1


def test_an_oversize_api_response_without_content_length_is_stopped_at_the_cap(hostile):
    hostile.routes["/userid/"] = lambda h: send(
        h, 200, b'{"id": "1", "pad": "' + b"x" * 5_000_000 + b'"}', length=False
    )
    client = TikLiveClient("k", hostile.origin, max_response_bytes=65536, **FAST)
    started = time.monotonic()
    with pytest.raises(BadResponse, match="passed .* over the cap of 65536"):
        client.userid("cristiano")
    assert time.monotonic() - started < 3 and len(hostile.requests) == 1


def test_a_dripping_api_answer_is_cut_off_at_the_request_deadline(hostile):
    hostile.routes["/userid/"] = drip(0.3)  # each read is quick; the read timeout (30 s) never fires
    client = TikLiveClient("k", hostile.origin, request_deadline=1.5, **FAST)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="request deadline of 1.5 s") as info:
        client.userid("cristiano")
    assert 1.4 <= time.monotonic() - started < 3.0
    assert isinstance(info.value, TransientError)  # systemic for the capture: blames no id
    assert len(hostile.requests) == 1  # no attempt started after the deadline


def test_retries_stop_at_the_request_deadline(sb):
    sb.fail_next(100, 503)
    client = TikLiveClient(
        DEFAULT_API_KEY, sb.base_url, max_attempts=100, backoff_initial=0.2, backoff_max=0.2, request_deadline=1.0
    )
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="HTTP 503; gave up at the request deadline of 1 s"):
        client.userid("cristiano")
    assert time.monotonic() - started < 1.5
    assert 2 <= sb.stats()["api_requests"] < 10


# -- a user id must be digits before it is cached ---------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [
        ({"id": "107955"}, "107955"),
        ({"id": 107955}, "107955"),
        ({"user_id": "42"}, "42"),
        ({"user": {"id": 7}}, "7"),
        ({"id": None}, None),
        ({"id": ""}, None),
        ({"id": "12a"}, None),
        ({"id": True}, None),
        ({"id": -1}, None),
        ({"id": "1" * 33}, None),
        ({"id": "１２３"}, None),
        ([], None),
        ("107955", None),
    ],
)
def test_a_user_id_is_a_non_empty_string_of_at_most_32_digits(answer, expected):
    assert user_id_from(answer) == expected


def test_a_userid_answer_whose_id_cannot_become_a_key_is_not_data():
    assert classify_body(b'{"id": "' + b"9" * 40 + b'"}', "/userid/")[0] == "invalid"
    assert classify_body(b'{"code": 0, "data": {"id": "107955"}}', "/userid/") == (None, "")


@pytest.mark.parametrize(
    "url", ["https://exa%mple.com/v.mp4", "https://a\u200b.com/v.mp4", f"https://{'a' * 64}.com/v.mp4"]
)
def test_a_malformed_media_url_is_the_ids_own_failure_never_an_outage(rig, url):
    """A URL that passes the policy but no client can open (a bad host label): before, requests' InvalidURL was
    classified "CDN unreachable", which stopped every run on the same id."""
    queued = _discover(rig, max_attempts=1)
    target = min(queued)
    _aim(rig.sb, {target: url})
    result = rig.run(archived_videos)
    assert result.success, failures(result)
    assert rig.queue()[target] == "dead" and rig.ids_in("downloaded") == queued - {target}

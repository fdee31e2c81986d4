"""Capture, end to end: the real assets materialized against the sandbox API over HTTP, into a real store.

Each test counts what the server saw (credits), what the store holds and what the state database recorded.
The sandbox runs on a frozen clock so its corpus is identical on every run; the pipeline captures today (UTC).
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster
import pytest

from tiklive_assets.capture.janitor import sweep
from tiklive_assets.defs.capture import assets as capture_assets
from tiklive_assets.defs.capture.assets import (
    CAPTURE_ASSETS,
    account_profiles,
    archived_videos,
    discovery_queue,
)
from tiklive_assets.defs.resources import TikLiveApiResource
from tiklive_assets.sandbox import DEFAULT_API_KEY, cover_bytes
from tiklive_assets.storage.keys import raw_key
from tiklive_assets_tests.support.capture import (
    ALICE_ID,
    RAW_PREFIX,
    Rig,
    base_config,
    expected_video,
    failures,
    frozen_sandbox,
    local_store,
    materialized,
    metadata,
    s3_store,
    today,
)

ALL_ASSETS = {"account_profiles", "discovery_queue", "archived_videos", "follow_graph", "post_comments"}


@pytest.fixture
def sb():
    with frozen_sandbox() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Both stores: a local directory and a bucket on a real S3 endpoint (moto server)."""
    if request.param == "local":
        return local_store(tmp_path)
    return s3_store(request.getfixturevalue("s3_bucket"), request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def rig(sb, tmp_path, store) -> Rig:
    return Rig(sb, tmp_path, store)


@pytest.fixture
def local_rig(sb, tmp_path) -> Rig:
    return Rig(sb, tmp_path, local_store(tmp_path))


def full_day_config() -> dict:
    """Every capture step does some work: profile, posts, a hashtag, followers/following, comments + replies."""
    return base_config(
        accounts=[
            {
                "handle": "alice123",
                "follow_max_pages": 1,
                "comments": {"recent_videos": 1, "max_pages": 1, "reply_depth": 1, "max_reply_pages": 1},
            }
        ]
    )


# ------------------------------------------------------------------------------------------------------
# 1 + 2: one raw object per response, one MP4 per live video; a rerun spends nothing and writes nothing
# ------------------------------------------------------------------------------------------------------


def test_a_day_writes_one_raw_object_per_response_and_one_mp4_per_video(rig: Rig):
    rig.config = full_day_config()
    result = rig.run()
    assert result.success, failures(result)
    assert materialized(result) == ALL_ASSETS
    stats = rig.sb.stats()
    assert stats["by_status"] == {"200": stats["api_requests"]}  # no retries, no errors

    # One raw object per API response, all under today's date prefix, none conflicting.
    raw = rig.raw_keys()
    assert len(raw) == stats["api_requests"] == sum(metadata(result, a)["credits_spent"] for a in ALL_ASSETS)
    assert rig.raw_keys(conflicts=True) == []
    assert all(key.startswith(f"{RAW_PREFIX}{today():%Y/%m/%d}/") for key in raw)
    by_endpoint = {}
    for key in raw:
        by_endpoint[key.split("/")[4]] = by_endpoint.get(key.split("/")[4], 0) + 1
    assert by_endpoint == {endpoint.strip("/"): n for endpoint, n in stats["by_endpoint"].items()}
    assert sum(metadata(result, a)["objects_written"] for a in ALL_ASSETS) == len(raw)

    # Every queued id was resolved exactly once and downloaded: MP4 (exact CDN bytes), sidecar, cover.
    queued = rig.queue()
    assert len(queued) == 8 and set(queued.values()) == {"downloaded"}  # 4 from the account + 4 from the hashtag
    assert stats["detail_requests_by_id"] == {aweme_id: 1 for aweme_id in queued}
    rig.assert_archived(queued)
    day = today()
    videos = [k for k in rig.listing(f"videos/dt={day}/") if k.endswith(".mp4")]
    sidecars = [k for k in rig.listing(f"videos/dt={day}/") if k.endswith(".json")]
    covers = list(rig.listing(f"covers/dt={day}/"))
    assert len(videos) == len(sidecars) == len(covers) == len(queued)
    assert sorted(k.removesuffix(".mp4") for k in videos) == sorted(k.removesuffix(".json") for k in sidecars)
    videos_md = metadata(result, archived_videos)
    assert (videos_md["videos_resolved"], videos_md["videos_downloaded"]) == (8, 8)
    assert videos_md["video_bytes"] == sum(len(expected_video(rig.sb, a)) + len(cover_bytes(a)) for a in queued)
    assert videos_md["dead_letters_by_reason"] == {}
    # two CDN fetches per video: the MP4 and its cover, nothing else (no wmplay, no retries)
    assert stats["cdn_requests"] == 2 * len(queued)


def test_rerunning_the_day_spends_nothing_and_writes_nothing(rig: Rig):
    rig.config = full_day_config()
    first = rig.run()
    assert first.success, failures(first)
    stats, listing, queue = rig.sb.stats(), rig.listing(), rig.queue()

    again = rig.run()
    assert again.success, failures(again)
    assert rig.sb.stats() == stats  # not one credit, not one CDN byte
    assert rig.listing() == listing  # same keys, sizes and modification times
    assert rig.queue() == queue
    for asset in ALL_ASSETS:
        md = metadata(again, asset)
        assert (md["credits_spent"], md["objects_written"], md["bytes_written"]) == (0, 0, 0), asset


# ------------------------------------------------------------------------------------------------------
# 3: SIGKILL mid-download leaves no partial MP4; the next run finishes every video
# ------------------------------------------------------------------------------------------------------


def _slow_cdn(sb, delay: float):
    """Make the sandbox CDN drip MP4 chunks (64 KiB every ``delay`` s) so a download is still running when killed."""
    original = sb.handle_cdn
    state = {"delay": delay}

    def drip(chunks):
        for chunk in chunks:
            if state["delay"]:
                time.sleep(state["delay"])
            yield chunk

    def handle_cdn(path, query):
        answer = original(path, query)  # a CdnAnswer: the same answer, its MP4 chunks slowed down
        if answer.content_type == "video/mp4":
            answer = answer._replace(chunks=drip(answer.chunks))
        return answer

    sb.handle_cdn = handle_cdn
    return state


def test_sigkill_mid_download_leaves_no_partial_mp4_and_the_rerun_completes(tmp_path: Path):
    home = tmp_path / "home"
    with frozen_sandbox(video_size=2_000_000) as sb:
        throttle = _slow_cdn(sb, delay=0.05)
        rig = Rig(sb, home, local_store(home))
        rig.config = base_config(capture={"download_concurrency": 2, "api_concurrency": 2, "claim_lease_seconds": 1})
        rig.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKLIVE_", "DAGSTER_"))}
        env.update(
            TIKLIVE_HOME=str(home),
            TIKLIVE_BASE_URL=sb.base_url,
            TIKLIVE_API_KEY=DEFAULT_API_KEY,
            TIKLIVE_CONFIG=str(rig.config_path),
            TIKLIVE_RATELIMIT_URL="memory://",
        )
        code = (
            "import sys; from datetime import date; from tiklive_assets.cli.run import run_day; "
            "sys.exit(run_day(date.fromisoformat(sys.argv[1])))"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, today().isoformat()],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        scratch = home / "tmp"
        try:
            deadline = time.monotonic() + 60
            while not (scratch.exists() and any(scratch.rglob("*.part"))):
                assert proc.poll() is None, "the capture finished before any download was caught in flight"
                assert time.monotonic() < deadline, "no .part file appeared within 60 s"
                time.sleep(0.01)
            time.sleep(0.2)  # some bytes in flight
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        parts = list(scratch.rglob("*.part"))
        mp4_parts = [p for p in parts if p.name.endswith(".mp4.part")]
        assert mp4_parts, "the killed download left its .part file"
        full_sizes = {len(expected_video(sb, a)) for a in rig.queue()}
        assert all(p.stat().st_size < min(full_sizes) for p in mp4_parts)  # it really was cut mid-download
        # No MP4 in the store is partial: every one holds the sandbox's exact bytes ...
        stored = {k.rsplit("/", 1)[1].removesuffix(".mp4"): k for k in rig.listing("videos/") if k.endswith(".mp4")}
        store = rig.store()
        for aweme_id, key in stored.items():
            assert store.get_bytes(key) == expected_video(sb, aweme_id), key
        # ... and each id being downloaded when the process died (resolved, not downloaded) has none.
        in_flight = rig.ids_in("resolved")
        assert len(in_flight - set(stored)) >= len(mp4_parts)
        downloaded_before = rig.ids_in("downloaded")
        rig.assert_archived(downloaded_before)

        # The next run, once the dead worker's leases lapse, finishes every video (fast CDN now).
        throttle["delay"] = 0
        time.sleep(1.1)
        before = sb.stats()
        result = rig.run()
        assert result.success, failures(result)
        queued = rig.queue()
        assert len(queued) == 8 and set(queued.values()) == {"downloaded"}
        rig.assert_archived(queued)
        after = sb.stats()
        # An unfinished id whose detail the killed run had archived today is read back, never bought again (the
        # frozen sandbox's URLs are still valid); only the others cost a credit again, each at most once more.
        spent_again = {
            a: n - before["detail_requests_by_id"].get(a, 0) for a, n in after["detail_requests_by_id"].items()
        }
        assert {a for a, n in spent_again.items() if n} == set(queued) - downloaded_before - in_flight
        assert all(n <= 1 for n in spent_again.values())
        assert after["api_requests"] - before["api_requests"] == len(set(queued) - downloaded_before - in_flight)
        assert all(n <= 2 for n in after["detail_requests_by_id"].values())

        # The janitor sweeps the orphaned .part files.
        with rig.state() as state:
            report = sweep(rig.store(), state, scratch, older_than=timedelta(0))
        assert report.parts_removed == len(parts) and not list(scratch.rglob("*.part"))


# ------------------------------------------------------------------------------------------------------
# 4: a video deleted between discovery and resolution
# ------------------------------------------------------------------------------------------------------


def test_a_deleted_video_costs_one_credit_and_is_dead_lettered(rig: Rig):
    discovered = rig.run(account_profiles, discovery_queue)
    assert discovered.success, failures(discovered)
    queued = rig.ids_in("pending")
    assert len(queued) == 8
    gone = min(queued)
    rig.sb.delete_video(gone)

    result = rig.run(archived_videos)
    assert result.success, failures(result)
    stats = rig.sb.stats()
    assert stats["detail_requests_by_id"] == {aweme_id: 1 for aweme_id in queued}  # exactly one credit for it
    md = metadata(result, archived_videos)
    assert md["dead_letters_by_reason"] == {"video not found (deleted)": 1}
    assert (md["videos_resolved"], md["videos_downloaded"], md["credits_spent"]) == (7, 7, 8)
    with rig.state() as state:
        assert state.state_of(gone) == "dead"
        letter = state.dead_letter(gone)
        assert letter is not None and letter.http_status == 404 and letter.reason == "video not found (deleted)"
        assert state.dead_letters_by_reason() == {"video not found (deleted)": 1}
        assert state.files_for(gone) == []
    assert not [k for k in rig.listing("videos/") if f"/{gone}." in k]
    assert rig.raw_json(raw_key(today(), "post-detail", f"{gone}-http404")) == {"error": "video not found (deleted)"}
    rig.assert_archived(queued - {gone})

    # A rerun (the whole day) spends nothing on it, nor on anything else.
    again = rig.run()
    assert again.success, failures(again)
    assert rig.sb.stats() == stats
    assert rig.queue()[gone] == "dead"


# ------------------------------------------------------------------------------------------------------
# 5: an expired CDN URL is re-resolved once
# ------------------------------------------------------------------------------------------------------


def _expire_first_answer(sb, target: str, then=None) -> None:
    """The first /post-detail/ answer for ``target`` carries URLs signed an hour ago: born expired (CDN 403)."""
    original = sb.corpus.detail_item
    served = []

    def detail_item(post, now=None):
        now = sb.corpus.now() if now is None else now
        if post.aweme_id == target and not served:
            served.append(post.aweme_id)
            answer = original(post, now - 3600)
            if then:
                then()
            return answer
        return original(post, now)

    sb.corpus.detail_item = detail_item


def test_an_expired_cdn_url_is_re_resolved_once(local_rig: Rig):
    rig, sb = local_rig, local_rig.sb
    assert rig.run(account_profiles, discovery_queue).success
    target = min(rig.ids_in("pending"))

    _expire_first_answer(sb, target)
    result = rig.run(archived_videos)
    assert result.success, failures(result)
    stats = sb.stats()
    queued = set(rig.queue())
    assert stats["detail_requests_by_id"] == {a: 2 if a == target else 1 for a in queued}
    md = metadata(result, archived_videos)
    assert md["re_resolved_expired_urls"] == 1
    assert (md["videos_resolved"], md["videos_downloaded"], md["credits_spent"]) == (8, 8, 9)
    assert set(rig.queue().values()) == {"downloaded"}
    rig.assert_archived(queued)
    # The stored sidecar is the answer whose URLs worked; both answers are kept in the raw archive.
    key = raw_key(today(), "post-detail", target)
    assert [k for k in rig.raw_keys(conflicts=True)] == [k for k in rig.listing(key) if k != key]
    assert len(rig.listing(key)) == 2


def test_a_video_gone_when_its_expired_url_is_re_resolved_is_dead_lettered(local_rig: Rig):
    rig, sb = local_rig, local_rig.sb
    assert rig.run(account_profiles, discovery_queue).success
    target = min(rig.ids_in("pending"))
    _expire_first_answer(sb, target, then=lambda: sb.delete_video(target))

    result = rig.run(archived_videos)
    assert result.success, failures(result)
    md = metadata(result, archived_videos)
    assert md["dead_letters_by_reason"] == {"video not found (deleted)": 1} and md["failed_left_in_queue"] == []
    assert md["videos_downloaded"] == 7
    assert sb.stats()["detail_requests_by_id"][target] == 2
    assert rig.queue()[target] == "dead"
    stats = sb.stats()
    assert rig.run().success
    assert sb.stats() == stats  # never tried again


# ------------------------------------------------------------------------------------------------------
# 6: an id found by several sources is resolved once
# ------------------------------------------------------------------------------------------------------


def test_a_video_found_by_several_sources_is_resolved_once(local_rig: Rig):
    rig, sb = local_rig, local_rig.sb
    from tiklive_assets.sandbox.corpus import HASHTAG_IDS

    corpus, now = sb.corpus, sb.corpus.now()
    newest = corpus.visible_posts("alice123", now)[:4]
    feed = corpus.discoverable_posts(now)
    shared = None
    for post in newest:  # one of alice's newest posts that is also on page one of its hashtag's and sound's feeds
        for tag in post.hashtags:
            on_tag = [p.aweme_id for p in feed if tag in p.hashtags][:30]
            on_sound = [p.aweme_id for p in feed if p.music_id == post.music_id][:30]
            if post.aweme_id in on_tag and post.aweme_id in on_sound:
                shared = (post.aweme_id, HASHTAG_IDS[tag], post.music_id)
                break
        if shared:
            break
    assert shared, "the frozen corpus has no post of alice123 on both a hashtag and a sound feed's first page"
    aweme_id, hashtag, music = shared
    rig.config = base_config(
        hashtags=[{"id": hashtag, "max_videos_per_day": 30}], music=[{"id": music, "max_videos_per_day": 30}]
    )

    result = rig.run()
    assert result.success, failures(result)
    # All three listings carried it ...
    for key in (
        raw_key(today(), "user-posts", f"{ALICE_ID}-cursor0"),
        raw_key(today(), "challenge-posts", f"{hashtag}-cursor0"),
        raw_key(today(), "music-posts", f"{music}-cursor0"),
    ):
        assert aweme_id in {str(v["aweme_id"]) for v in rig.raw_json(key)["videos"]}, key
    # ... and it was queued once (by the first source) and resolved with one credit.
    stats = sb.stats()
    assert stats["detail_requests_by_id"][aweme_id] == 1
    assert set(stats["detail_requests_by_id"].values()) == {1}
    queued = rig.queue()
    assert set(stats["detail_requests_by_id"]) == set(queued) and set(queued.values()) == {"downloaded"}
    md = metadata(result, discovery_queue)
    assert md["new_ids"] == len(queued) == sum(md["new_ids_by_source"].values())
    assert md["new_ids_by_source"]["account:alice123"] == 4
    rig.assert_archived([aweme_id])


# ------------------------------------------------------------------------------------------------------
# 7: a drifting paginator
# ------------------------------------------------------------------------------------------------------


def test_a_drifting_paginator_stops_within_its_page_limit_and_is_reported(local_rig: Rig):
    rig, sb = local_rig, local_rig.sb
    sb.set_drift("/challenge-posts/")
    rig.config = base_config(hashtags=[{"id": "1001", "max_pages": 3, "max_videos_per_day": 100}])

    result = rig.run()
    assert result.success, failures(result)
    stats = sb.stats()
    assert 1 <= stats["by_endpoint"]["/challenge-posts/"] <= 3
    md = metadata(result, discovery_queue)
    assert len(md["drift"]) == 1 and md["drift"][0].startswith("hashtag:1001: paginator drift on /challenge-posts/")
    # The other source is captured in full; what the drifting one listed before it stuck is kept too.
    assert md["new_ids_by_source"]["account:alice123"] == 4
    queued = rig.queue()
    assert set(queued.values()) == {"downloaded"} and len(queued) == md["new_ids"]
    alice = {a for a in queued if sb.corpus.author_of(sb.corpus.find_post(a)).handle == "alice123"}
    assert len(alice) >= 4
    rig.assert_archived(queued)
    # The drift is remembered: a rerun does not walk the stuck listing again.
    again = rig.run()
    assert again.success and sb.stats() == stats


# ------------------------------------------------------------------------------------------------------
# 8: the credit budget stops a run cleanly; a rerun with more budget resumes where it stopped
# ------------------------------------------------------------------------------------------------------


def _budget_config(budget: int | None) -> dict:
    # alice123 over two listing pages (30 ids a page): 1 /userid/ + 1 profile + 2 pages + 35 details = 39 credits
    return base_config(
        plan={"requests_per_minute": 100_000, "daily_credit_budget": budget},
        accounts=[
            {
                "handle": "alice123",
                "max_pages": 2,
                "max_videos_per_day": 35,
                "followers": False,
                "following": False,
                "comments": {"recent_videos": 0},
            }
        ],
        hashtags=[],
    )


def test_the_credit_budget_stops_cleanly_and_a_bigger_budget_resumes(sb, tmp_path: Path):
    # The reference: one uninterrupted run.
    reference = Rig(sb, tmp_path / "reference", local_store(tmp_path / "reference"), _budget_config(None))
    assert reference.run().success
    expected_ids, expected_credits = reference.ids_in("downloaded"), sb.stats()["api_requests"]
    assert (len(expected_ids), expected_credits) == (35, 39)
    sb.reset_stats()

    rig = Rig(sb, tmp_path / "budgeted", local_store(tmp_path / "budgeted"))

    # Budget 3 stops discovery after the first listing page; the cursor of page two is persisted.
    rig.config = _budget_config(3)
    first = rig.run()
    assert not first.success
    message = failures(first)["discovery_queue"]
    assert "daily credit budget of 3 reached" in message and "3 credits spent" in message
    assert sb.stats()["api_requests"] == 3  # never one over
    with rig.state() as state:
        cursor = state.get_cursor(f"user-posts:{ALICE_ID}:{today()}")
    assert cursor is not None and cursor.pages == 1 and cursor.value not in (None, "0")

    # Budget 20 resumes the listing at that cursor, then stops in the middle of the downloads.
    rig.config = _budget_config(20)
    second = rig.run()
    assert not second.success
    message = failures(second)["archived_videos"]
    assert "daily credit budget of 20 reached" in message and "20 credits spent" in message
    stats = sb.stats()
    assert stats["api_requests"] == 20
    assert stats["by_endpoint"]["/user-posts/"] == 2  # page one was not fetched again
    assert rig.raw_keys() and raw_key(today(), "user-posts", f"{ALICE_ID}-cursor{cursor.value}") in rig.raw_keys()
    assert len(rig.ids_in("downloaded")) == 20 - 4
    rig.assert_archived(rig.ids_in("downloaded"))

    # Unlimited: finishes; the end state equals the uninterrupted run's, and no id was resolved twice.
    rig.config = _budget_config(None)
    third = rig.run()
    assert third.success, failures(third)
    stats = sb.stats()
    assert stats["api_requests"] == expected_credits
    assert set(stats["detail_requests_by_id"].values()) == {1}
    assert rig.ids_in("downloaded") == expected_ids == set(rig.queue())
    rig.assert_archived(expected_ids)


# ------------------------------------------------------------------------------------------------------
# 9: different bytes at an existing raw key are never overwritten
# ------------------------------------------------------------------------------------------------------


def test_different_bytes_at_a_raw_key_are_kept_beside_it_never_overwritten(rig: Rig):
    key = raw_key(today(), "userinfo-by-id", ALICE_ID)
    original = gzip.compress(b'{"user": {"id": "someone else"}}', mtime=0)
    rig.store().put_bytes(key, original, content_type="application/json", content_encoding="gzip")

    result = rig.run(account_profiles)
    assert result.success, failures(result)
    store = rig.store()
    assert store.get_bytes(key) == original
    beside = [k for k in rig.listing(key) if k != key]
    assert len(beside) == 1 and beside[0].startswith(f"{key}.conflict-")
    fetched = rig.raw_json(beside[0])
    assert fetched["user"]["id"] == ALICE_ID and fetched["user"]["uniqueId"] == "alice123"
    md = metadata(result, account_profiles)
    assert (md["objects_kept_beside"], md["objects_written"], md["credits_spent"]) == (1, 1, 2)  # /userid/ + profile


# ------------------------------------------------------------------------------------------------------
# 10: a past partition
# ------------------------------------------------------------------------------------------------------


def test_a_past_day_never_captured_fails_and_one_already_archived_spends_nothing(local_rig: Rig, monkeypatch):
    rig, sb = local_rig, local_rig.sb
    yesterday = today() - timedelta(days=1)
    result = rig.run(partition=yesterday)
    assert not result.success
    message = failures(result)["account_profiles"]
    assert f"cannot capture {yesterday}" in message and "only serves the present" in message
    assert sb.stats()["api_requests"] == 0
    assert not rig.listing()

    # Capture today, then let a day pass: today's partition is now in the past and already archived.
    assert rig.run().success
    stats, listing = sb.stats(), rig.listing()
    real_datetime = capture_assets.datetime

    class Tomorrow(real_datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.now(tz) + timedelta(days=1)

    monkeypatch.setattr(capture_assets, "datetime", Tomorrow)
    again = rig.run(partition=today())
    assert again.success, failures(again)
    for asset in ALL_ASSETS:
        md = metadata(again, asset)
        assert md == {"status": "already archived, unchanged", "credits_spent": 0}, asset
    assert sb.stats() == stats
    assert rig.listing() == listing


def test_budget_stops_anywhere_in_the_day_and_reruns_never_fetch_a_page_twice(sb, tmp_path: Path):
    """Follow graph and comments resume too: a day cut by the budget at every few credits costs what one run costs."""

    def config(budget: int | None) -> dict:
        return base_config(
            plan={"requests_per_minute": 100_000, "daily_credit_budget": budget},
            # bob: 109 followers (3 pages), and 59 comments on his second newest video (2 pages)
            accounts=[
                {
                    "handle": "bob",
                    "max_videos_per_day": 2,
                    "follow_max_pages": 3,
                    "comments": {"recent_videos": 2, "max_pages": 2, "reply_depth": 1, "max_reply_pages": 1},
                }
            ],
            hashtags=[],
        )

    reference = Rig(sb, tmp_path / "reference", local_store(tmp_path / "reference"), config(None))
    assert reference.run().success
    expected = sb.stats()
    assert expected["by_endpoint"]["/user-followers/"] == 3 and expected["by_endpoint"]["/post-comments/"] == 3
    sb.reset_stats()

    rig = Rig(sb, tmp_path / "budgeted", local_store(tmp_path / "budgeted"))
    budget, stops = 3, 0
    while True:
        rig.config = config(budget)
        result = rig.run()
        assert sb.stats()["api_requests"] <= budget  # never one credit over
        if result.success:
            break
        stops += 1
        assert all("daily credit budget" in m and f"{budget} credits spent" in m for m in failures(result).values())
        budget += 2
    assert stops >= 5
    stats = sb.stats()
    assert stats["by_endpoint"] == expected["by_endpoint"]
    assert stats["api_requests"] == expected["api_requests"] == len(rig.raw_keys())  # no page fetched twice
    assert rig.raw_keys(conflicts=True) == []
    assert rig.ids_in("downloaded") == reference.ids_in("downloaded") == set(rig.queue())
    assert {k.split("/", 4)[4] for k in rig.raw_keys()} == {k.split("/", 4)[4] for k in reference.raw_keys()}


# ------------------------------------------------------------------------------------------------------
# review fixes: ids that keep failing are dead-lettered; two searches of one keyword keep their own cursors
# ------------------------------------------------------------------------------------------------------


def test_an_id_that_keeps_failing_is_dead_lettered_after_max_attempts(local_rig: Rig):
    local_rig.config = base_config(
        capture={"download_concurrency": 2, "api_concurrency": 2, "max_attempts": 2},
        hashtags=[],
        limits={"max_pages": 1, "max_videos_per_day": 1},
    )
    local_rig.sb.faults.cdn_ttl_seconds = -60  # every signed URL is born expired: each attempt fails
    first = local_rig.run()
    assert first.success, failures(first)
    [aweme_id] = local_rig.ids_in("resolved")  # attempt 1 failed (2 credits: resolve + one re-resolve); kept
    assert local_rig.sb.stats()["detail_requests_by_id"] == {aweme_id: 2}
    second = local_rig.run(archived_videos)
    assert second.success, failures(second)
    assert local_rig.queue()[aweme_id] == "dead"  # attempt 2 = max_attempts: dead-lettered, never paid for again
    with local_rig.state() as state:
        assert state.dead_letter(aweme_id).reason.startswith("gave up after 2 attempts")
    third = local_rig.run(archived_videos)
    # the second run read today's archived detail back (1 re-resolve after its expired URL, not 2): 3 in all
    assert third.success and local_rig.sb.stats()["detail_requests_by_id"] == {aweme_id: 3}


def test_searches_of_one_keyword_with_different_filters_keep_separate_cursors(local_rig: Rig):
    local_rig.config = base_config(
        accounts=[],
        hashtags=[],
        keywords=[{"keyword": "cooking", "publish_time": 1}, {"keyword": "cooking", "sort_by": 1}],
    )
    result = local_rig.run(discovery_queue)
    assert result.success, failures(result)
    assert local_rig.sb.stats()["by_endpoint"]["/search-video/"] == 2
    assert metadata(result, discovery_queue)["walks_already_complete"] == 0


def test_a_systemic_failure_stops_the_run_and_blames_no_id(local_rig: Rig):
    discovered = local_rig.run(account_profiles, discovery_queue)
    assert discovered.success, failures(discovered)
    queued = local_rig.ids_in("pending")
    local_rig.config["capture"]["max_attempts"] = 1  # a per-id failure would dead-letter at once
    resources = local_rig.resources()
    resources["tiklive_api"] = TikLiveApiResource(
        api_key="revoked-key", base_url=local_rig.sb.base_url, ratelimit_url="memory://"
    )
    local_rig.write_config()
    result = dagster.materialize(
        CAPTURE_ASSETS,
        selection=[archived_videos.key],
        partition_key=today().isoformat(),
        resources=resources,
        instance=local_rig.instance,
        raise_on_error=False,
    )
    assert not result.success
    message = failures(result)["archived_videos"]
    assert "TIKLIVE_API_KEY" in message and "No id was blamed" in message
    with local_rig.state() as state:
        assert state.queue_depth()["dead"] == 0
        assert {item.aweme_id: item.attempts for item in state.pending(100)} == {i: 0 for i in queued}  # refunded
    again = local_rig.run(archived_videos)  # the key is fixed: everything is captured
    assert again.success, failures(again)
    assert local_rig.ids_in("downloaded") == queued

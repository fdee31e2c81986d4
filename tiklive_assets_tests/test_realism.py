"""Capture against the answers real APIs give, not the documented picture of them.

The sandbox's realism switch serves every variant real responses of this API family show (ids under
``video_id``/``id`` and as integers, string or null counters, ``hasMore`` 1/0, integer cursors, ``bioLink``
objects, the ``{code, msg, data}`` envelope, photo posts, upstream errors and truncated bodies inside HTTP 200),
and a credit balance that runs out the way TikLiveAPI's does (HTTP 200 ``{"message": "Insufficient balance..."}``).
Each test fails without the fix it names.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS, account_profiles, archived_videos, discovery_queue
from tiklive_assets.defs.warehouse.assets import WAREHOUSE_ASSETS
from tiklive_assets.defs.warehouse.resources import WarehouseResource
from tiklive_assets.sandbox import DEFAULT_API_KEY, cover_bytes
from tiklive_assets.sandbox.corpus import music_bytes
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore
from tiklive_assets.tikliveapi.client import TikLiveClient, classify_body
from tiklive_assets.tikliveapi.errors import BadResponse, BalanceExhausted
from tiklive_assets.tikliveapi.pagination import CommentPages, VideoPages
from tiklive_assets_tests.support.capture import (
    ALICE_ID,
    Rig,
    base_config,
    failures,
    frozen_sandbox,
    local_store,
    materialized,
    metadata,
    today,
)

UPSTREAM = {"code": -1, "msg": "upstream busy"}


def _client(sb, archive=None, **kwargs) -> TikLiveClient:
    return TikLiveClient(
        DEFAULT_API_KEY, sb.base_url, on_response=archive, backoff_initial=0.01, backoff_max=0.05, **kwargs
    )


def _detail_objects(rig: Rig) -> dict[str, list[str]]:
    """aweme_id -> every post-detail object archived for it (canonical, kept beside, error slugs)."""
    out: dict[str, list[str]] = {}
    for key in rig.listing("tiklive-raw/"):
        if "/post-detail/" in key:
            out.setdefault(key.rsplit("/", 1)[1].split(".")[0].split("-")[0], []).append(key)
    return out


# -- answers that only look like data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'{"message": "Insufficient balance. Please top up."}', "balance"),
        (b'{"code": -1, "msg": "upstream timeout"}', "upstream"),
        (b'{"code": "10001", "message": "risk control"}', "upstream"),
        (b'{"videos": [{"aweme_id": "1"}], "cur', "notjson"),
        (b"<html><body>504 Gateway Time-out</body></html>", "notjson"),
        (b'{"code": 0, "msg": "success", "data": {"videos": []}}', None),
        (b'{"aweme_id": "7", "title": "the balance of power"}', None),
    ],
)
def test_a_200_body_is_classified_before_anyone_trusts_it(body, kind):
    assert classify_body(body)[0] == kind


@pytest.mark.parametrize(
    ("endpoint", "body", "kind"),
    [
        ("/userid/", b'{"id": null}', "invalid"),
        ("/userid/", b'{"id": 107955}', None),
        ("/post-detail/", b'{"title": "no id"}', "invalid"),
        ("/post-detail/", b'{"video_id": "7"}', None),
        ("/userinfo-by-id/", b'{"user": "x"}', "invalid"),
        ("/userinfo-by-id/", b'{"code": 0, "msg": "success", "data": {"user": {"id": "1"}}}', None),
    ],
)
def test_an_answer_without_what_its_endpoint_must_hold_is_not_data(endpoint, body, kind):
    assert classify_body(body, endpoint)[0] == kind


def test_an_upstream_error_inside_a_200_is_retried_and_archived_under_an_error_slug(tmp_path: Path):
    with frozen_sandbox() as sb:
        archive = RawArchive(LocalStore(tmp_path), today())
        sb.fail_next(1, 200, body=UPSTREAM, endpoint="/userid/")
        client = _client(sb, archive)
        assert client.userid("alice123").json() == {"id": ALICE_ID}
    keys = sorted(info.key for info in LocalStore(tmp_path).list("tiklive-raw/"))
    assert [k.rsplit("/", 1)[1] for k in keys] == ["alice123-error-upstream.json.gz", "alice123.json.gz"]
    assert client.credits.total == 2 and client.credits.not_data["upstream"] == 1
    # the canonical key holds data, the error object the upstream's own words
    assert json.loads(gzip.decompress(LocalStore(tmp_path).get_bytes(keys[1]))) == {"id": ALICE_ID}
    assert json.loads(gzip.decompress(LocalStore(tmp_path).get_bytes(keys[0]))) == UPSTREAM


def test_a_truncated_comment_page_is_retried_and_the_walk_completes(tmp_path: Path):
    with frozen_sandbox() as sb:
        aweme_id = next(i for i in sb.corpus.post_ids_for("alice123") if len(sb.corpus.comments(i)) > 25)
        archive = RawArchive(LocalStore(tmp_path), today())
        client = _client(sb, archive)
        expected = [c["id"] for c in CommentPages(lambda c: client.post_comments(aweme_id, "alice123", c)).items()]
        sb.fail_next(1, 200, body=b'{"comments": [{"id": "1", "te', endpoint="/post-comments/")
        again = [c["id"] for c in CommentPages(lambda c: client.post_comments(aweme_id, "alice123", c)).items()]
    assert again == expected and expected
    assert any(k.endswith("-cursor0-error-notjson.json.gz") for k in (i.key for i in LocalStore(tmp_path).list("")))


def test_a_body_unreadable_through_every_retry_is_a_bad_response_of_that_request_only():
    with frozen_sandbox() as sb:
        sb.fail_next(5, 200, body=b"<html>502</html>", endpoint="/userid/")
        client = _client(sb, max_attempts=3)
        with pytest.raises(BadResponse, match="not JSON"):
            client.userid("alice123")
        assert client.credits.total == 3  # bounded: max_attempts, each counted


def test_a_balance_answer_stops_at_once_and_is_never_archived_as_data(tmp_path: Path):
    with frozen_sandbox(credit_balance=1) as sb:
        archive = RawArchive(LocalStore(tmp_path), today())
        client = _client(sb, archive)
        client.userid("alice123")
        with pytest.raises(BalanceExhausted, match="top up"):
            client.userinfo_by_id(ALICE_ID)
        assert sb.stats()["api_requests"] == 2  # no retry: every retry would spend and be refused again
    names = sorted(
        info.key.rsplit("/", 2)[1] + "/" + info.key.rsplit("/", 1)[1]
        for info in LocalStore(tmp_path).list("tiklive-raw/")
    )
    assert names == ["userid/alice123.json.gz", f"userinfo-by-id/{ALICE_ID}-error-balance.json.gz"]


def test_the_balance_running_out_mid_day_stops_the_run_blames_no_video_and_a_top_up_converges(tmp_path: Path):
    with frozen_sandbox(credit_balance=8) as sb:
        rig = Rig(
            sb, tmp_path / "home", local_store(tmp_path), base_config(limits={"max_pages": 1, "max_videos_per_day": 10})
        )
        first = rig.run()
        assert not first.success
        problems = failures(first)
        assert any("credit balance is exhausted" in text and "Top" in text for text in problems.values()), problems
        spent = sb.stats()["api_requests"]
        assert spent <= 8 + 4  # at most one refused answer per API worker in flight, then the run stops
        queue = rig.queue()
        assert "dead" not in queue.values()  # nothing live was dead-lettered because of the balance
        with rig.state() as state:
            assert state.dead_letters_by_reason() == {}
        for keys in _detail_objects(rig).values():
            for key in keys:  # every canonical post-detail object is a video, never the balance message
                body = rig.raw_json(key)
                assert ("error-balance" in key) == ("message" in body), key
        sb.top_up(None)
        second = rig.run()
        assert second.success, failures(second)
        assert set(rig.queue().values()) == {"downloaded"}
        resolved_twice = {i: [k for k in keys if "error-" not in k] for i, keys in _detail_objects(rig).items()}
        assert all(len(keys) == 1 for keys in resolved_twice.values()), resolved_twice


def test_userid_answering_without_an_id_is_never_cached_nor_archived_as_the_answer(tmp_path: Path):
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path))
        sb.fail_next(100, 200, body={"id": None}, endpoint="/userid/")
        first = rig.run(account_profiles)  # one account's odd answer never fails the step
        assert first.success, failures(first)
        assert "holds no numeric id" in metadata(first, account_profiles)["left_for_next_run"][0]
        assert sb.stats()["by_endpoint"]["/userid/"] == 1  # never retried: a retry is billed for the same answer
        with rig.state() as state:
            assert state.cached_user_id("alice123") is None
        sb.faults.fail_queue.clear()
        assert rig.run(account_profiles).success
        with rig.state() as state:
            assert state.cached_user_id("alice123") == ALICE_ID
    keys = [k.rsplit("/", 1)[1] for k in rig.listing("tiklive-raw/") if "/userid/" in k]
    assert "alice123.json.gz" in keys and all(
        k.startswith("alice123-error-invalid") or k == "alice123.json.gz" for k in keys
    )
    assert rig.raw_json(next(k for k in rig.listing("tiklive-raw/") if k.endswith("userid/alice123.json.gz"))) == {
        "id": ALICE_ID
    }


# -- listings: ids under other names, items without any ------------------------------------------------------


def test_listing_items_under_video_id_or_id_or_as_integers_are_all_queued(tmp_path: Path):
    config = base_config(limits={"max_pages": 3, "max_videos_per_day": 500})
    with frozen_sandbox() as clean:
        clean_rig = Rig(clean, tmp_path / "clean", local_store(tmp_path / "c"), config)
        assert clean_rig.run(account_profiles, discovery_queue).success
        expected = set(clean_rig.queue())
    with frozen_sandbox(realism=True) as real:
        real_rig = Rig(real, tmp_path / "real", local_store(tmp_path / "r"), config)
        result = real_rig.run(account_profiles, discovery_queue)
        assert result.success, failures(result)
        names = {real.realism.variant_of("id-name", i, 6) for i in expected}
    assert {0, 1, 2} <= names  # the corpus really served video_id, integer aweme_id and id
    assert set(real_rig.queue()) == expected


def test_an_item_without_any_id_is_archived_counted_and_skipped(tmp_path: Path):
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path), base_config(hashtags=[]))
        sb.fail_next(
            1,
            200,
            endpoint="/user-posts/",
            body={
                "videos": [
                    {"title": "no id at all", "play_count": "12"},
                    {"video_id": "7000000000000000001", "title": "x"},
                ],
                "cursor": "0",
                "hasMore": 0,
            },
        )
        result = rig.run(account_profiles, discovery_queue)
        assert result.success, failures(result)
        meta = metadata(result, discovery_queue)
    assert meta["items_without_id"] == 1 and meta["new_ids"] == 1
    assert set(rig.queue()) == {"7000000000000000001"}


def test_pages_read_hasmore_as_1_or_0_and_integer_cursors(tmp_path: Path):
    with frozen_sandbox(realism=True) as sb:
        client = _client(sb)
        pages = list(VideoPages(lambda c: client.search_video("cats", c), max_pages=5).pages())
        raw = json.loads(pages[0].response.body)
    assert raw["hasMore"] in (0, 1) and isinstance(raw["cursor"], int)
    assert len(pages) > 1 and all(p.items for p in pages)
    assert pages[0].has_more is True and pages[1].cursor == str(raw["cursor"])


# -- a whole day against every variant -------------------------------------------------------------------------


def test_a_realistic_day_captures_every_live_video_and_photo_post_exactly_once(tmp_path: Path):
    config = base_config(
        limits={"max_pages": 2, "max_videos_per_day": 40},
        accounts=[
            {
                "handle": "alice123",
                "followers": True,
                "following": True,
                "follow_max_pages": 2,
                "comments": {"recent_videos": 3, "max_pages": 2, "reply_depth": 1},
            }
        ],
        hashtags=["1001"],
        music=["9001"],
        keywords=[{"keyword": "cats", "sort_by": 2}],
    )
    with frozen_sandbox(realism=True) as sb:
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path), config)
        result = rig.run()
        assert result.success, failures(result)
        assert materialized(result) >= {a.key.to_user_string() for a in CAPTURE_ASSETS}
        queue = rig.queue()
        photos = {i for i in queue if sb.realism.is_photo(i)}
        meta = metadata(result, archived_videos)
        store = rig.store()
        with rig.state() as state:
            files = {i: {f.kind: f for f in state.files_for(i)} for i in queue}
        music_of = {i: sb.corpus.find_post(i).music_id for i in photos}
        n_images = {i: sb.realism.image_count(i) for i in photos}
    assert set(queue.values()) == {"downloaded"}, queue
    assert photos and meta["photo_posts_downloaded"] == len(photos)
    for aweme_id, kinds in files.items():
        if aweme_id in photos:  # images + sound, never an .mp4 holding the mp3
            assert set(kinds) == {
                "cover",
                "sidecar",
                "sound",
                *(f"image-{n}" for n in range(1, n_images[aweme_id] + 1)),
            }
            assert kinds["sound"].storage_key.endswith(f"/{aweme_id}.mp3")
            assert store.get_bytes(kinds["sound"].storage_key) == music_bytes(music_of[aweme_id])
            assert store.get_bytes(kinds["image-2"].storage_key) == cover_bytes(f"{aweme_id}x2")
            assert kinds["image-1"].storage_key.endswith(f"/{aweme_id}-1.jpg")
        else:
            assert set(kinds) == {"video", "cover", "sidecar"}
    assert not any(key.endswith(".mp4") and key.rsplit("/", 1)[1][:-4] in photos for key in rig.listing("videos/"))
    for keys in _detail_objects(rig).values():  # exactly one capture of each, whatever it cost
        assert len([k for k in keys if "-error-" not in k]) == 1, keys
    errors = [k for k in rig.listing("tiklive-raw/") if "-error-" in k]
    assert any("-error-upstream" in k for k in errors) and any("-error-notjson" in k for k in errors)

    # ... and the warehouse loads that day with no step failed, from the archive alone
    loaded = dg.materialize(
        WAREHOUSE_ASSETS,
        partition_key=today().isoformat(),
        instance=rig.instance,
        raise_on_error=False,
        resources={**rig.resources(), "warehouse": WarehouseResource(url=str(rig.home / "warehouse.duckdb"))},
    )
    assert loaded.success, failures(loaded)
    with duckdb.connect(str(rig.home / "warehouse.duckdb"), read_only=True) as db:
        bio = db.execute("SELECT bio_link FROM users WHERE user_id = ?", [ALICE_ID]).fetchone()[0]
        kinds = dict(
            db.execute("SELECT kind, count(*) FROM posts WHERE storage_key IS NOT NULL GROUP BY kind").fetchall()
        )
        captured = {r[0] for r in db.execute("SELECT aweme_id FROM posts WHERE storage_key IS NOT NULL").fetchall()}
        quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    profile = rig.raw_json(
        next(k for k in rig.listing("tiklive-raw/") if k.endswith(f"userinfo-by-id/{ALICE_ID}.json.gz"))
    )
    assert profile["user"]["bioLink"] == {"link": "example.com/alice123", "risk": 3}  # served as an object ...
    assert bio == "example.com/alice123"  # ... kept as its link text
    assert kinds == {"photo": len(photos), "video": len(queue) - len(photos)}
    assert captured == set(queue) and quarantined == 0


# -- the state database learns the photo-post file kinds -------------------------------------------------------


def test_a_state_database_from_before_photo_posts_records_images_and_sound(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as conn:  # the table as earlier versions created it
        conn.execute(
            "CREATE TABLE archived_files (aweme_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN "
            "('video', 'cover', 'sidecar')), storage_key TEXT NOT NULL, sha256 TEXT, bytes BIGINT, "
            "ingest_date TEXT, recorded_at TEXT NOT NULL, PRIMARY KEY (aweme_id, kind))"
        )
        conn.execute(
            "INSERT INTO archived_files VALUES ('1', 'video', 'videos/x/1.mp4', 'ab', 3, '2026-01-01', "
            "'2026-01-01T00:00:00+00:00')"
        )
    with StateDB.from_url(f"sqlite:///{path}") as state:
        state.record_file("2", "image-1", "videos/x/2-1.jpg", "cd", 4, today())
        state.record_file("2", "sound", "videos/x/2.mp3", "ef", 5, today())
        assert {f.kind for f in state.files_for("2")} == {"image-1", "sound"}
        assert [f.storage_key for f in state.files_for("1")] == ["videos/x/1.mp4"]
        with pytest.raises(ValueError):
            state.record_file("2", "poster", "x", None, None, today())


def test_a_comment_page_unreadable_through_every_retry_fails_only_its_walk(tmp_path: Path):
    from tiklive_assets.defs.capture.assets import post_comments

    config = base_config(
        accounts=[
            {
                "handle": "alice123",
                "followers": False,
                "following": False,
                "comments": {"recent_videos": 2, "max_pages": 1, "reply_depth": 0},
            }
        ]
    )
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path), config)
        assert rig.run(account_profiles, discovery_queue).success
        sb.fail_next(5, 200, body=b'{"comments": [{"id": "1", "te', endpoint="/post-comments/")  # one walk's 5 attempts
        first = rig.run(post_comments)
        assert first.success, failures(first)
        left = metadata(first, post_comments)["left_for_next_run"]
        assert len(left) == 1 and "not JSON" in left[0]
        assert metadata(first, post_comments)["pages"] == 1  # the other video's walk went on
        second = rig.run(post_comments)  # the walk left behind is taken again; the finished one is not
        assert second.success and metadata(second, post_comments)["pages"] == 1
        assert metadata(second, post_comments)["left_for_next_run"] == []


def test_a_listing_page_unreadable_through_every_retry_leaves_only_its_walk_for_the_next_run(tmp_path: Path):
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path))  # alice's posts and hashtag 1001
        sb.fail_next(5, 200, body=b"<html>502 Bad Gateway</html>", endpoint="/challenge-posts/")
        first = rig.run(account_profiles, discovery_queue)
        assert first.success, failures(first)
        meta = metadata(first, discovery_queue)
        assert meta["new_ids_by_source"] == {"account:alice123": 4}
        assert len(meta["left_for_next_run"]) == 1 and "hashtag:1001" in meta["left_for_next_run"][0]
        second = rig.run(discovery_queue)
        assert second.success and metadata(second, discovery_queue)["new_ids_by_source"] == {"hashtag:1001": 4}
        assert metadata(second, discovery_queue)["walks_already_complete"] == 1


def test_errors_a_retry_cannot_fix_are_never_retried_by_dagster(tmp_path: Path):
    with frozen_sandbox(api_key="another-key") as sb:  # the rig sends sandbox-key: rejected, 401
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path))
        result = rig.run(account_profiles)
        assert not result.success and "AuthError" in " ".join(failures(result).values())
        restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
        assert restarts == [] and sb.stats()["api_requests"] == 1  # one refused request, no second attempt


def test_a_video_gone_said_inside_a_200_is_a_dead_letter_bought_once(tmp_path: Path):
    gone = {"code": -1, "msg": "Video not found or has been deleted"}
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path / "home", local_store(tmp_path), base_config(hashtags=[]))
        assert rig.run(account_profiles, discovery_queue).success
        sb.fail_next(1, 200, body=gone, endpoint="/post-detail/")
        result = rig.run(archived_videos)
        assert result.success, failures(result)
        dead = {i for i, s in rig.queue().items() if s == "dead"}
        assert len(dead) == 1 and sum(sb.stats()["detail_requests_by_id"].values()) == 4  # no retry of the answer
        (aweme_id,) = dead
        assert rig.run(archived_videos).success and sb.stats()["detail_requests_by_id"][aweme_id] == 1
        loaded = dg.materialize(
            WAREHOUSE_ASSETS,
            partition_key=today().isoformat(),
            instance=rig.instance,
            raise_on_error=False,
            resources={**rig.resources(), "warehouse": WarehouseResource(url=str(rig.home / "warehouse.duckdb"))},
        )
        assert loaded.success, failures(loaded)
    with duckdb.connect(str(rig.home / "warehouse.duckdb"), read_only=True) as db:
        rows = db.execute("SELECT aweme_id, reason, http_status FROM dead_letters").fetchall()
    assert rows == [(aweme_id, gone["msg"], 200)]
    assert any(k.endswith(f"post-detail/{aweme_id}-error-gone.json.gz") for k in rig.listing("tiklive-raw/"))


def test_a_cursor_that_is_not_a_number_ends_the_walk_before_paying_for_a_page_it_could_not_keep(tmp_path: Path):
    with frozen_sandbox() as sb:
        rig = Rig(
            sb,
            tmp_path / "home",
            local_store(tmp_path),
            base_config(hashtags=[], limits={"max_pages": 3, "max_videos_per_day": 100}),
        )
        sb.fail_next(
            1,
            200,
            endpoint="/user-posts/",
            body={
                "videos": [{"aweme_id": "7000000000000000001", "author": {"unique_id": "alice123"}}],
                "cursor": "eyJvZmZzZXQiOjMwfQ",
                "hasMore": True,
            },
        )
        result = rig.run(account_profiles, discovery_queue)
        assert result.success, failures(result)
        meta = metadata(result, discovery_queue)
    assert meta["pages"] == 1 and "not a number" in meta["drift"][0]  # reported as drift, the page's id queued
    assert set(rig.queue()) == {"7000000000000000001"}
    assert sb.stats()["by_endpoint"]["/user-posts/"] == 1  # the page it could not key was never bought

"""Compliance: GDPR erasure over real stores and a real DuckDB warehouse, tiered retention, legal holds.

The archive is fabricated with the sandbox corpus (``support.archive.write_archive_day``) plus a few objects in
which the erased user is one item among many (a hashtag listing, someone else's following list, a comment page,
Research API pages), so both whole-object deletion and in-place redaction are exercised.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import zlib
from datetime import date, timedelta
from pathlib import Path

import boto3
import pytest

from tiklive_assets.compliance import (
    HoldSet,
    LegalHoldError,
    LegalHolds,
    RetentionPolicy,
    apply_lifecycle,
    apply_retention,
    erase_user,
    erasure_log,
    find_objects_for_user,
    lifecycle_rules,
    unheld_day_prefixes,
)
from tiklive_assets.compliance.legal_hold import Hold
from tiklive_assets.research.warehouse import load_research_warehouse
from tiklive_assets.sandbox import Corpus
from tiklive_assets.state import StateDB
from tiklive_assets.storage import (
    LocalStore,
    ObjectStore,
    S3Store,
    make_s3_client,
    raw_key,
    slug_page,
)
from tiklive_assets.warehouse import TABLE_NAMES, load_days, open_warehouse
from tiklive_assets_tests.support.archive import write_archive_day

DAYS = [date(2026, 5, 27), date(2026, 5, 28)]
CORPUS = Corpus(seed=7)
ALICE = CORPUS.account("alice123")
BOB = CORPUS.account("bob")


def _put(store: ObjectStore, key: str, body: object) -> None:
    store.put_bytes(
        key, gzip.compress(json.dumps(body).encode(), mtime=0), content_type="application/json", content_encoding="gzip"
    )


def _read(store: ObjectStore, key: str) -> object:
    return json.loads(zlib.decompress(store.get_bytes(key), 31))


def build_archive(store: ObjectStore, days: list[date] = DAYS) -> dict[str, str]:
    """The fabricated days plus mixed objects; returns the keys of the mixed objects by role."""
    for day in days:
        write_archive_day(store, day, CORPUS)
    day = days[-1]
    now = CORPUS.now()
    alice_posts = CORPUS.visible_posts(ALICE, now)[:3]
    bob_posts = CORPUS.visible_posts(BOB, now)[:3]
    _, followers = CORPUS.follow_list(ALICE, "followers", now)
    keys = {
        "hashtag": raw_key(day, "challenge-posts", slug_page("1234", "cursor", 0)),
        "following": raw_key(day, "user-following", slug_page(ALICE.id, "time", 99)),
        "comments": raw_key(day, "post-comments", slug_page(alice_posts[0].aweme_id, "cursor", 99)),
        "research_videos": raw_key(
            day, "video-query", "20260501-20260507-q0123456789-g1-cursor0", prefix="research-raw"
        ),
        "research_bob": raw_key(day, "user-info", "bob", prefix="research-raw"),
        "research_alice_followers": raw_key(day, "user-followers", "alice123-cursor0", prefix="research-raw"),
        "research_bob_comments": raw_key(day, "video-comments", "2-cursor0", prefix="research-raw"),
        "research_alice_comments": raw_key(day, "video-comments", "1-cursor0", prefix="research-raw"),
    }
    _put(
        store,
        keys["hashtag"],
        {
            "videos": [CORPUS.listing_item(p, now) for p in alice_posts[:2] + bob_posts[:2]],
            "cursor": "4",
            "hasMore": False,
        },
    )
    _put(
        store,
        keys["following"],
        {
            "followings": followers[:3]
            + [
                {
                    "id": BOB.id,
                    "unique_id": "bob",
                    "nickname": "Bob",
                    "sec_uid": "x",
                    "follower_count": 5,
                    "aweme_count": 3,
                },
                # someone else whose nickname is bob's handle: not bob, kept
                {
                    "id": "7199999999999999999",
                    "unique_id": "bobs.twin",
                    "nickname": "bob",
                    "follower_count": 1,
                    "aweme_count": 0,
                },
            ],
            "time": 1,
            "hasMore": False,
        },
    )
    _put(
        store,
        keys["comments"],
        {
            "comments": [
                {
                    "id": "9100000000000000001",
                    "text": "first",
                    "digg_count": 1,
                    "reply_total": 0,
                    "create_time": 1,
                    "aweme_id": alice_posts[0].aweme_id,
                    "user": {"id": BOB.id, "unique_id": "bob", "nickname": "Bob"},
                },
                {
                    "id": "9100000000000000002",
                    "text": "@bob you were first",
                    "digg_count": 2,
                    "reply_total": 0,
                    "create_time": 2,
                    "aweme_id": alice_posts[0].aweme_id,
                    "user": {"id": followers[0]["id"], "unique_id": followers[0]["unique_id"], "nickname": "Sam"},
                },
            ],
            "cursor": "2",
            "hasMore": False,
        },
    )
    video = {
        "create_time": 1777000000,
        "region_code": "US",
        "view_count": 10,
        "like_count": 1,
        "comment_count": 0,
        "share_count": 0,
        "music_id": "1",
        "hashtag_names": [],
        "video_description": "v",
    }
    _put(
        store,
        keys["research_videos"],
        {
            "data": {
                "videos": [{**video, "id": 1, "username": "alice123"}, {**video, "id": 2, "username": "bob"}],
                "cursor": 2,
                "has_more": False,
                "search_id": "s",
            },
            "error": {"code": "ok"},
        },
    )
    _put(store, keys["research_bob"], {"data": {"display_name": "Bob", "follower_count": 3}, "error": {"code": "ok"}})
    for video_id, key in ((2, "research_bob_comments"), (1, "research_alice_comments")):  # no commenter is named
        _put(
            store,
            keys[key],
            {
                "data": {
                    "comments": [
                        {
                            "id": 7300000000000000000 + video_id,
                            "video_id": video_id,
                            "text": "nice",
                            "like_count": 1,
                            "reply_count": 0,
                            "parent_comment_id": video_id,
                            "create_time": 1777000100,
                        }
                    ],
                    "cursor": 1,
                    "has_more": False,
                },
                "error": {"code": "ok"},
            },
        )
    _put(
        store,
        keys["research_alice_followers"],
        {
            "data": {
                "user_followers": [
                    {"display_name": "Bob", "username": "bob"},
                    {"display_name": "Zed", "username": "zed"},
                ],
                "cursor": 2,
                "has_more": False,
            },
            "error": {"code": "ok"},
        },
    )
    return keys


def build_warehouse(store: ObjectStore, path: Path, days: list[date] = DAYS) -> str:
    url = str(path)
    with open_warehouse(url) as wh:
        load_days(store, wh, days)
    load_research_warehouse(store, url)
    return url


_BOB_RE = re.compile(
    rb"(?<![0-9])" + BOB.id.encode() + rb'(?![0-9])|"(?:unique_id|uniqueId|username)": "bob"'
    rb"|@bob(?![A-Za-z0-9._])|author=bob/|/bob[-.]",
    re.IGNORECASE,
)


def mentions_bob(store: ObjectStore, key: str) -> bool:
    if _BOB_RE.search(key.encode()):
        return True
    data = store.get_bytes(key)
    with contextlib.suppress(zlib.error):
        data = zlib.decompress(data, 31)
    return _BOB_RE.search(data) is not None


def snapshot(store: ObjectStore) -> dict[str, str]:
    return {info.key: hashlib.sha256(store.get_bytes(info.key)).hexdigest() for info in store.list("")}


BOB_ROWS = {
    "posts": "author_id = ?1 OR author_handle = 'bob'",
    "users": "user_id = ?1 OR handle = 'bob'",
    "user_snapshots": "user_id = ?1",
    "comments": "user_id = ?1 OR aweme_id IN (SELECT aweme_id FROM posts WHERE author_id = ?1)",
    "follow_edges": "user_id = ?1 OR other_id = ?1",
    "post_metrics_history": "aweme_id IN (SELECT aweme_id FROM posts WHERE author_id = ?1)",
    "hashtags": "author_id = ?1",
    "research_videos": "username = 'bob'",
    "research_users": "username = 'bob'",
    "research_follows": "username = 'bob' OR other_username = 'bob'",
    "research_comments": "video_id = '2'",  # comments on bob's video
}
ALICE_ROWS = {
    "posts": "author_id = ?1",
    "users": "user_id = ?1",
    "user_snapshots": "user_id = ?1",
    "follow_edges": "user_id = ?1 AND other_handle <> 'bob'",  # alice following bob is bob's data too
    "post_metrics_history": "aweme_id IN (SELECT aweme_id FROM posts WHERE author_id = ?1)",
    "hashtags": "author_id = ?1",
    "research_videos": "username = 'alice123'",
    "research_comments": "video_id = '1'",
}


def count_rows(url: str, where: dict[str, str], user_id: str) -> dict[str, int]:
    with open_warehouse(url) as wh:
        return {
            t: wh.query(f"SELECT count(*) FROM {t} WHERE {w}", [user_id] if "?1" in w else [])[0][0]
            for t, w in where.items()
        }


def table_counts(url: str) -> dict[str, int]:
    with open_warehouse(url) as wh:
        return {t: wh.row_count(t) for t in TABLE_NAMES}


@pytest.fixture
def world(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    keys = build_archive(store)
    url = build_warehouse(store, tmp_path / "warehouse.duckdb")
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield store, url, state, keys
    state.close()


# -- erasure --------------------------------------------------------------------------------------


def test_find_objects_uses_keys_and_bodies(world) -> None:
    store, _url, _state, keys = world
    found = set(find_objects_for_user(store, user_id=BOB.id, handle="bob"))
    bobs = {info.key for info in store.list("") if mentions_bob(store, info.key)}
    # every object mentioning bob, plus the per-post objects of his posts (comment pages, covers) that do not
    assert bobs <= found
    assert {
        keys["hashtag"],
        keys["following"],
        keys["comments"],
        keys["research_videos"],
        keys["research_bob"],
        keys["research_alice_followers"],
    } <= found
    for day in DAYS:
        assert raw_key(day, "userinfo-by-id", BOB.id) in found
        assert raw_key(day, "userid", "bob") in found
        assert raw_key(day, "userinfo-by-id", ALICE.id) not in found
    assert any(k.startswith("covers/") for k in found) and any("/author=bob/" in k for k in found)
    assert not any("/author=alice123/" in k for k in found)
    # handles are case-insensitive and may carry their '@'
    assert set(find_objects_for_user(store, user_id=BOB.id, handle="@BOB")) == found


def test_dry_run_changes_nothing(world) -> None:
    store, url, state, _keys = world
    before, rows_before = snapshot(store), table_counts(url)
    with open_warehouse(url) as wh:
        report = erase_user(store, wh, BOB.id, "bob", dry_run=True, state=state)
    assert report.dry_run and report.deleted and report.redacted
    assert sum(report.warehouse_rows.values()) > 0
    assert snapshot(store) == before
    assert table_counts(url) == rows_before
    assert erasure_log(state) == []


def test_erasure_removes_every_object_and_row_of_the_user_and_nothing_else(world, tmp_path: Path) -> None:
    store, url, state, keys = world
    alice_keys_before = {i.key for i in store.list("") if "alice123" in i.key or ALICE.id in i.key}
    alice_rows_before = count_rows(url, ALICE_ROWS, ALICE.id)
    bob_rows_before = count_rows(url, BOB_ROWS, BOB.id)
    assert all(
        bob_rows_before[t] > 0
        for t in (
            "posts",
            "users",
            "user_snapshots",
            "comments",
            "follow_edges",
            "post_metrics_history",
            "research_videos",
            "research_follows",
        )
    )
    items_before = {k: _read(store, k) for k in (keys["hashtag"], keys["following"], keys["comments"])}

    with open_warehouse(url) as wh:
        report = erase_user(store, wh, user_id=BOB.id, handle=None, dry_run=False, state=state, operator="dpo")

    # the raw archive: nothing mentions bob any more; alice's own objects are all still there
    assert [info.key for info in store.list("") if mentions_bob(store, info.key)] == []
    assert find_objects_for_user(store, user_id=BOB.id, handle="bob") == []
    assert alice_keys_before <= {i.key for i in store.list("")}
    assert set(report.redacted) >= {
        keys["hashtag"],
        keys["following"],
        keys["comments"],
        keys["research_videos"],
        keys["research_alice_followers"],
    }
    hashtag = _read(store, keys["hashtag"])
    assert len(hashtag["videos"]) == len(items_before[keys["hashtag"]]["videos"]) - 2
    assert all(v["author"]["id"] == ALICE.id for v in hashtag["videos"])
    following = _read(store, keys["following"])
    assert [f["id"] for f in following["followings"]] == (
        [f["id"] for f in items_before[keys["following"]]["followings"][:3]] + ["7199999999999999999"]
    )
    assert following["followings"][-1]["nickname"] == "bob"
    comments = _read(store, keys["comments"])["comments"]
    assert [c["id"] for c in comments] == ["9100000000000000002"] and comments[0]["text"] == "@[erased] you were first"

    # the warehouse: no row of bob's anywhere; alice's rows untouched
    assert count_rows(url, BOB_ROWS, BOB.id) == {t: 0 for t in BOB_ROWS}
    assert count_rows(url, ALICE_ROWS, ALICE.id) == alice_rows_before
    assert report.warehouse_rows["posts"] == bob_rows_before["posts"]
    assert report.handles == ["bob"]  # resolved from the warehouse

    # the same in the warehouse and the raw archive: a replay of the erased archive has no trace of bob either
    replayed = build_warehouse(store, tmp_path / "replayed.duckdb")
    assert count_rows(replayed, BOB_ROWS, BOB.id) == {t: 0 for t in BOB_ROWS}
    assert count_rows(replayed, ALICE_ROWS, ALICE.id) == alice_rows_before

    # the log: who, when, counts and masked keys, never the id or handle
    (entry,) = erasure_log(state)
    assert entry["status"] == "completed" and entry["operator"] == "dpo"
    assert entry["deleted_objects"] == len(report.deleted) and entry["redacted_objects"] == len(report.redacted)
    text = json.dumps(entry)
    assert BOB.id not in text and not re.search(r"(?<![a-z])bob(?![a-z])", text, re.IGNORECASE)
    assert any("<subject>" in k for k in entry["deleted_keys"])

    # a second run finds nothing left to do
    with open_warehouse(url) as wh:
        again = erase_user(store, wh, BOB.id, "bob", dry_run=False, state=state)
    assert again.deleted == [] and again.redacted == {} and sum(again.warehouse_rows.values()) == 0


def test_a_legal_hold_blocks_erasure(world) -> None:
    store, url, state, _keys = world
    holds = LegalHolds(state)
    holds.place(f"tiklive-raw/{DAYS[0]:%Y/%m/%d}/", "case 2026-17", who="counsel")
    before, rows_before = snapshot(store), table_counts(url)
    with open_warehouse(url) as wh:
        preview = erase_user(store, wh, BOB.id, "bob", dry_run=True, holds=holds)
        assert list(preview.held) == [f"tiklive-raw/{DAYS[0]:%Y/%m/%d}/"] and next(iter(preview.held.values())) > 0
        with pytest.raises(LegalHoldError, match="case 2026-17"):
            erase_user(store, wh, BOB.id, "bob", dry_run=False, holds=holds)
    assert snapshot(store) == before and table_counts(url) == rows_before and erasure_log(state) == []
    assert holds.release(f"tiklive-raw/{DAYS[0]:%Y/%m/%d}/")
    with open_warehouse(url) as wh:
        erase_user(store, wh, BOB.id, "bob", dry_run=False, holds=holds)
    assert [info.key for info in store.list("") if mentions_bob(store, info.key)] == []


def test_erasure_on_s3(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    client = make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1")
    store = S3Store(client, s3_bucket, "archive")
    keys = build_archive(store, DAYS[:1])
    url = build_warehouse(store, tmp_path / "warehouse.duckdb", DAYS[:1])
    alice_rows = count_rows(url, ALICE_ROWS, ALICE.id)
    everything = {i.key for i in store.list("")}
    planned = set(find_objects_for_user(store, user_id=BOB.id, handle="bob"))
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with open_warehouse(url) as wh:
        report = erase_user(store, wh, None, "bob", dry_run=False, state=state)
    assert report.user_id == BOB.id  # resolved from the warehouse
    remaining = {i.key for i in store.list("")}
    assert [k for k in remaining if mentions_bob(store, k)] == []
    # exactly the planned objects went, except those redacted in place; nothing else was touched
    assert remaining == (everything - planned) | set(report.redacted)
    assert keys["hashtag"] in report.redacted
    assert count_rows(url, BOB_ROWS, BOB.id) == {t: 0 for t in BOB_ROWS}
    assert count_rows(url, ALICE_ROWS, ALICE.id) == alice_rows
    state.close()


def test_erasure_needs_an_identity_and_the_state_db(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(Exception, match="user id, handle"):
        erase_user(store, None, None, None)
    with pytest.raises(Exception, match="state DB"):
        erase_user(store, None, BOB.id, "bob", dry_run=False)


# -- legal holds ----------------------------------------------------------------------------------


def test_legal_holds_live_in_the_state_db(tmp_path: Path) -> None:
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    holds = LegalHolds(state)
    assert holds.list() == [] and holds.covers("tiklive-raw/2026/05/01/x.json.gz") is None
    wide = holds.place("tiklive-raw/2026/", "regulator inquiry R-9", who="legal")
    narrow = holds.place("tiklive-raw/2026/05/01/", "subpoena 12")
    assert [h.prefix for h in holds.list()] == ["tiklive-raw/2026/", "tiklive-raw/2026/05/01/"]
    assert holds.covers("tiklive-raw/2026/05/01/userid/bob.json.gz") == narrow  # the most specific one
    assert holds.covers("tiklive-raw/2026/06/01/userid/bob.json.gz") == wide
    assert holds.covers("tiklive-raw/2025/12/31/userid/bob.json.gz") is None
    assert wide.placed_by == "legal" and wide.placed_at
    assert json.loads(state.get_value("legal-hold:tiklive-raw/2026/"))["reason"] == "regulator inquiry R-9"
    assert holds.release("tiklive-raw/2026/") and not holds.release("tiklive-raw/2026/")
    assert [h.prefix for h in holds.list()] == ["tiklive-raw/2026/05/01/"]
    with pytest.raises(ValueError):
        holds.place("tiklive-raw/2026/", "   ")
    with pytest.raises(ValueError):
        holds.place("../etc/", "escape")
    state.close()


def test_who_acts_is_the_given_name_else_tiklive_operator_else_the_login_name(tmp_path: Path, monkeypatch) -> None:
    from tiklive_assets.compliance.legal_hold import current_operator

    monkeypatch.setenv("TIKLIVE_OPERATOR", "dpo")
    monkeypatch.setenv("USER", "alice")
    assert current_operator("counsel") == "counsel" and current_operator() == "dpo"
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        assert LegalHolds(state).place("videos/", "case 7").placed_by == "dpo"  # read when placed, not at import
        monkeypatch.delenv("TIKLIVE_OPERATOR")
        assert current_operator() == "alice"
        assert LegalHolds(state).place("covers/", "case 8").placed_by == "alice"
    monkeypatch.delenv("USER")
    assert current_operator()  # the account's name, or "unknown" where there is none


# -- retention ------------------------------------------------------------------------------------

OLD = [date(2025, 7, 10), date(2025, 7, 11), date(2025, 8, 1)]  # the corpus starts 2025-06-01


def test_apply_retention_deletes_old_days_except_held(tmp_path: Path) -> None:
    from tiklive_assets.storage.bundles import bundle_key
    from tiklive_assets_tests.support.bundles import compact_day

    store = LocalStore(tmp_path / "archive")
    for day in OLD + DAYS:
        write_archive_day(store, day, CORPUS)
    url = build_warehouse(store, tmp_path / "warehouse.duckdb", OLD + DAYS)
    for day in OLD[:2]:  # compacted days (the hold below came later): their objects are members of bundles
        compact_day(store, day)
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    holds = LegalHolds(state)
    holds.place("tiklive-raw/2025/07/11/user-posts/", "litigation hold")
    policy = RetentionPolicy(delete_after_days=400)
    today = date(2026, 9, 29)  # cutoff 2025-08-25: the three OLD days expire, DAYS stay

    before = snapshot(store)
    dry = apply_retention(store, policy, today, holds, dry_run=True)
    assert snapshot(store) == before and dry.deleted_objects > 0

    with open_warehouse(url) as wh:
        report = apply_retention(store, policy, today, holds, warehouse=wh)
        dts = {r[0] for r in wh.query("SELECT DISTINCT dt FROM user_snapshots")}
    assert report.cutoff == date(2025, 8, 25)
    assert report.deleted_days == OLD
    assert report.held_days == [OLD[1]] and report.held_objects == 2  # two accounts' user-posts pages
    assert {i.key for i in store.list("tiklive-raw/2025/")} == set()  # the loose day OLD[2] went whole
    # of the compacted days, only the bundle holding the held pages is left
    assert {i.key for i in store.list("tiklive-bundles/")} == {bundle_key("tiklive-raw", OLD[1], "user-posts")}
    assert all(any(i.key.startswith(f"tiklive-raw/{d:%Y/%m/%d}/") for i in store.list("tiklive-raw/")) for d in DAYS)
    assert dts == {OLD[1], *DAYS}  # the held day keeps its rows too
    assert report.warehouse_rows["user_snapshots"] == 4

    nothing = apply_retention(store, RetentionPolicy(), today, holds)
    assert nothing.cutoff is None and nothing.deleted_objects == 0
    state.close()


def test_retention_policy_validation() -> None:
    RetentionPolicy()
    RetentionPolicy.from_mapping({"warm_after_days": 60, "cold_after_days": 400, "delete_after_days": 2555})
    for bad in (
        {"warm_after_days": 10},
        {"cold_after_days": 20},
        {"delete_after_days": 100},
        {"cold_storage_class": "TAPE"},
        {"nonsense": 1},
        {"prefixes": ["tiklive-raw"]},
    ):
        with pytest.raises(ValueError):
            RetentionPolicy.from_mapping(bad)
    policy = RetentionPolicy()
    assert [policy.tier(a) for a in (0, 29, 30, 364, 365, 9999)] == ["hot", "hot", "warm", "warm", "cold", "cold"]


def test_lifecycle_rules_default_policy_validate_on_moto(moto_endpoint: str, s3_bucket: str) -> None:
    config = lifecycle_rules(RetentionPolicy())
    rule, loose = config["Rules"]
    assert rule["Filter"] == {"Prefix": "tiklive-bundles/tiklive-raw/"}  # only bundles are tiered
    assert rule["Transitions"] == [
        {"Days": 30, "StorageClass": "STANDARD_IA"},
        {"Days": 365, "StorageClass": "GLACIER"},
    ]
    assert "Expiration" not in rule  # cold forever: holds need no exclusion
    # loose objects stay where they are: no transition, only the multipart housekeeping
    assert loose["Filter"] == {"Prefix": "tiklive-raw/"} and "Transitions" not in loose
    assert loose["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration=config)
    got = client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    assert [r["ID"] for r in got] == [rule["ID"], loose["ID"]]


def test_lifecycle_expiration_leaves_held_prefixes_out(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    policy = RetentionPolicy(delete_after_days=730, noncurrent_expire_days=7)
    held = [
        Hold("tiklive-raw/2025/03/14/user-posts/", "case A", "x", "t"),
        Hold("tiklive-raw/2024/", "case B", "x", "t"),
        Hold("videos/", "elsewhere", "x", "t"),
    ]
    config = lifecycle_rules(policy, held)
    expire = [r for r in config["Rules"] if "Expiration" in r]
    prefixes = [r["Filter"]["Prefix"] for r in expire]
    assert len({r["ID"] for r in config["Rules"]}) == len(config["Rules"])
    assert all(
        r["Expiration"] == {"Days": 730} and r["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7} for r in expire
    )

    def expires(key: str) -> bool:
        return any(key.startswith(p) for p in prefixes)

    day = date(2023, 12, 25)
    while day < date(2026, 1, 10):
        key = f"tiklive-raw/{day:%Y/%m/%d}/userid/bob.json.gz"
        bundle = f"tiklive-bundles/tiklive-raw/{day:%Y/%m/%d}/userid.parquet"
        assert expires(key) == expires(bundle) == (day.year != 2024 and day != date(2025, 3, 14)), key
        day += timedelta(days=1)
    assert not expires("videos/dt=2025-01-01/author=bob/1.mp4")
    assert [r["Filter"]["Prefix"] for r in config["Rules"] if "Transitions" in r] == ["tiklive-bundles/tiklive-raw/"]

    # whole-prefix hold: no expiration at all; the tiering rule stays (transitions never destroy data)
    assert [
        r for r in lifecycle_rules(policy, [Hold("tiklive-raw/", "all", "x", "t")])["Rules"] if "Expiration" in r
    ] == []
    assert unheld_day_prefixes("tiklive-raw/", []) is None

    # the S3 store's own prefix goes in front; moto accepts the configuration
    client = make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1")
    store = S3Store(client, s3_bucket, "archive")
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    holds = LegalHolds(state)
    holds.place("tiklive-raw/2025/03/14/", "case A")
    (applied,) = apply_lifecycle(store, policy, holds)
    got = client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    assert len(got) == len(applied["Rules"]) > 2
    assert all(
        r["Filter"]["Prefix"].startswith(("archive/tiklive-raw/", "archive/tiklive-bundles/tiklive-raw/")) for r in got
    )
    state.close()
    with pytest.raises(ValueError, match="no S3 bucket"):
        apply_lifecycle(LocalStore(tmp_path), policy, HoldSet())


def test_body_scan_streams_in_bounded_chunks_and_finds_matches_across_chunk_edges() -> None:
    import io

    from tiklive_assets.compliance import UserMatcher

    matcher = UserMatcher(BOB.id, ["bob"])
    for pad in range(64 * 1024 - 24, 64 * 1024 + 4, 3):  # the id straddles the 64 KiB read / output boundaries
        body = b'{"pad": "' + b"x" * pad + b'", "uid": ' + BOB.id.encode() + b"}"
        assert matcher.stream_mentions(io.BytesIO(gzip.compress(body)))
        assert matcher.stream_mentions(io.BytesIO(body))  # not gzip: scanned as is
    near = b'{"pad": "' + b"x" * 70000 + b'", "uid": "' + BOB.id.encode() + b'1", "n": "bobcat", "m": "@bobby"}'
    assert not matcher.stream_mentions(io.BytesIO(gzip.compress(near)))
    assert matcher.stream_mentions(io.BytesIO(gzip.compress(b'{"t": "hi @Bob!"}')))
    assert (
        matcher.mask("tiklive-raw/2026/05/28/userid/bob.json.gz") == "tiklive-raw/2026/05/28/userid/<subject>.json.gz"
    )
    assert matcher.mask(f"tiklive-raw/2026/05/28/user-posts/{BOB.id}-cursor0.json.gz").endswith(
        "/<subject>-cursor0.json.gz"
    )
    assert (
        matcher.mask("videos/dt=2026-05-28/author=bob/77.mp4", ["77"])
        == "videos/dt=2026-05-28/author=<subject>/<post>.mp4"
    )


def test_the_cli_erases_only_when_asked_and_honours_holds(tmp_path, capsys):
    from datetime import date as _date

    from tiklive_assets.cli import main
    from tiklive_assets.sandbox import Corpus
    from tiklive_assets.storage import LocalStore
    from tiklive_assets.warehouse import load_days, open_warehouse
    from tiklive_assets_tests.support.archive import write_archive_day

    day = _date(2026, 5, 29)
    store = LocalStore(tmp_path / "archive")
    write_archive_day(store, day, Corpus(seed=7))
    with open_warehouse(str(tmp_path / "warehouse.duckdb")) as wh:
        load_days(store, wh, [day])
    before = sorted(info.key for info in store.list())
    home = ["--home", str(tmp_path)]
    assert main(["erase", "--handle", "bob", *home]) == 0  # dry run
    assert "would delete" in capsys.readouterr().out
    assert sorted(info.key for info in store.list()) == before
    assert main(["hold", "place", "tiklive-raw/2026/05/29/", "--reason", "case 42", *home]) == 0
    assert main(["erase", "--handle", "bob", "--execute", *home]) == 3
    assert "refused" in capsys.readouterr().err
    assert sorted(info.key for info in store.list()) == before
    assert main(["hold", "release", "tiklive-raw/2026/05/29/", *home]) == 0
    assert main(["erase", "--handle", "bob", "--execute", *home]) == 0
    after = sorted(info.key for info in store.list())
    assert len(after) < len(before) and not any("author=bob" in key for key in after)
    assert main(["retention", "apply", "--delete-after", "1", *home]) == 2  # before the last tier: refused


def test_a_redacted_object_keeps_its_capture_time(tmp_path):
    import gzip as _gzip
    import json as _json
    from datetime import date as _date

    from tiklive_assets.compliance import erase_user
    from tiklive_assets.state import StateDB
    from tiklive_assets.storage import LocalStore
    from tiklive_assets.storage.keys import raw_key

    store = LocalStore(tmp_path / "archive")
    page = {
        "videos": [
            {"aweme_id": "7000000000000000001", "author": {"id": "6800000000000000001", "unique_id": "alice123"}},
            {"aweme_id": "7000000000000000002", "author": {"id": "6800000000000000002", "unique_id": "bob"}},
        ],
        "cursor": "2",
        "hasMore": False,
    }
    key = raw_key(_date(2026, 5, 29), "challenge-posts", "1001-cursor0")
    fetched = 1_780_056_000
    store.put_bytes(
        key,
        _gzip.compress(_json.dumps(page).encode(), mtime=fetched),
        content_type="application/json",
        content_encoding="gzip",
    )
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    report = erase_user(store, None, user_id="6800000000000000002", handle="bob", dry_run=False, state=state)
    assert key in report.redacted
    data = store.get_bytes(key)
    assert int.from_bytes(data[4:8], "little") == fetched  # replays still see when it was captured
    assert [v["author"]["unique_id"] for v in _json.loads(_gzip.decompress(data))["videos"]] == ["alice123"]


def test_an_erasure_killed_between_deleting_and_rewriting_a_shared_page_loses_nothing(world, tmp_path: Path) -> None:
    """SIGKILL after a shared page (others' data too) was deleted and before its redacted copy was written: the next
    erasure run puts the staged redacted copy back, so the other users' items survive and the user's are gone."""
    import signal
    import subprocess
    import sys

    store, url, _state, keys = world
    script = (
        "import sys; from pathlib import Path;"
        "from tiklive_assets.compliance.erasure import erase_user;"
        "from tiklive_assets.state import StateDB; from tiklive_assets.storage import LocalStore;"
        "from tiklive_assets.warehouse import open_warehouse;"
        "t = Path(sys.argv[1]); state = StateDB.from_url(f'sqlite:///{t / \"state.sqlite\"}');"
        "wh = open_warehouse(sys.argv[2]).__enter__();"
        f"erase_user(LocalStore(t / 'archive'), wh, user_id='{BOB.id}', dry_run=False, state=state)"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), url],
        capture_output=True,
        timeout=120,
        env={**os.environ, "TIKLIVE_CRASH_AT": "erasure.rewrite.deleted"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    shared = [keys[k] for k in ("hashtag", "following", "comments", "research_videos", "research_alice_followers")]
    missing = [k for k in shared if not store.exists(k)]
    assert len(missing) == 1  # the kill came between the delete and the rewrite of one shared page
    with open_warehouse(url) as wh:
        erase_user(
            store, wh, user_id=BOB.id, dry_run=False, state=StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
        )
    assert all(store.exists(k) for k in missing) and list(store.list("_erasure/")) == []
    assert [info.key for info in store.list("") if mentions_bob(store, info.key)] == []
    assert all(_read(store, k) for k in shared)  # every shared page is back, redacted, the others' items kept
    hashtag = _read(store, keys["hashtag"])
    assert hashtag["videos"] and all(v["author"]["id"] == ALICE.id for v in hashtag["videos"])

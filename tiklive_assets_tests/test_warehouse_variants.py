"""The warehouse reads the real APIs' variants: each shape seen in real responses, synthesised here, loads.

Every fixture is written through the real store API under the real key layout (``support/archive.py``); bodies
are small synthetic objects reproducing one variant each (ids as ``video_id``/``id`` or integers, string and null
counters, 1/0 flags, ``bioLink`` objects, ISO times, null ``music_info``, photo posts, error objects, TikTok-web
nesting), never copies of recorded payloads.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiklive_assets.storage import LocalStore, slug_page, video_key
from tiklive_assets.verification.integrity import video_consistency
from tiklive_assets.warehouse import load_days, open_warehouse, parse_day
from tiklive_assets.warehouse.drift import schema_drift
from tiklive_assets_tests.support.archive import put_photo_media, put_raw

DAY = date(2026, 5, 27)
NEXT = date(2026, 5, 28)
USER = "6800000000000000001"


def _author(**extra) -> dict:
    return {"id": USER, "unique_id": "alice123", "nickname": "Alice", **extra}


def _item(aweme_id: str | int | None = "7100000000000000001", *, id_field: str = "aweme_id", **fields) -> dict:
    item = {
        "region": "US",
        "title": "hello #cats",
        "play_count": 10,
        "digg_count": 2,
        "comment_count": 1,
        "share_count": 0,
        "create_time": 1_780_000_000,
        "duration": 12,
        "author": _author(),
        "music_info": {"id": "9001", "title": "Song", "author": "Band"},
    }
    if aweme_id is not None:
        item[id_field] = aweme_id
    item.update(fields)
    return item


def _listing(store: LocalStore, items: list, day: date = DAY, **extra) -> str:
    return put_raw(
        store,
        day,
        "user-posts",
        slug_page(USER, "cursor", 0),
        {"videos": items, "cursor": "1780000000000", "hasMore": False, **extra},
    )


def _profile(user: dict | None = None, stats: dict | None = None) -> dict:
    return {
        "user": {
            "id": USER,
            "uniqueId": "alice123",
            "nickname": "Alice",
            "secUid": "MS4wLjAB",
            "verified": False,
            "privateAccount": False,
            **(user or {}),
        },
        "stats": {
            "followerCount": 100,
            "followingCount": 5,
            "videoCount": 3,
            "heartCount": 40,
            "diggCount": 1,
            **(stats or {}),
        },
    }


def _rows(parsed, table: str) -> list[dict]:
    return parsed.tables[table].to_pylist()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "archive")


# -- profiles --


def test_a_biolink_object_loads_as_its_link(store: LocalStore, tmp_path: Path) -> None:
    put_raw(store, DAY, "userinfo-by-id", USER, _profile({"bioLink": {"link": "https://example.org/a", "risk": 3}}))
    parsed = parse_day(store, DAY)
    assert parsed.errors == []
    with open_warehouse(str(tmp_path / "w.duckdb")) as wh:
        wh.load_day(DAY, parsed.tables)  # used to raise ArrowTypeError: Expected bytes, got a 'dict' object
        assert wh.query("SELECT bio_link FROM users WHERE user_id = ?", [USER]) == [("https://example.org/a",)]


def test_flags_as_numbers_and_words_and_counters_as_strings(store: LocalStore) -> None:
    put_raw(
        store,
        DAY,
        "userinfo-by-id",
        USER,
        _profile(
            {"verified": 1, "privateAccount": "no"}, {"followerCount": "1234", "videoCount": None, "heartCount": "1.2K"}
        ),
    )
    parsed = parse_day(store, DAY)
    (user,) = _rows(parsed, "users")
    assert user["verified"] is True and user["private_account"] is False
    (snapshot,) = _rows(parsed, "user_snapshots")
    assert snapshot["follower_count"] == 1234 and snapshot["video_count"] is None and snapshot["heart_count"] is None
    assert parsed.values_nulled == {"stats.heartCount": 1}  # "1.2K" is ambiguous: nulled and counted, not guessed
    assert parsed.errors == []


def test_a_web_profile_with_stats_v2_strings(store: LocalStore) -> None:
    body = _profile()
    body["statsV2"] = {k: str(v) for k, v in body.pop("stats").items()}
    put_raw(store, DAY, "userinfo-by-username", "alice123", {"userInfo": body})
    (snapshot,) = _rows(parse_day(store, DAY), "user_snapshots")
    assert snapshot["follower_count"] == 100 and snapshot["digg_count"] == 1


# -- posts --


def test_items_named_video_id_or_id_and_integer_ids_load(store: LocalStore) -> None:
    _listing(
        store,
        [
            _item("7100000000000000001", id_field="video_id"),
            _item(7100000000000000002, id_field="id"),
            _item(7100000000000000003),
            _item(None),  # no id at all: counted and skipped, the page still loads
            "not an object",
        ],
    )
    parsed = parse_day(store, DAY)
    assert sorted(r["aweme_id"] for r in _rows(parsed, "posts")) == [
        "7100000000000000001",
        "7100000000000000002",
        "7100000000000000003",
    ]
    assert parsed.items_without_id == 2 and parsed.errors == []


def test_string_and_null_counters(store: LocalStore) -> None:
    _listing(
        store, [_item(play_count="1234", digg_count=None, comment_count=" 7 ", share_count="1.5M", collect_count=3.0)]
    )
    parsed = parse_day(store, DAY)
    (post,) = _rows(parsed, "posts")
    assert (post["play_count"], post["digg_count"], post["comment_count"], post["share_count"]) == (1234, None, 7, None)
    (metric,) = _rows(parsed, "post_metrics_history")
    assert metric["collect_count"] == 3
    assert parsed.values_nulled == {"share_count": 1}


def test_iso_create_time_int_title_null_music_info_and_empty_music(store: LocalStore, tmp_path: Path) -> None:
    _listing(
        store,
        [
            _item("7100000000000000001", create_time="2026-05-20T10:00:00Z", title=12345),
            _item("7100000000000000002", music_info=None, music=""),
            _item("7100000000000000003", title=None, create_time="1780000000000"),  # milliseconds, as text
        ],
    )
    parsed = parse_day(store, DAY)
    posts = {r["aweme_id"]: r for r in _rows(parsed, "posts")}
    assert posts["7100000000000000001"]["create_time"] == int(datetime(2026, 5, 20, 10, tzinfo=UTC).timestamp())
    assert posts["7100000000000000001"]["title"] == "12345"
    assert posts["7100000000000000002"]["music_id"] is None
    assert (
        posts["7100000000000000003"]["title"] is None and posts["7100000000000000003"]["create_time"] == 1_780_000_000
    )
    with open_warehouse(str(tmp_path / "w.duckdb")) as wh:
        wh.load_day(DAY, parsed.tables)
        assert wh.row_count("posts") == 3


def test_web_items_with_nested_stats_and_a_string_author(store: LocalStore) -> None:
    web = {
        "id": "7100000000000000009",
        "desc": "web post #dance",
        "createTime": 1_780_000_000,
        "author": {"id": USER, "uniqueId": "alice123", "nickname": "Alice"},
        "stats": {"playCount": 50, "diggCount": 5, "commentCount": 2, "shareCount": 1},
        "statsV2": {"playCount": "50", "diggCount": "5", "commentCount": "2", "shareCount": "1"},
        "music": {"id": "9002", "title": "Tune", "authorName": "DJ"},
        "video": {"duration": 9},
    }
    handle_only = {"id": "7100000000000000010", "author": "alice123", "statsV2": {"playCount": "77"}}
    _listing(store, [web, handle_only])
    posts = {r["aweme_id"]: r for r in _rows(parse_day(store, DAY), "posts")}
    assert posts["7100000000000000009"]["play_count"] == 50 and posts["7100000000000000009"]["duration"] == 9
    assert (
        posts["7100000000000000009"]["title"] == "web post #dance"
        and posts["7100000000000000009"]["music_id"] == "9002"
    )
    # the listing is the account's: its id stands in for the author id the web item leaves out
    assert posts["7100000000000000010"]["author_id"] == USER and posts["7100000000000000010"]["play_count"] == 77


def test_an_enveloped_body_is_unwrapped(store: LocalStore) -> None:
    put_raw(store, DAY, "post-detail", "7100000000000000001", {"code": 0, "msg": "success", "data": _item()})
    assert [r["aweme_id"] for r in _rows(parse_day(store, DAY), "posts")] == ["7100000000000000001"]


def test_web_follower_items_with_user_and_stats(store: LocalStore) -> None:
    put_raw(
        store,
        DAY,
        "user-followers",
        slug_page(USER, "time", 0),
        {
            "followers": [
                {"user": {"id": "42", "uniqueId": "fan"}, "stats": {"followerCount": 3, "videoCount": 1}},
                {"id": 43, "unique_id": "fan2", "follower_count": "8", "aweme_count": 0},
                {"unique_id": "no-id"},
            ],
            "time": 1_780_000_000,
            "hasMore": 0,
        },
    )
    parsed = parse_day(store, DAY)
    edges = {r["other_id"]: r for r in _rows(parsed, "follow_edges")}
    assert edges["42"]["other_handle"] == "fan" and edges["42"]["other_follower_count"] == 3
    assert edges["43"]["other_follower_count"] == 8
    assert parsed.items_without_id == 1


# -- photo posts --


def test_photo_posts_have_kind_image_count_storage_key_and_bytes(store: LocalStore, tmp_path: Path) -> None:
    photo = _item(
        "7100000000000000005",
        duration=0,
        images=["https://cdn/1.jpg", "https://cdn/2.jpg"],
        play="https://cdn/sound.mp3",
        wmplay="https://cdn/sound.mp3",
    )
    video = _item("7100000000000000006")
    _listing(store, [photo, video])
    keys = put_photo_media(store, DAY, "alice123", "7100000000000000005", [b"a" * 100, b"b" * 50], b"s" * 7)
    store.put_bytes(video_key(DAY, "alice123", "7100000000000000006"), b"m" * 30, content_type="video/mp4")
    parsed = parse_day(store, DAY)
    posts = {r["aweme_id"]: r for r in _rows(parsed, "posts")}
    assert (posts["7100000000000000005"]["kind"], posts["7100000000000000005"]["image_count"]) == ("photo", 2)
    assert posts["7100000000000000005"]["storage_key"] == keys[0] and posts["7100000000000000005"]["bytes"] == 157
    assert (posts["7100000000000000006"]["kind"], posts["7100000000000000006"]["image_count"]) == ("video", 0)
    assert posts["7100000000000000006"]["storage_key"].endswith(".mp4") and posts["7100000000000000006"]["bytes"] == 30
    url = str(tmp_path / "w.duckdb")
    with open_warehouse(url) as wh:
        wh.load_day(DAY, parsed.tables)
        consistency = video_consistency(store, wh, DAY, window_days=1)
    assert consistency.ok, consistency  # the images are archived media, not a missing MP4
    assert consistency.photo_posts == 1


def test_photo_images_without_a_post_are_reported(store: LocalStore, tmp_path: Path) -> None:
    _listing(store, [_item()])
    keys = put_photo_media(store, DAY, "alice123", "7100000000000000099", [b"x"], b"s")
    with open_warehouse(str(tmp_path / "w.duckdb")) as wh:
        load_days(store, wh, [DAY])
        assert video_consistency(store, wh, DAY, window_days=1).mp4_without_post == keys


# -- error objects and quarantine --


def test_error_objects_are_counted_in_credits_and_never_parsed(store: LocalStore) -> None:
    _listing(store, [_item()])
    put_raw(
        store,
        DAY,
        "user-posts",
        slug_page(USER, "cursor", 30) + "-error-balance",
        {"message": "Your balance is exhausted"},
    )
    put_raw(store, DAY, "post-detail", "7100000000000000002-error-upstream", {"code": -1, "msg": "server busy"})
    put_raw(store, DAY, "post-detail", "7100000000000000003-error-notjson", b"<html>502 Bad Gateway</html>")
    put_raw(store, DAY, "post-detail", "7100000000000000004", {"code": -1, "msg": "error inside a 200"})
    put_raw(store, DAY, "userinfo-by-id", USER, {"message": "Insufficient balance"})
    put_raw(store, DAY, "post-detail", "7100000000000000405-http404", {"error": "video not found"})
    parsed = parse_day(store, DAY)
    assert parsed.errors == [] and _rows(parsed, "quarantine") == []
    assert [r["aweme_id"] for r in _rows(parsed, "posts")] == ["7100000000000000001"]
    assert _rows(parsed, "user_snapshots") == []
    ledger = {
        (r["endpoint"], r["http_status"]): (r["requests"], r["error_responses"])
        for r in _rows(parsed, "credits_ledger")
    }
    assert ledger == {
        ("user-posts", 200): (2, 1),
        ("post-detail", 200): (3, 3),
        ("userinfo-by-id", 200): (1, 1),
        ("post-detail", 404): (1, 0),
    }
    assert parsed.error_responses == {
        "user-posts/balance": 1,
        "post-detail/upstream": 2,
        "post-detail/notjson": 1,
        "userinfo-by-id/balance": 1,
    }
    assert [r["aweme_id"] for r in _rows(parsed, "dead_letters")] == ["7100000000000000405"]


def _materialize(home: Path, store: LocalStore, day: date):
    from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource
    from tiklive_assets.defs.warehouse.assets import warehouse_tables
    from tiklive_assets.defs.warehouse.resources import WarehouseResource

    return dg.materialize(
        [warehouse_tables],
        partition_key=str(day),
        resources={
            "archive_store": ArchiveStoreResource(local_root=str(store.root)),
            "data_root": DataRootResource(home=str(home)),
            "warehouse": WarehouseResource(url=str(home / "warehouse.duckdb")),
        },
    )


def test_an_unparsable_object_is_quarantined_the_day_loads_and_a_fixed_replay_empties_it(
    store: LocalStore, tmp_path: Path
) -> None:
    _listing(store, [_item()])
    bad = put_raw(store, DAY, "userinfo-by-id", USER, {"user": ["not", "an", "object"], "stats": {}})
    truncated = put_raw(store, DAY, "post-detail", "7100000000000000007", b'{"aweme_id": "71000000000000')
    result = _materialize(tmp_path, store, DAY)
    assert result.success
    metadata = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["warehouse_quarantine"]["quarantined"].value == 2
    assert metadata["warehouse_posts"]["dagster/row_count"].value == 1
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["quarantine_ratio"].passed  # 2 of 3 objects: far above 1 %
    assert checks["quarantine_ratio"].metadata["quarantined"].value == 2
    with open_warehouse(str(tmp_path / "warehouse.duckdb")) as wh:
        rows = dict(wh.query("SELECT source_key, error FROM quarantine WHERE dt = ?", [DAY]))
    assert set(rows) == {bad, truncated} and "no user object" in rows[bad] and rows[truncated].startswith("not JSON")
    # once the object is readable (a parser fix, or the response repaired in the archive), re-loading the day parses
    # it and its quarantine row goes: the day's quarantine rows are replaced, not added to
    store.delete(bad)
    put_raw(store, DAY, "userinfo-by-id", USER, _profile())
    store.delete(truncated)
    result = _materialize(tmp_path, store, DAY)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["quarantine_ratio"].passed
    with open_warehouse(str(tmp_path / "warehouse.duckdb")) as wh:
        assert wh.query("SELECT count(*) FROM quarantine WHERE dt = ?", [DAY]) == [(0,)]
        assert wh.row_count("user_snapshots") == 1


# -- schema drift --


def test_schema_drift_between_two_days(store: LocalStore, tmp_path: Path) -> None:
    put_raw(store, DAY, "userinfo-by-id", USER, _profile({"bioLink": "https://example.org/a"}))
    _listing(store, [_item()])
    put_raw(store, NEXT, "userinfo-by-id", USER, _profile({"bioLink": {"link": "https://example.org/a", "risk": 3}}))
    _listing(store, [_item(is_top=1)], day=NEXT)
    with open_warehouse(str(tmp_path / "w.duckdb")) as wh:
        load_days(store, wh, [DAY, NEXT])
        assert schema_drift(wh, DAY) == []  # the first day is the baseline
        drift = {d.endpoint: d for d in schema_drift(wh, NEXT)}
        assert drift["userinfo-by-id"].changed == {"user.bioLink": {"before": ["string"], "now": ["object"]}}
        assert drift["user-posts"].appeared == ["videos[].is_top: integer"]
        assert drift["user-posts"].vanished == [] and drift["userinfo-by-id"].appeared == []
        signature = set(
            wh.query("SELECT path, json_type FROM schema_fields WHERE dt = ? AND endpoint = 'user-posts'", [NEXT])
        )
        assert {("videos", "array"), ("hasMore", "boolean"), ("videos[].author", "object")} <= signature
    # the materialization reports it as a warning, with the details in the check's metadata
    home = tmp_path / "home"
    _materialize(home, store, DAY)
    result = _materialize(home, store, NEXT)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "schema_drift"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "user.bioLink" in str(check.metadata["drift"].value)


# -- old warehouses --

_OLD_POSTS = """CREATE TABLE posts (aweme_id TEXT NOT NULL, author_id TEXT NOT NULL, author_handle TEXT NOT NULL,
  title TEXT, region TEXT, duration INTEGER, create_time BIGINT, play_count BIGINT, digg_count BIGINT,
  comment_count BIGINT, share_count BIGINT, music_id TEXT, storage_key TEXT, bytes BIGINT, archived_at TIMESTAMPTZ,
  dt DATE NOT NULL, PRIMARY KEY (aweme_id))"""
_OLD_LEDGER = """CREATE TABLE credits_ledger (dt DATE NOT NULL, endpoint TEXT NOT NULL, http_status INTEGER NOT NULL,
  requests BIGINT NOT NULL, bytes BIGINT NOT NULL)"""


def _old_warehouse_keeps_working(url: str, store: LocalStore) -> None:
    _listing(store, [_item(images=["https://cdn/1.jpg"])])
    with open_warehouse(url) as wh:
        load_days(store, wh, [DAY])
        ((kind, count),) = wh.query("SELECT kind, image_count FROM posts WHERE aweme_id <> '1'")
        assert (kind, count) == ("photo", 1)
        assert wh.query("SELECT requests, error_responses FROM credits_ledger") == [(1, 0)]
        assert wh.row_count("quarantine") == 0 and wh.row_count("schema_fields") > 0


def test_an_old_duckdb_warehouse_gets_the_new_columns(store: LocalStore, tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(_OLD_POSTS)
    con.execute(_OLD_LEDGER)
    con.execute(
        "INSERT INTO posts (aweme_id, author_id, author_handle, dt) VALUES ('1', '2', 'old', DATE '2026-05-01')"
    )
    con.close()
    _old_warehouse_keeps_working(str(path), store)
    with open_warehouse(str(path)) as wh:
        assert wh.query("SELECT kind FROM posts WHERE aweme_id = '1'") == [(None,)]


def test_an_old_postgres_warehouse_gets_the_new_columns(store: LocalStore, postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        conn.execute(_OLD_POSTS)
        conn.execute(_OLD_LEDGER)
    _old_warehouse_keeps_working(postgres_url, store)


def test_a_number_beyond_64_bits_is_nulled_and_counted_never_fails_the_day(tmp_path: Path) -> None:
    """A counter of 20 digits (as text, or as a JSON integer orjson accepts up to 2**64-1) and a time far in the
    future: before, pyarrow raised OverflowError outside the per-object guard and no table of the day loaded."""
    store = LocalStore(tmp_path / "archive")
    put_raw(
        store,
        DAY,
        "post-detail",
        "7100000000000000001",
        _item("7100000000000000001", play_count="99999999999999999999", digg_count=2**64 - 1),
    )
    put_raw(store, DAY, "post-detail", "7100000000000000002", _item("7100000000000000002", create_time=10**25))
    put_raw(store, DAY, "post-detail", "7100000000000000003", _item("7100000000000000003"))
    parsed = parse_day(store, DAY)
    posts = parsed.tables["posts"].to_pylist()
    assert [p["aweme_id"] for p in posts] == ["7100000000000000001", "7100000000000000002", "7100000000000000003"]
    first = posts[0]
    assert first["play_count"] is None and first["digg_count"] is None
    assert posts[1]["create_time"] is None and parsed.errors == []


def test_describe_url_never_shows_a_password():
    """A password in the query, one holding '@', or one in a libpq key=value string never reaches logs or manifests;
    a DuckDB path is shown as it is."""
    from tiklive_assets.warehouse.backends import describe_url

    shown = {
        url: describe_url(url)
        for url in (
            "postgresql://h/db?password=secret",
            "postgresql://bob:p@ss@h:5432/db?sslmode=require#secret",
            "host=h dbname=db user=bob password=secret",
        )
    }
    assert shown == {
        "postgresql://h/db?password=secret": "postgresql://h/db",
        "postgresql://bob:p@ss@h:5432/db?sslmode=require#secret": "postgresql://bob:***@h:5432/db",
        "host=h dbname=db user=bob password=secret": "<postgres dsn>",
    }
    assert not any("secret" in s or "ss@" in s for s in shown.values())
    assert describe_url("postgresql://bob@h/db") == "postgresql://bob@h/db"  # no password: no ':***'
    assert describe_url("/srv/tiklive/warehouse.duckdb") == "/srv/tiklive/warehouse.duckdb"

"""The archive index by user, and erasure through it, on a real sandbox capture in a real local store.

A day is captured from the sandbox over HTTP (two tracked accounts with their followers, following, comments and
replies, a hashtag), then a few objects in which users appear among others are added (a comment page with a
mention, someone's following list, Research API pages). Erasure through the index must plan exactly what the
full scan plans, for the tracked accounts, a follower, a commenter and a user who is only mentioned, while reading
a fraction of the objects; a replay rebuilds the same index; a day without an index part is scanned whole.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import re
import zlib
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tiklive_assets.compliance import erase_user
from tiklive_assets.compliance.erasure.index_check import check_day
from tiklive_assets.sandbox import Corpus
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore, ObjectStore, raw_key, slug_page
from tiklive_assets.warehouse import load_days, open_warehouse, replay, schema
from tiklive_assets.warehouse.archive_index_store import INDEX_PREFIX, part_key, read_part_bytes
from tiklive_assets.warehouse.arrow import to_arrow, to_arrow_after
from tiklive_assets.warehouse.parse import DayParser, raw_day_prefix
from tiklive_assets_tests.support.archive import write_archive_day
from tiklive_assets_tests.support.capture import Rig, base_config, failures, frozen_sandbox, local_store, today
from tiklive_assets_tests.support.index_variants import INJECTED_NAMES, INJECTED_VALUES, VARIANTS

WINDOW = "20260501-20260507"
SAM = {"id": "7111111111111111111", "unique_id": "sam.the.fan", "nickname": "Sam"}  # a commenter who mentions


def _put(store: ObjectStore, key: str, body: object) -> None:
    store.put_bytes(
        key, gzip.compress(json.dumps(body).encode(), mtime=0), content_type="application/json", content_encoding="gzip"
    )


def _read(store: ObjectStore, key: str) -> object:
    return json.loads(zlib.decompress(store.get_bytes(key), 31))


def _account_config(handle: str) -> dict:
    return {
        "handle": handle,
        "follow_max_pages": 1,
        "comments": {"recent_videos": 2, "max_pages": 1, "reply_depth": 1, "max_reply_pages": 1},
    }


def _add_shared_pages(store: ObjectStore, day: date, bob: dict, alice_post: str) -> dict[str, str]:
    """Objects where users appear among others, beside the captured day."""
    keys = {
        "comments": raw_key(day, "post-comments", slug_page(alice_post, "cursor", 99)),
        "following": raw_key(day, "user-following", slug_page("6800000000000000001", "time", 99)),
        "research_videos": raw_key(
            day, "video-query", "20260501-20260507-q0123456789-g1-cursor0", prefix="research-raw"
        ),
        "research_bob": raw_key(day, "user-info", "bob", prefix="research-raw"),
        "research_followers": raw_key(day, "user-followers", "alice123-cursor0", prefix="research-raw"),
        "research_comments": raw_key(day, "video-comments", "2-cursor0", prefix="research-raw"),
    }
    comment = {"digg_count": 1, "reply_total": 0, "create_time": 1, "aweme_id": alice_post}
    _put(
        store,
        keys["comments"],
        {
            "comments": [
                {**comment, "id": "9100000000000000001", "text": "first", "user": bob},
                {**comment, "id": "9100000000000000002", "text": "@bob and @Mia_Only you were first", "user": SAM},
            ],
            "cursor": "2",
            "hasMore": False,
        },
    )
    _put(store, keys["following"], {"followings": [bob, SAM], "time": 1, "hasMore": False})
    video = {"create_time": 1777000000, "view_count": 10, "video_description": "v", "hashtag_names": []}
    _put(
        store,
        keys["research_videos"],
        {
            "data": {"videos": [{**video, "id": 1, "username": "alice123"}, {**video, "id": 2, "username": "bob"}]},
            "error": {"code": "ok"},
        },
    )
    _put(store, keys["research_bob"], {"data": {"display_name": "Bob", "follower_count": 3}, "error": {"code": "ok"}})
    _put(
        store,
        keys["research_followers"],
        {"data": {"user_followers": [{"display_name": "Bob", "username": "bob"}]}, "error": {"code": "ok"}},
    )
    _put(
        store,
        keys["research_comments"],
        {"data": {"comments": [{"id": 7300000000000000002, "video_id": 2, "text": "nice"}]}, "error": {"code": "ok"}},
    )
    return keys


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory):
    """A captured sandbox day plus shared pages, loaded into a warehouse with its index part beside the archive."""
    home = tmp_path_factory.mktemp("index")
    with frozen_sandbox() as sb:
        rig = Rig(sb, home, local_store(home))
        rig.config = base_config(accounts=[_account_config("alice123"), _account_config("bob")])
        result = rig.run()
        assert result.success, failures(result)
        bob = sb.corpus.account("bob")
        alice_post = sb.corpus.visible_posts("alice123")[0].aweme_id
        bob_user = {"id": bob.id, "unique_id": "bob", "nickname": "Bob"}
    store = rig.store()
    assert isinstance(store, LocalStore)
    day = today()
    keys = _add_shared_pages(store, day, bob_user, alice_post)
    url = str(home / "warehouse.duckdb")
    with open_warehouse(url) as wh:
        load_days(store, wh, [day], index_store=store)
    return store, url, day, keys, bob.id


def _people(store: ObjectStore, day: date) -> dict[str, tuple[str | None, str | None]]:
    """A follower and a commenter of the capture, by what the archive says about them."""
    prefix = f"tiklive-raw/{day:%Y/%m/%d}/"
    follower = next(i.key for i in store.list(prefix + "user-followers/"))
    comments = next(i.key for i in store.list(prefix + "post-comments/") if "cursor0" in i.key)
    f = _read(store, follower)["followers"][0]  # type: ignore[index]
    c = _read(store, comments)["comments"][0]["user"]  # type: ignore[index]
    return {"follower": (f["id"], f["unique_id"]), "commenter": (c["id"], c["unique_id"])}


def _plans(store: ObjectStore, url: str, user_id: str | None, handle: str | None):
    with open_warehouse(url) as wh:
        full = erase_user(store, wh, user_id, handle, use_index=False)
        indexed = erase_user(store, wh, user_id, handle)
    return full, indexed


def test_erasure_through_the_index_plans_what_the_full_scan_plans(captured) -> None:
    store, url, day, keys, bob_id = captured
    people = {
        "bob": (bob_id, "bob"),
        "alice123": ("6800000000000000001", "alice123"),
        "sam": (None, "sam.the.fan"),
        "mentioned only": (None, "mia_only"),
        **_people(store, day),
    }
    for who, (user_id, handle) in people.items():
        full, indexed = _plans(store, url, user_id, handle)
        assert full.index_days == 0 and indexed.index_days == 1, who
        assert full.keys, who  # everyone here is somewhere in the archive
        assert indexed.keys == full.keys, who
        assert indexed.deleted == full.deleted and indexed.redacted == full.redacted, who
        assert indexed.warehouse_rows == full.warehouse_rows, who
        assert indexed.bodies_read <= full.scanned_objects, who
        assert indexed.bodies_read <= 2 * len(full.keys), who  # reads what refers to them, not the archive
    full, indexed = _plans(store, url, bob_id, "bob")
    assert set(keys.values()) - {keys["research_comments"]} <= set(indexed.redacted) | set(indexed.deleted)
    assert keys["research_comments"] in indexed.deleted  # a comment page of bob's Research video: by its key
    assert any(k.startswith("covers/") for k in indexed.deleted) and any("/author=bob/" in k for k in indexed.deleted)
    assert 4 * indexed.bodies_read < full.scanned_objects, (indexed.bodies_read, full.scanned_objects)
    assert "through the archive index" in indexed.summary()


def test_a_replay_rebuilds_the_same_index(captured, tmp_path: Path) -> None:
    store, url, day, _keys, _bob = captured
    part = read_part_bytes(store, day)
    assert part is not None
    with open_warehouse(url) as wh:
        rows = wh.query("SELECT * FROM archive_index ORDER BY ALL")
    assert rows and {r[4] for r in rows} >= {"subject", "author", "follower", "following", "commenter", "post"}
    assert any(r[4] == "mention" and r[2] == "mia_only" for r in rows)
    store.delete(part_key(day))
    replay(store, str(tmp_path / "replayed.duckdb"), day, day)
    assert read_part_bytes(store, day) == part  # byte for byte
    with open_warehouse(str(tmp_path / "replayed.duckdb")) as wh:
        assert wh.query("SELECT * FROM archive_index ORDER BY ALL") == rows


def test_a_day_without_an_index_part_is_scanned_whole(tmp_path: Path, captured) -> None:
    source, _url, day, _keys, bob_id = captured
    store = LocalStore(tmp_path / "archive")
    for info in source.list(""):
        store.put_bytes(info.key, source.get_bytes(info.key), content_type="application/octet-stream")
    earlier = date(2026, 5, 27)  # the same kind of objects on a day the index does not cover yet
    copied = [
        *source.list(f"tiklive-raw/{day:%Y/%m/%d}/userinfo-by-id/"),
        *source.list(f"tiklive-raw/{day:%Y/%m/%d}/userid/"),
    ]
    for info in copied:
        store.put_bytes(
            info.key.replace(f"{day:%Y/%m/%d}", f"{earlier:%Y/%m/%d}"),
            source.get_bytes(info.key),
            content_type="application/json",
        )
    full = erase_user(store, None, bob_id, "bob", use_index=False)
    indexed = erase_user(store, None, bob_id, "bob")
    assert indexed.scanned_days == [earlier] and indexed.index_days == 1
    # without the warehouse, the index also knows the posts of bob's own listings (the scan deletes those by key)
    assert set(full.keys) <= set(indexed.keys) and any(k.startswith("tiklive-raw/2026/05/27/") for k in indexed.keys)
    assert "without an index part scanned whole" in indexed.summary()
    assert {raw_key(earlier, "userid", "bob"), raw_key(earlier, "userinfo-by-id", bob_id)} <= set(indexed.deleted)
    assert set(full.deleted) <= set(indexed.deleted) and set(indexed.redacted) <= set(full.redacted)
    for info in list(store.list(INDEX_PREFIX)):
        store.delete(info.key)
    nothing = erase_user(store, None, bob_id, "bob")
    assert nothing.index_days == 0 and nothing.keys == full.keys and "whole archive was scanned" in nothing.summary()


def test_a_day_refused_for_damaged_objects_loses_its_index_part(captured, tmp_path: Path) -> None:
    """A replay that leaves a day as it was (damaged objects) deletes the day's index part: the old part may miss
    what was archived since, so erasure scans that day whole instead of trusting it."""
    source, url, day, _keys, bob_id = captured
    store = LocalStore(tmp_path / "archive")
    for info in source.list(""):
        store.put_bytes(info.key, source.get_bytes(info.key), content_type="application/octet-stream")
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(Path(url).read_bytes())
    assert read_part_bytes(store, day) is not None
    damaged = raw_key(day, "post-detail", "9999999")
    store.put_bytes(damaged, b"not gzip", content_type="application/json")
    with open_warehouse(str(warehouse)) as wh:
        report = load_days(store, wh, [day], index_store=store)
        assert report.refused == {day: [damaged]}
        assert read_part_bytes(store, day) is None
        again = load_days(store, wh, [day], index_store=store)  # no part left to delete: still refused, no error
        assert again.refused == {day: [damaged]}
    erasure = erase_user(store, None, bob_id, "bob")  # no part is trusted for the day: it is scanned whole
    assert erasure.index_days == 0 and "whole archive was scanned" in erasure.summary()


def test_an_erasure_through_the_index_leaves_no_trace_in_the_archive_or_the_index(captured, tmp_path: Path) -> None:
    source, _url, day, _keys, bob_id = captured
    store = LocalStore(tmp_path / "archive")
    for info in source.list(""):
        store.put_bytes(info.key, source.get_bytes(info.key), content_type="application/octet-stream")
    url = str(tmp_path / "warehouse.duckdb")
    with open_warehouse(url) as wh:
        load_days(store, wh, [day], index_store=store)
    bob = re.compile(rb"(?<![0-9])" + bob_id.encode() + rb"(?![0-9])|@bob(?![A-Za-z0-9._])|\"bob\"|author=bob/")
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state, open_warehouse(url) as wh:
        report = erase_user(store, wh, bob_id, "bob", dry_run=False, state=state, verify_scan=True)
        assert report.index_missed == [] and report.verify_scanned and report.index_parts_pruned == 1
        assert wh.query("SELECT count(*) FROM archive_index WHERE user_id = ? OR handle = 'bob'", [bob_id]) == [(0,)]
        for info in store.list(""):
            data = store.get_bytes(info.key)
            if info.key.startswith(INDEX_PREFIX):
                refs = set(pq.read_table(store.root / info.key).column("ref").to_pylist())
                assert not refs & {f"id:{bob_id}", "handle:bob"}
                continue
            if data[:2] == b"\x1f\x8b":
                data = zlib.decompress(data, 31)
            assert not bob.search(info.key.encode() + b" " + data), info.key
        again = erase_user(store, wh, bob_id, "bob", dry_run=False, state=state)
    assert again.keys == [] and again.index_days == 1


def test_the_index_check_finds_what_the_index_lacks(captured, tmp_path: Path) -> None:
    source, _url, day, _keys, _bob = captured
    assert check_day(source, day, seed=1, users=5).passed
    store = LocalStore(tmp_path / "archive")
    for info in source.list(""):
        store.put_bytes(info.key, source.get_bytes(info.key), content_type="application/octet-stream")
    sampled = check_day(store, day, seed=2, users=40)
    assert sampled.passed and len(sampled.users) == 40
    # an object archived after the day was indexed: the scan finds it, the index does not name it
    late = raw_key(day, "post-comments", slug_page("7000000000000000001", "cursor", 5))
    _put(store, late, {"comments": [{"id": "1", "text": "@bob hi", "user": SAM}], "hasMore": False})
    refs = ["handle:bob", f"id:{SAM['id']}", "handle:alice123"]
    failed = check_day(store, day, seed=2, refs=refs)
    assert not failed.passed and [bool(u.missed) for u in failed.users] == [True, True, False]
    assert failed.users[1].missed == [late]
    store.delete(part_key(day))
    assert not check_day(store, day, seed=2).indexed


def test_the_weekly_check_passes_on_an_indexed_day_and_fails_on_a_day_without_its_part(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    import dagster as dg

    from tiklive_assets.defs.resources import ArchiveStoreResource
    from tiklive_assets.defs.warehouse.index_check import archive_index_complete

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    store = LocalStore(tmp_path / "archive")
    write_archive_day(store, yesterday, Corpus(seed=7))
    with open_warehouse(str(tmp_path / "warehouse.duckdb")) as wh:
        load_days(store, wh, [yesterday], index_store=store)
    resource = ArchiveStoreResource(local_root=str(tmp_path / "archive"))
    result = archive_index_complete(archive_store=resource)
    assert isinstance(result, dg.AssetCheckResult)
    assert result.passed and result.metadata["day"].value == str(yesterday), result.description
    assert len(result.metadata["users"].value) == 3
    store.delete(part_key(yesterday))
    result = archive_index_complete(archive_store=resource)
    assert not result.passed and "no archive index part" in (result.description or "")


# -- the typed parsers' index rows are the generic walk's --


def _both_indexes(store: ObjectStore, day: date) -> tuple[DayParser, DayParser]:
    """The day's raw objects parsed twice: index rows from the typed parsers, and from the generic walk alone."""
    typed, walked = DayParser(day), DayParser(day, index_by_walk=True)
    for info in store.list(raw_day_prefix(day)):
        data = store.get_bytes(info.key)
        typed.add(info, data)
        walked.add(info, data)
    return typed, walked


def test_the_typed_parsers_index_the_capture_as_the_generic_walk_does(captured) -> None:
    store, _url, day, _keys, _bob = captured
    typed, walked = _both_indexes(store, day)
    assert set(typed.index) == set(walked.index)
    roles = {row[3] for row in typed.index}
    assert roles >= {"subject", "author", "follower", "following", "commenter", "mention", "post"}
    # the typed parsers read every object of the capture themselves: none was left to the walk
    assert typed.walked == 0 < walked.walked, (typed.walked, walked.walked)
    # the rows leave the day out until the table is built: the same table as rows with the day
    rows = list(typed.index)
    table = to_arrow_after(schema.ARCHIVE_INDEX, day, rows)
    assert table.equals(to_arrow(schema.ARCHIVE_INDEX, [(day, *row) for row in rows]))
    assert table.equals(typed.tables()["archive_index"]) and table.num_rows == len(rows)


DAY = date(2026, 5, 27)


def _gz(body: object) -> bytes:
    return gzip.compress(body if isinstance(body, bytes) else json.dumps(body).encode(), mtime=1_780_000_000)


def _index_of(key: str, data: bytes, *, walk: bool) -> tuple[dict, int]:
    parser = DayParser(DAY, index_by_walk=walk)
    parser.add_bytes(key, data, len(data), None)
    return parser.index, parser.walked


def test_the_typed_parsers_index_every_wire_variant_as_the_generic_walk_does(tmp_path: Path) -> None:
    typed_alone = 0
    for endpoint, slug, body in VARIANTS:
        key = raw_key(DAY, endpoint, slug)
        (typed, walked_typed), (walked, _) = _index_of(key, _gz(body), walk=False), _index_of(key, _gz(body), walk=True)
        assert set(typed) == set(walked), key
        typed_alone += walked_typed == 0
    assert typed_alone >= 20  # most variants are read by the typed parsers alone; the rest is walked
    store = LocalStore(tmp_path / "archive")  # a whole fabricated day in the sandbox's shapes, media included
    write_archive_day(store, DAY, Corpus(seed=7))
    typed_day, walked_day = _both_indexes(store, DAY)
    assert set(typed_day.index) == set(walked_day.index) and typed_day.walked == 0


def _dicts_in(value: object) -> list[dict]:
    found = [value] if isinstance(value, dict) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        found.extend(_dicts_in(child))
    return found


def test_unknown_shapes_are_indexed_as_the_generic_walk_indexes_them(captured) -> None:
    """Every typed endpoint's objects with user objects, user-id fields and lists put where no parser expects them:
    the typed parsers index what they read, the rest is left to the walk, and the rows are the walk's."""
    store, _url, day, _keys, _bob = captured
    bases = [(raw_key(DAY, endpoint, slug), body) for endpoint, slug, body in VARIANTS if not isinstance(body, bytes)]
    bases += [(info.key, _read(store, info.key)) for info in store.list(raw_day_prefix(day))]
    rng = random.Random(5)
    outcomes = {True: 0, False: 0}  # indexed by the typed parser alone, left to the walk
    for key, body in bases:
        for _ in range(6):
            mutated = copy.deepcopy(body)
            targets = _dicts_in(mutated)
            if not targets:
                continue
            rng.choice(targets)[rng.choice(INJECTED_NAMES)] = copy.deepcopy(rng.choice(INJECTED_VALUES))
            data = _gz(mutated)
            (typed, walked_typed), (walked, _) = _index_of(key, data, walk=False), _index_of(key, data, walk=True)
            assert set(typed) == set(walked), (key, mutated)
            outcomes[walked_typed == 0] += 1
    assert outcomes[True] > 50 and outcomes[False] > 50, outcomes

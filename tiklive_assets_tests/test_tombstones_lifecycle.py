"""Tombstones through the archive's lifecycle: a compacted day replays to the same tombstones, an erasure takes the
user's tombstones (their account's and their posts') and leaves everyone else's, and a day under the Research
API's prefix yields its tombstones as the TikLiveAPI's does."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tiklive_assets.compliance import erase_user
from tiklive_assets.compliance.compaction import compact_day
from tiklive_assets.sandbox import Corpus
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore, ObjectStore, S3Store, make_s3_client, raw_key
from tiklive_assets.storage.bundles import Member, bundle_key, write_bundle
from tiklive_assets.storage.keys import RESEARCH_PREFIX, refresh_slug
from tiklive_assets.warehouse import load_days, open_warehouse, parse_day
from tiklive_assets_tests.support.archive import put_raw, write_archive_day

DAY = date(2026, 5, 28)
CORPUS = Corpus(seed=7)
ALICE, BOB = CORPUS.account("alice123"), CORPUS.account("bob")
NOON = datetime(2026, 5, 28, 12, tzinfo=UTC)


def _gone(store: ObjectStore, endpoint: str, slug: str, message: str, prefix: str = "tiklive-raw") -> str:
    key = raw_key(DAY, endpoint, slug, prefix=prefix)
    body = gzip.compress(json.dumps({"error": message}).encode(), mtime=int(NOON.timestamp()))
    store.put_bytes(key, body, content_type="application/json", content_encoding="gzip")
    return key


def _archive(store: ObjectStore) -> dict[str, str]:
    """The day with refreshes (bob's post answering 404, an unknown account gone), plus gone profiles of bob (by id
    and by handle) and of alice, and a refresh of one of alice's posts answering gone inside a 200."""
    write_archive_day(store, DAY, CORPUS, refreshes=True)
    alice_post = CORPUS.visible_posts(ALICE, NOON.timestamp())[3]
    return {
        "bob_id": _gone(store, "userinfo-by-id", f"{BOB.id}-http404", "user not found"),
        "bob_handle": _gone(store, "userinfo-by-username", "bob-http404", "user not found"),
        "alice_handle": _gone(store, "userid", "alice123-http404", "user not found"),
        "alice_video": put_raw(
            store, DAY, "post-detail", f"{refresh_slug(alice_post.aweme_id, 30)}-error-gone", {"error": "private"}
        ),
        "alice_aweme": alice_post.aweme_id,
    }


def _rows(table) -> list[tuple]:
    return sorted((r["kind"], r["id"], r["handle"], r["reason"], r["source_key"]) for r in table.to_pylist())


def test_a_compacted_day_replays_to_the_same_tombstones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    keys = _archive(store)
    before = parse_day(store, DAY).tables["tombstones"]
    accounts = {r[1] for r in _rows(before) if r[0] == "account"}
    assert {BOB.id, "bob", "alice123", "689920260528"} <= accounts
    assert {r[4] for r in _rows(before)} >= {keys["bob_id"], keys["bob_handle"], keys["alice_video"]}
    # half-compacted: the profile bundle written, its loose objects not yet deleted: each key read once
    loose = [(i, store.get_bytes(i.key)) for i in store.list(f"tiklive-raw/{DAY:%Y/%m/%d}/userinfo-by-id/")]
    members = [(Member(i.key, hashlib.sha256(b).hexdigest(), len(b), i.last_modified), b) for i, b in loose]
    write_bundle(store, bundle_key("tiklive-raw", DAY, "userinfo-by-id"), members)
    assert parse_day(store, DAY).tables["tombstones"].equals(before)
    shutil.rmtree(tmp_path / "archive" / "tiklive-bundles")
    compact_day(store, DAY)
    assert not [i.key for i in store.list("tiklive-raw/") if i.key.endswith(".json.gz")]  # every object packed
    after = parse_day(store, DAY).tables["tombstones"]
    assert _rows(after) == _rows(before) and after.equals(before)


def test_a_compacted_day_on_s3_replays_to_the_same_tombstones(moto_endpoint: str, s3_bucket: str) -> None:
    store = S3Store(make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1"), s3_bucket, "archive")
    _archive(store)
    before = parse_day(store, DAY, threads=4).tables["tombstones"]
    compact_day(store, DAY)
    after = parse_day(store, DAY, threads=4).tables["tombstones"]
    assert {r[1] for r in _rows(before) if r[0] == "account"} >= {BOB.id, "bob"}
    assert after.equals(before)


@pytest.fixture
def loaded(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    keys = _archive(store)
    url = str(tmp_path / "warehouse.duckdb")
    with open_warehouse(url) as wh:
        load_days(store, wh, [DAY])
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield store, url, state, keys
    state.close()


def _tombstones(url: str) -> list[tuple]:
    with open_warehouse(url) as wh:
        return sorted(wh.query("SELECT kind, id, handle, source_key FROM tombstones"))


def test_erasure_removes_the_users_tombstones_and_keeps_everyone_elses(loaded) -> None:
    store, url, state, keys = loaded
    with open_warehouse(url) as wh:
        bob_posts = {r[0] for r in wh.query("SELECT aweme_id FROM posts WHERE author_id = ?", [BOB.id])}
    before = _tombstones(url)

    def bobs(row: tuple) -> bool:
        kind, entity, handle, _key = row
        if kind == "video":
            return entity in bob_posts
        return entity == BOB.id or handle == "bob"

    assert {r[1] for r in before if bobs(r)} >= {BOB.id, "bob"} and any(r[0] == "video" and bobs(r) for r in before)
    others = [r for r in before if not bobs(r)]
    assert {r[1] for r in others} >= {"alice123", keys["alice_aweme"], "689920260528"}
    with open_warehouse(url) as wh:
        preview = erase_user(store, wh, BOB.id, "bob", dry_run=True, state=state)
        assert preview.warehouse_rows.get("tombstones") == len(before) - len(others)
        erase_user(store, wh, BOB.id, "bob", dry_run=False, state=state)
    assert _tombstones(url) == others
    assert store.exists(keys["alice_handle"]) and not store.exists(keys["bob_handle"])
    with open_warehouse(url) as wh:  # a replay of the erased day brings none of them back
        load_days(store, wh, [DAY])
    assert _tombstones(url) == others


def test_a_research_prefix_day_yields_its_tombstones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    post = CORPUS.visible_posts(BOB, NOON.timestamp())[0]
    video = _gone(store, "post-detail", f"{refresh_slug(post.aweme_id, 24)}-http404", "gone", RESEARCH_PREFIX)
    account = _gone(store, "userinfo-by-username", "bob-http404", "user not found", RESEARCH_PREFIX)
    rows = _rows(parse_day(store, DAY, prefix=RESEARCH_PREFIX).tables["tombstones"])
    assert rows == [("account", "bob", "bob", "user not found", account), ("video", post.aweme_id, None, "gone", video)]

"""Bundles: one day's raw objects of an endpoint in one Parquet object, byte for byte, readable a member at a time."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tiklive_assets.storage import LocalStore, MirroredStore, ObjectStore, S3Store, make_s3_client, raw_key
from tiklive_assets.storage.bundles import (
    ROW_GROUP_BYTES,
    BundleError,
    BundleKey,
    Member,
    bundle_key,
    bundles_of_day,
    day_objects,
    live_bundles_of_day,
    locate,
    parse_bundle_key,
    read_bundle,
    read_index,
    read_member,
    write_bundle,
)
from tiklive_assets.storage.keys import InvalidKeyPart, conflict_key

DAY = date(2026, 3, 14)
T0 = datetime(2026, 3, 14, 8, 30, 15, 123456, tzinfo=UTC)


class CountingLocal(LocalStore):
    """A LocalStore that counts the bytes its ranged reads return and refuses whole-object reads."""

    ranged = 0
    whole = 0

    def read_range(self, key: str, start: int, length: int) -> bytes:
        data = super().read_range(key, start, length)
        self.ranged += len(data)
        return data

    def get_bytes(self, key: str) -> bytes:
        self.whole += 1
        return super().get_bytes(key)


def _member(key: str, body: bytes, offset: int = 0) -> tuple[Member, bytes]:
    return Member(key, hashlib.sha256(body).hexdigest(), len(body), T0 + timedelta(seconds=offset)), body


def _items(endpoint: str = "user-posts", n: int = 700) -> list[tuple[Member, bytes]]:
    """Incompressible 2-5 KB bodies (like gzip), about 2.4 MB: several row groups."""
    items = []
    for i in range(n):
        body = os.urandom(2_000 + (i * 37) % 3_000)
        items.append(_member(raw_key(DAY, endpoint, f"{1000 + i}-cursor0"), body, i))
    return items


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "archive")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(make_s3_client(endpoint_url=endpoint, region_name="us-east-1"), bucket, "archive")


def test_bundle_keys_round_trip() -> None:
    assert bundle_key("tiklive-raw", DAY, "user-posts") == "tiklive-bundles/tiklive-raw/2026/03/14/user-posts.parquet"
    assert bundle_key("research-raw", DAY, "video-query", 3) == (
        "tiklive-bundles/research-raw/2026/03/14/video-query-3.parquet"
    )
    for key in (bundle_key("tiklive-raw", DAY, "user-posts"), bundle_key("research-raw", DAY, "video-query", 12)):
        parsed = parse_bundle_key(key)
        assert parsed is not None and parsed.key == key
    assert parse_bundle_key(bundle_key("tiklive-raw", DAY, "post-detail", 2)) == BundleKey(
        "tiklive-raw", DAY, "post-detail", 2
    )
    for foreign in (
        "tiklive-bundles/tiklive-raw/2026/03/14/user-posts-1.parquet",  # generation 1 has no suffix
        "tiklive-bundles/tiklive-raw/2026/3/14/user-posts.parquet",
        "tiklive-bundles/tiklive-raw/2026/02/30/user-posts.parquet",
        "tiklive-bundles/tiklive-raw/2026/03/14/user-posts.parquet.conflict-0123456789abcdef",
        "tiklive-raw/2026/03/14/user-posts/1-cursor0.json.gz",
    ):
        assert parse_bundle_key(foreign) is None, foreign
    with pytest.raises(InvalidKeyPart):
        bundle_key("tiklive-raw", DAY, "top-10")  # would read as endpoint "top", generation 10
    with pytest.raises(InvalidKeyPart):
        bundle_key("tiklive-raw", DAY, "user-posts", 0)


def test_write_and_read_back_byte_for_byte(store: ObjectStore) -> None:
    items = _items()
    key = bundle_key("tiklive-raw", DAY, "user-posts")
    result = write_bundle(store, key, reversed(items))  # any order in, key order stored
    assert result.status == "created"
    assert write_bundle(store, key, items).status == "identical"  # deterministic: a rerun writes nothing
    members = [m for m, _ in items]
    assert read_index(store, key) == members
    bundle = read_bundle(store, key)
    assert bundle.members == members
    assert list(bundle) == items
    assert items[123][0].key in bundle and "tiklive-raw/2026/03/14/user-posts/x.json.gz" not in bundle
    assert bundle.body(items[456][0].key) == items[456][1]
    for member, body in (items[0], items[350], items[-1]):
        assert read_member(store, key, member.key) == body
    with pytest.raises(KeyError):
        bundle.body("tiklive-raw/2026/03/14/user-posts/missing.json.gz")
    with pytest.raises(KeyError):
        read_member(store, key, "tiklive-raw/2026/03/14/user-posts/missing.json.gz")


def test_a_member_read_is_a_ranged_read(tmp_path: Path) -> None:
    store = CountingLocal(tmp_path / "archive")
    items = _items()
    key = bundle_key("tiklive-raw", DAY, "user-posts")
    write_bundle(store, key, items)
    size = store.stat(key).size  # type: ignore[union-attr]
    store.ranged = 0
    assert read_member(store, key, items[500][0].key) == items[500][1]
    assert store.whole == 0
    assert 0 < store.ranged < ROW_GROUP_BYTES + 200_000 < size  # one row group and the footer, not the bundle
    store.ranged = 0
    assert [m.key for m in read_index(store, key)] == [m.key for m, _ in items]
    assert store.ranged < size / 10  # the index reads no body


def test_s3_member_read_sends_range_gets(moto_endpoint: str, s3_bucket: str) -> None:
    client = make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1")
    store = S3Store(client, s3_bucket, "archive")
    items = _items()
    key = bundle_key("tiklive-raw", DAY, "user-posts")
    write_bundle(store, key, items)
    size = store.stat(key).size  # type: ignore[union-attr]
    gets: list[str | None] = []
    event = "provide-client-params.s3.GetObject"  # the API parameters of every GET the store sends
    client.meta.events.register(event, lambda params, **_: gets.append(params.get("Range")))
    assert read_member(store, key, items[42][0].key) == items[42][1]
    assert gets and all(r is not None and r.startswith("bytes=") for r in gets)
    fetched = sum(int(r.split("-")[1]) - int(r[6:].split("-")[0]) + 1 for r in gets if r)
    assert fetched < size / 2


def test_read_range_on_every_store(store: ObjectStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    store.put_bytes("a/b.bin", data, content_type="application/octet-stream")
    mirrored = MirroredStore(store, LocalStore(tmp_path / "second"))
    for s in (store, mirrored):
        assert s.read_range("a/b.bin", 0, 10) == data[:10]
        assert s.read_range("a/b.bin", 5000, 300) == data[5000:5300]
        assert s.read_range("a/b.bin", len(data) - 4, 100) == data[-4:]
        assert s.read_range("a/b.bin", 3, 0) == b""
    with pytest.raises(Exception, match="missing"):
        store.read_range("a/missing", 0, 4)
    for key in ("a/c.bin", "a/d/e.bin", "f.bin"):
        store.put_bytes(key, b"x", content_type="application/octet-stream")
    store.delete_many(["a/c.bin", "a/d/e.bin", "a/never-there"])  # a missing key is not an error
    assert sorted(i.key for i in store.list("")) == ["a/b.bin", "f.bin"]


def test_write_refuses_bad_members_and_different_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    key = bundle_key("tiklive-raw", DAY, "user-posts")
    good = _items(n=3)
    lying = [(good[0][0], good[1][1])]
    with pytest.raises(ValueError, match="do not match"):
        write_bundle(store, key, lying)
    with pytest.raises(ValueError, match="twice"):
        write_bundle(store, key, [good[0], good[0]])
    assert not store.exists(key)
    write_bundle(store, key, good)
    with pytest.raises(BundleError, match="next generation"):
        write_bundle(store, key, good[:2])
    assert [i.key for i in store.list("tiklive-bundles/")] == [key]  # no conflict copy left behind
    assert read_index(store, key) == [m for m, _ in good]


def test_day_objects_reads_loose_and_live_bundles_once(store: ObjectStore) -> None:
    posts = _items("user-posts", 6)
    comments = _items("post-comments", 4)
    for member, body in posts[:4] + comments:
        store.put_bytes(member.key, body, content_type="application/json", content_encoding="gzip")
    conflict = conflict_key(posts[0][0].key, "f" * 64)
    store.put_bytes(conflict, b"other bytes", content_type="application/json", content_encoding="gzip")
    loose = {i.key: i for i in store.list("tiklive-raw/")}
    conflict_member = _member(conflict, b"other bytes")
    conflict_member = (Member(conflict, conflict_member[0].sha256, 11, loose[conflict].last_modified), b"other bytes")
    # generation 1 holds an object erased since; generation 2 holds the complete set: posts 1-5 and the conflict
    erased = _member(raw_key(DAY, "user-posts", "999-cursor0"), b"erased")
    write_bundle(store, bundle_key("tiklive-raw", DAY, "user-posts"), [*posts[:2], erased])
    write_bundle(store, bundle_key("tiklive-raw", DAY, "user-posts", 2), [*posts[1:], conflict_member])
    for member, _ in posts[1:4]:
        store.delete(member.key)  # packed: posts[0] and the conflict copy are still loose too (mid-compaction)
    assert bundles_of_day(store, DAY) == [
        bundle_key("tiklive-raw", DAY, "user-posts"),
        bundle_key("tiklive-raw", DAY, "user-posts", 2),
    ]
    assert live_bundles_of_day(store, DAY) == {"user-posts": bundle_key("tiklive-raw", DAY, "user-posts", 2)}
    got = list(day_objects(store, DAY))
    expected = {m.key: (b, m.fetched_at) for m, b in posts + comments}
    expected[posts[0][0].key] = (posts[0][1], loose[posts[0][0].key].last_modified)  # read loose
    for member, _ in comments:
        expected[member.key] = (expected[member.key][0], loose[member.key].last_modified)
    expected[conflict] = (b"other bytes", loose[conflict].last_modified)
    assert [k for k, _, _ in got] == sorted(expected)
    assert {k: (b, t) for k, b, t in got} == expected
    assert erased[0].key not in {k for k, _, _ in got}  # a stale generation is never read
    assert list(day_objects(store, DAY + timedelta(days=1))) == []
    assert locate(store, posts[3][0].key) == bundle_key("tiklive-raw", DAY, "user-posts", 2)
    assert locate(store, conflict) == bundle_key("tiklive-raw", DAY, "user-posts", 2)
    assert locate(store, comments[0][0].key) is None
    assert locate(store, erased[0].key) is None
    assert locate(store, "videos/dt=2026-03-14/author=bob/1.mp4") is None

"""Storage: key layout, and the never-overwrite write protocol on a real directory and a real S3 endpoint (moto)."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from tiklive_assets.storage import (
    InvalidKeyPart,
    InvalidStoreUrl,
    LocalStore,
    MirroredStore,
    NotFound,
    ObjectStore,
    S3Store,
    conflict_key,
    cover_key,
    make_s3_client,
    parse_raw_key,
    raw_key,
    safe_slug,
    sidecar_key,
    slug_id,
    slug_page,
    slug_userid,
    store_from_url,
    video_key,
)

DAY = date(2026, 5, 29)
MIB = 1 << 20


def _client(endpoint: str):
    return make_s3_client(
        endpoint_url=endpoint, region_name="us-east-1", access_key_id="testing", secret_access_key="testing"
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3", "s3-no-conditional", "s3-prefixed"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "archive")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(
        _client(endpoint),
        bucket,
        prefix="team/archive" if request.param == "s3-prefixed" else "",
        conditional_writes=request.param != "s3-no-conditional",
    )


# -- key layout --


def test_raw_keys_match_the_seed_layout() -> None:
    assert raw_key(DAY, "userid", slug_userid("cristiano")) == "tiklive-raw/2026/05/29/userid/cristiano.json.gz"
    assert raw_key(DAY, "/user-posts/", slug_page(107955, "cursor", 0)) == (
        "tiklive-raw/2026/05/29/user-posts/107955-cursor0.json.gz"
    )
    assert raw_key(DAY, "post-detail", slug_id("7234")) == "tiklive-raw/2026/05/29/post-detail/7234.json.gz"
    assert raw_key(DAY, "post-comments", slug_page("7234", "cursor", "0")) == (
        "tiklive-raw/2026/05/29/post-comments/7234-cursor0.json.gz"
    )
    assert raw_key(DAY, "user-followers", slug_page("107955", "time", 0)) == (
        "tiklive-raw/2026/05/29/user-followers/107955-time0.json.gz"
    )


def test_parse_raw_key_inverts_raw_key_and_names_the_paginator() -> None:
    key = raw_key(DAY, "/user-followers/", slug_page(107955, "time", 1716940800))
    parsed = parse_raw_key(key)
    assert (parsed.day, parsed.endpoint, parsed.slug) == (DAY, "user-followers", "107955-time1716940800")
    assert parsed.page is not None and (parsed.page.entity, parsed.page.kind, parsed.page.value) == (
        "107955",
        "time",
        1716940800,
    )
    assert parse_raw_key(raw_key(DAY, "post-detail", "7234")).page is None
    for bad in [
        "tiklive-raw/2026/5/29/userid/x.json.gz",
        "tiklive-raw/2026/05/29/userid/x.json",
        "other/2026/05/29/userid/x.json.gz",
        conflict_key(key, "ab" * 32),
    ]:
        with pytest.raises(InvalidKeyPart):
            parse_raw_key(bad)


def test_listed_keys_read_back_leniently_conflict_copies_and_both_apis() -> None:
    from tiklive_assets.research.windows import Window
    from tiklive_assets.storage.keys import (
        RESEARCH_PREFIX,
        day_of_key,
        image_key,
        parse_video_slug,
        raw_key_day,
        split_cover_key,
        split_raw_key,
        split_video_key,
        video_slug,
    )

    key = raw_key(DAY, "user-posts", slug_page(107955, "cursor", 0))
    parts = split_raw_key(conflict_key(key, "ab" * 32))
    assert parts is not None and (parts.day, parts.endpoint, parts.slug, parts.entity) == (
        DAY,
        "user-posts",
        "107955-cursor0",
        "107955",
    )
    research = raw_key(DAY, "user-info", "bob", prefix=RESEARCH_PREFIX)
    assert split_raw_key(research) is None  # not under the TikLiveAPI prefix
    assert split_raw_key(research, RESEARCH_PREFIX + "/") == split_raw_key(research, RESEARCH_PREFIX)
    assert split_raw_key("tiklive-raw/2026/05/29/userid.json.gz") is None  # four segments
    odd = split_raw_key("tiklive-raw/2026/02/31/userid/bob.json.gz")
    assert odd is not None and odd.day is None and odd.entity == "bob"
    assert raw_key_day(key) == DAY and raw_key_day("tiklive-raw/x/05/29/a/b") is None
    assert raw_key_day(research, RESEARCH_PREFIX) == DAY and raw_key_day(research) is None
    assert split_video_key(video_key(DAY, "alice.b", 7)) == ("alice.b", "7")
    assert split_video_key(image_key(DAY, "alice.b", 7, 2)) == ("alice.b", "7")
    assert split_video_key("videos/dt=2026-05-29/7.mp4") is None
    assert split_cover_key(cover_key(DAY, 7)) == "7" and split_cover_key("videos/dt=2026-05-29/7.jpg") is None
    for dated in (key, research, video_key(DAY, "bob", 7), cover_key(DAY, 7)):
        assert day_of_key(dated) == DAY
    assert day_of_key("exports/2026/05/29/posts.parquet") is None
    window = Window(date(2026, 5, 1), date(2026, 5, 7))
    slug = video_slug(window, "0123456789", 2, 100)
    assert slug == "20260501-20260507-q0123456789-g2-cursor100"
    parsed = parse_video_slug(slug)
    assert parsed is not None and (parsed.window, parsed.qhash, parsed.generation, parsed.cursor) == (
        window,
        "0123456789",
        2,
        100,
    )
    assert parse_video_slug("error-cursor0") is None


def test_research_keys_module_reexports_the_one_layout() -> None:
    import tiklive_assets.research.keys as research_keys
    import tiklive_assets.storage.keys as keys

    for name in research_keys.__all__:
        assert getattr(research_keys, name) is getattr(keys, name)


def test_video_sidecar_and_cover_keys() -> None:
    assert video_key(DAY, "alice123", 7387261234567890123) == (
        "videos/dt=2026-05-29/author=alice123/7387261234567890123.mp4"
    )
    assert sidecar_key(DAY, "alice123", "7387261234567890123") == (
        "videos/dt=2026-05-29/author=alice123/7387261234567890123.json"
    )
    assert cover_key(DAY, "7387261234567890123") == "covers/dt=2026-05-29/7387261234567890123.jpg"


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: slug_userid("bad/handle"), "handle"),
        (lambda: slug_userid(".."), "handle"),
        (lambda: slug_userid("x" * 65), "handle"),
        (lambda: video_key(DAY, "../etc", "1"), "handle"),
        (lambda: video_key(DAY, "alice", "12a"), "aweme_id"),
        (lambda: cover_key(DAY, "../1"), "aweme_id"),
        (lambda: slug_id("12a", "aweme_id"), "aweme_id"),
        (lambda: slug_page("107955", "cursor", "1e3"), "cursor"),
        (lambda: slug_page("107955", "offset", 0), "page kind"),  # type: ignore[arg-type]
        (lambda: slug_page("Funny Cats", "cursor", 0), "entity_id"),
        (lambda: raw_key(DAY, "user/posts", "x"), "endpoint"),
        (lambda: raw_key(DAY, "userid", "../x"), "slug"),
    ],
)
def test_invalid_key_parts_are_rejected_with_a_useful_message(make: Callable[[], str], field: str) -> None:
    with pytest.raises(InvalidKeyPart) as info:
        make()
    assert info.value.field == field
    assert field in str(info.value) and "allowed" in str(info.value)


def test_safe_slug_is_stable_short_and_distinguishes_what_it_changed() -> None:
    assert safe_slug("cats") == "cats"
    changed = safe_slug("Funny Cats!")
    assert changed.startswith("funny-cats-") and changed == safe_slug("Funny Cats!")
    assert safe_slug("Funny Cats?") != changed
    assert safe_slug(changed) == changed
    assert len(safe_slug("W" * 500)) <= 64
    assert safe_slug("../../etc/passwd").count(".") == 0
    assert slug_page(safe_slug("日本 旅行"), "cursor", 0).endswith("-cursor0")


# -- the write protocol, on every backend --


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/abs", "a\\b", "a//b", "./a", "a/", "", "x.part"])
def test_store_rejects_keys_that_could_escape(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidKeyPart):
        store.put_bytes(bad, b"x", content_type="text/plain")
    with pytest.raises(InvalidKeyPart):
        store.exists(bad)


def test_put_bytes_created_then_identical(store: ObjectStore) -> None:
    key = raw_key(DAY, "userid", "cristiano")
    body = gzip.compress(b'{"id": "107955"}')
    first = store.put_bytes(key, body, content_type="application/json", content_encoding="gzip")
    assert (first.key, first.status, first.size, first.sha256, first.conflict_key) == (
        key,
        "created",
        len(body),
        _sha(body),
        None,
    )
    before = store.stat(key)
    again = store.put_bytes(key, body, content_type="application/json", content_encoding="gzip")
    assert again.status == "identical" and again.conflict_key is None
    assert store.get_bytes(key) == body
    assert store.stat(key) == before
    assert [o.key for o in store.list("tiklive-raw/")] == [key]


def test_different_bytes_never_overwrite(store: ObjectStore, caplog: pytest.LogCaptureFixture) -> None:
    key = "tiklive-raw/2026/05/29/post-detail/7234.json.gz"
    original, newer = b"original bytes", b"different bytes"
    store.put_bytes(key, original, content_type="application/json")
    with caplog.at_level("WARNING"):
        result = store.put_bytes(key, newer, content_type="application/json")
    assert result.status == "conflict"
    assert result.conflict_key == f"{key}.conflict-{_sha(newer)[:16]}"
    assert store.get_bytes(key) == original
    assert store.get_bytes(result.conflict_key) == newer
    assert result.conflict_key in caplog.text
    # Writing the same different bytes again lands on the same conflict copy, still without overwriting.
    assert store.put_bytes(key, newer, content_type="application/json") == result
    assert [o.key for o in store.list("tiklive-raw/")] == sorted([key, result.conflict_key])


def test_put_file_same_semantics(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(os.urandom(300_000))
    key = video_key(DAY, "alice123", "7387261234567890123")
    assert store.put_file(key, source, content_type="video/mp4").status == "created"
    assert store.put_file(key, source, content_type="video/mp4").status == "identical"
    other = tmp_path / "other.mp4"
    other.write_bytes(b"not the same video")
    clash = store.put_file(key, other, content_type="video/mp4")
    assert clash.status == "conflict" and store.get_bytes(key) == source.read_bytes()
    assert store.get_bytes(clash.conflict_key or "") == other.read_bytes()


def test_list_stat_open_delete(store: ObjectStore) -> None:
    keys = [
        "videos/dt=2026-05-29/author=bob/2.json",
        "videos/dt=2026-05-29/author=alice/1.mp4",
        "videos/dt=2026-05-29/author=alice/1.json",
        "videos/dt=2026-05-29/author=alice.b/3.mp4",
        "covers/dt=2026-05-29/1.jpg",
    ]
    for i, key in enumerate(keys):
        store.put_bytes(key, b"x" * (i + 1), content_type="application/octet-stream")
    listed = list(store.list("videos/"))
    assert [o.key for o in listed] == sorted(k for k in keys if k.startswith("videos/"))
    assert [o.key for o in store.list("videos/dt=2026-05-29/author=alice")] == [
        "videos/dt=2026-05-29/author=alice.b/3.mp4",
        "videos/dt=2026-05-29/author=alice/1.json",
        "videos/dt=2026-05-29/author=alice/1.mp4",
    ]
    assert [o.key for o in store.list()] == sorted(keys)
    assert list(store.list("nothing/here/")) == []

    info = store.stat(keys[1])
    assert info is not None and info.key == keys[1] and info.size == 2 and info.last_modified.tzinfo is not None
    assert store.stat("videos/missing.mp4") is None
    with store.open_read(keys[0]) as stream:
        assert stream.read() == b"x"

    store.delete(keys[1])
    store.delete(keys[1])  # deleting what is gone is not an error
    assert not store.exists(keys[1]) and store.exists(keys[0])
    with pytest.raises(NotFound):
        store.get_bytes(keys[1])
    with pytest.raises(NotFound):
        store.open_read(keys[1])
    with pytest.raises(KeyError):  # NotFound is a KeyError
        store.get_bytes("covers/none.jpg")


def test_describe_names_the_location_without_credentials(store: ObjectStore, tmp_path: Path) -> None:
    where = store.describe()
    assert "testing" not in where
    if isinstance(store, LocalStore):
        assert where == str(tmp_path / "archive")
    else:
        assert isinstance(store, S3Store) and where.startswith(f"s3://{store.bucket}/{store.prefix}")


# -- S3 specifics --


def test_s3_objects_carry_content_type_encoding_and_sha(moto_endpoint: str, s3_bucket: str) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, s3_bucket, prefix="archive")
    body = gzip.compress(b"{}")
    key = raw_key(DAY, "userid", "cristiano")
    store.put_bytes(key, body, content_type="application/json", content_encoding="gzip")
    head = client.head_object(Bucket=s3_bucket, Key=f"archive/{key}")
    assert head["ContentType"] == "application/json"
    assert head["ContentEncoding"] == "gzip"
    assert head["Metadata"]["sha256"] == _sha(body)


def test_s3_compares_objects_written_by_others_by_their_bytes(moto_endpoint: str, s3_bucket: str) -> None:
    client = _client(moto_endpoint)
    client.put_object(Bucket=s3_bucket, Key="legacy/a.json.gz", Body=b"seed-era object, no sha metadata")
    store = S3Store(client, s3_bucket)
    assert store.put_bytes("legacy/a.json.gz", b"seed-era object, no sha metadata", content_type="x").status == (
        "identical"
    )
    assert store.put_bytes("legacy/a.json.gz", b"something else", content_type="x").status == "conflict"


@pytest.mark.parametrize("conditional_writes", [True, False])
def test_s3_put_file_large_goes_multipart_and_round_trips(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path, conditional_writes: bool
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, s3_bucket, conditional_writes=conditional_writes)
    source = tmp_path / "big.mp4"
    block = os.urandom(MIB)
    with open(source, "wb") as out:
        for i in range(40):
            out.write(block[i:] + block[:i])
    key = video_key(DAY, "alice123", "7387261234567890123")

    result = store.put_file(key, source, content_type="video/mp4")
    assert result.status == "created" and result.size == 40 * MIB

    head = client.head_object(Bucket=s3_bucket, Key=key)
    assert "-" in head["ETag"], "a multipart upload has an ETag of the form <md5>-<parts>"
    assert head["ContentType"] == "video/mp4" and head["Metadata"]["sha256"] == result.sha256
    digest = hashlib.sha256()
    with store.open_read(key) as stream:
        for chunk in iter(lambda: stream.read(MIB), b""):
            digest.update(chunk)
    assert digest.hexdigest() == result.sha256 == _sha(source.read_bytes())

    assert store.put_file(key, source, content_type="video/mp4").status == "identical"
    with open(source, "r+b") as out:
        out.write(b"changed")
    clash = store.put_file(key, source, content_type="video/mp4")
    assert clash.status == "conflict" and store.stat(clash.conflict_key or "") is not None
    assert client.head_object(Bucket=s3_bucket, Key=key)["Metadata"]["sha256"] == result.sha256


def test_s3_sweep_aborts_stale_multipart_uploads(moto_endpoint: str, s3_bucket: str) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, s3_bucket, prefix="archive")
    client.create_multipart_upload(Bucket=s3_bucket, Key="archive/videos/half.mp4")
    client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/not-ours.mp4")
    assert store.sweep_incomplete(timedelta(0)) == 1
    remaining = [u["Key"] for u in client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]
    assert remaining == ["elsewhere/not-ours.mp4"]


# -- local specifics --


def test_local_sweep_removes_old_parts_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("videos/dt=2026-05-29/author=a/1.mp4", b"done", content_type="video/mp4")
    directory = tmp_path / "videos" / "dt=2026-05-29" / "author=a"
    old = directory / "2.mp4.abc123.part"
    fresh = directory / "3.mp4.def456.part"
    old.write_bytes(b"crashed")
    fresh.write_bytes(b"in flight")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    assert [o.key for o in store.list()] == ["videos/dt=2026-05-29/author=a/1.mp4"]  # parts are invisible
    assert store.sweep_incomplete(timedelta(hours=1)) == 1
    assert not old.exists() and fresh.exists()
    assert store.remove_stale_parts(timedelta(hours=1)) == 0


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = "tiklive-raw/2026/05/29/post-detail/1.json.gz"
    store.put_bytes(key, b"a", content_type="application/json")
    store.put_bytes(key, b"a", content_type="application/json")
    store.put_bytes(key, b"b", content_type="application/json")
    names = sorted(p.name for p in (tmp_path / "tiklive-raw/2026/05/29/post-detail").iterdir())
    assert names == ["1.json.gz", f"1.json.gz.conflict-{_sha(b'b')[:16]}"]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_concurrent_writers_of_one_key_never_overwrite(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    if backend == "local":
        store: ObjectStore = LocalStore(tmp_path)
    else:  # conditional writes only: the HEAD-then-put fallback has a race window by design
        store = S3Store(_client(request.getfixturevalue("moto_endpoint")), request.getfixturevalue("s3_bucket"))
    key = "tiklive-raw/2026/05/29/userid/race.json.gz"
    a, b = b"A" * 100_000, b"B" * 100_000
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda data: store.put_bytes(key, data, content_type="application/json"), [a, b] * 8))
    assert sum(r.status == "created" for r in results) == 1
    winner = store.get_bytes(key)
    loser = b if winner == a else a
    for r in results:
        assert r.status in (("created", "identical") if r.sha256 == _sha(winner) else ("conflict",))
    assert {r.conflict_key for r in results if r.status == "conflict"} == {conflict_key(key, _sha(loser))}
    assert store.get_bytes(conflict_key(key, _sha(loser))) == loser


# -- mirror and URL --


def test_mirrored_store_writes_both_and_reads_primary(tmp_path: Path, moto_endpoint: str, s3_bucket: str) -> None:
    primary = S3Store(_client(moto_endpoint), s3_bucket, prefix="r2")
    secondary = LocalStore(tmp_path / "b2")
    mirror = MirroredStore(primary, secondary)
    key = raw_key(DAY, "userid", "cristiano")
    assert mirror.put_bytes(key, b"one", content_type="application/json", content_encoding="gzip").status == "created"
    assert primary.get_bytes(key) == secondary.get_bytes(key) == b"one"
    source = tmp_path / "v.mp4"
    source.write_bytes(b"video")
    vkey = video_key(DAY, "alice123", "1")
    assert mirror.put_file(vkey, source, content_type="video/mp4").status == "created"
    assert secondary.get_bytes(vkey) == b"video" and mirror.get_bytes(vkey) == b"video"
    assert mirror.put_bytes(key, b"one", content_type="application/json").status == "identical"
    assert [o.key for o in mirror.list()] == sorted([key, vkey])
    assert primary.describe() in mirror.describe() and secondary.describe() in mirror.describe()
    mirror.delete(key)
    assert not primary.exists(key) and not secondary.exists(key)


def test_store_from_url(tmp_path: Path, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    local = store_from_url(f"file://{tmp_path}/archive")
    assert isinstance(local, LocalStore) and local.describe() == str(tmp_path / "archive")
    assert isinstance(store_from_url(str(tmp_path / "plain")), LocalStore)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    remote = store_from_url(
        f"s3://{s3_bucket}/raw/?endpoint_url={moto_endpoint}&region=us-east-1&conditional_writes=false"
    )
    assert isinstance(remote, S3Store) and remote.prefix == "raw" and remote.conditional_writes is False
    assert remote.put_bytes("a/b.json", b"{}", content_type="application/json").status == "created"
    assert _client(moto_endpoint).get_object(Bucket=s3_bucket, Key="raw/a/b.json")["Body"].read() == b"{}"

    for bad in ["s3://key:secret@bucket/x", "s3://bucket?endpoint=x", "ftp://x/y", "s3://b?conditional_writes=maybe"]:
        with pytest.raises(InvalidStoreUrl) as info:
            store_from_url(bad)
        assert "secret" not in str(info.value)


def test_a_secondary_failure_keeps_the_primary_write_and_flags_the_key(tmp_path):
    from tiklive_assets.storage import LocalStore, MirroredStore

    blocker = tmp_path / "secondary"
    blocker.write_text("a file where the secondary's directory should be: every write there fails")
    mirror = MirroredStore(LocalStore(tmp_path / "primary"), LocalStore(blocker))
    result = mirror.put_bytes("tiklive-raw/2026/11/24/userid/bob.json.gz", b"x", content_type="application/json")
    assert result.status == "created"
    assert mirror.get_bytes("tiklive-raw/2026/11/24/userid/bob.json.gz") == b"x"
    assert mirror.unreplicated == ["tiklive-raw/2026/11/24/userid/bob.json.gz"]
    # ... and journals it durably in the primary, where every process and host that writes can see it
    assert (
        mirror.primary.get_bytes("_mirror/unreplicated/tiklive-raw/2026/11/24/userid/bob.json.gz")
        == b"tiklive-raw/2026/11/24/userid/bob.json.gz"
    )
    assert [i.key for i in mirror.list("")] == ["tiklive-raw/2026/11/24/userid/bob.json.gz"]


def test_the_mirror_names_content_types_from_keys_and_journals_long_keys_by_hash() -> None:
    from tiklive_assets.storage.mirror import content_type_for, marker_key

    assert content_type_for("tiklive-raw/2026/05/29/userid/bob.json.gz") == ("application/json", "gzip")
    assert content_type_for("tiklive-raw/2026/05/29/userid/bob.json.gz.conflict-0123456789abcdef") == (
        "application/json",
        "gzip",
    )
    assert content_type_for("videos/dt=2026-05-29/author=bob/1.mp4") == ("video/mp4", None)
    assert content_type_for("covers/dt=2026-05-29/1.jpg") == ("image/jpeg", None)
    long_key = "a/" + "x" * 1010
    assert marker_key(long_key).startswith("_mirror/unreplicated/_long/") and len(marker_key(long_key)) < 1024


def test_local_disk_errors_are_systemic_store_errors_naming_the_path(tmp_path: Path) -> None:
    import errno

    from tiklive_assets.storage import LocalStore, StoreUnavailable

    class Failing(LocalStore):
        def _publish(self, path, write):  # noqa: ANN001 - the OS layer failing (no small filesystem can be mounted)
            raise OSError(errno.EIO, "Input/output error", str(path))

    with pytest.raises(StoreUnavailable, match=f"Input/output error.*{tmp_path}.*TIKLIVE_HOME"):
        Failing(tmp_path).put_bytes("a/b.json", b"{}", content_type="application/json")
    assert LocalStore(tmp_path).stat("a/b.json") is None  # a missing key is still None, never an error


def test_s3_large_upload_never_overwrites_a_key_written_meanwhile(
    moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    """The multipart path completes with IfNoneMatch='*': if another writer got there after our HEAD, we lose."""
    client = _client(moto_endpoint)
    store = S3Store(client, s3_bucket, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    source = tmp_path / "big.mp4"
    source.write_bytes(os.urandom(11 * MIB))
    key = video_key(DAY, "alice123", "7387261234567890124")
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"the other writer's bytes")  # lands after our HEAD
    assert store._multipart_if_absent(key, source, {"ContentType": "video/mp4"}) is False
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"the other writer's bytes"
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")  # ours was aborted


# -- S3 Object Lock: the store's own legal holds ------------------------------------------------------------------


def _lock_bucket(client) -> str:
    import uuid

    name = f"tiklive-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_s3_on_an_object_lock_bucket_writes_as_ever_and_deletes_every_version(moto_endpoint: str) -> None:
    from tiklive_assets.storage.base import ObjectLocked

    client = _client(moto_endpoint)
    bucket = _lock_bucket(client)
    store = S3Store(client, bucket, prefix="archive")
    key = raw_key(DAY, "userid", "bob")
    assert store.put_bytes(key, b"one", content_type="application/json").status == "created"
    assert store.put_bytes(key, b"one", content_type="application/json").status == "identical"
    assert store.put_bytes(key, b"two", content_type="application/json").status == "conflict"
    assert store.object_lock_enabled() and [s.enforced for s in store.lock_status()] == [True]

    store.delete(key)  # every version goes: no delete marker hiding the bytes
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"archive/{key}")
    assert [v for v in versions.get("Versions", []) if v["Key"] == f"archive/{key}"] == []
    assert [m for m in versions.get("DeleteMarkers", []) if m["Key"] == f"archive/{key}"] == []

    # a held older version: the store refuses, and the current version (deleted last) is still there
    client.put_object(Bucket=bucket, Key=f"archive/{key}", Body=b"old")
    assert store.set_legal_hold([key], True) == 1
    client.put_object(Bucket=bucket, Key=f"archive/{key}", Body=b"new")
    assert store.is_locked(key)
    with pytest.raises(ObjectLocked) as refused:
        store.delete(key)
    assert refused.value.key == key and "Object Lock" in str(refused.value)
    assert store.get_bytes(key) == b"new"
    assert store.set_legal_hold([key], False) == 2 and not store.is_locked(key)  # every version of the key
    store.delete(key)
    assert not store.exists(key)


def test_lock_status_names_who_enforces_legal_holds(tmp_path: Path, moto_endpoint: str, s3_bucket: str) -> None:
    local = LocalStore(tmp_path / "archive")
    plain = S3Store(_client(moto_endpoint), s3_bucket)
    (disk,) = local.lock_status()
    (bucket,) = plain.lock_status()
    assert not disk.enforced and "local disk" in disk.detail and disk.where == str(local.root)
    assert not bucket.enforced and "not created with Object Lock" in bucket.detail and s3_bucket in bucket.where
    assert local.set_legal_hold(["a/b"], True) == 0 and plain.set_legal_hold(["a/b"], True) == 0
    assert not plain.is_locked("a/b") and not plain.object_lock_enabled()
    assert [s.where for s in MirroredStore(local, plain).lock_status()] == [disk.where, bucket.where]


def test_s3_object_tags_read_back(tmp_path: Path, moto_endpoint: str, s3_bucket: str) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, s3_bucket, prefix="archive")
    key = raw_key(DAY, "userid", "bob")
    store.put_bytes(key, b"{}", content_type="application/json")
    assert store.has_object_tags() and store.get_tags(key) == {}
    client.put_object_tagging(
        Bucket=s3_bucket, Key=f"archive/{key}", Tagging={"TagSet": [{"Key": "legal-hold", "Value": "case-42"}]}
    )
    assert store.get_tags(key) == {"legal-hold": "case-42"}
    assert store.get_tags(raw_key(DAY, "userid", "nobody")) == {}
    local = LocalStore(tmp_path / "archive")
    assert not local.has_object_tags() and local.get_tags(key) == {}
    assert MirroredStore(store, local).get_tags(key) == {"legal-hold": "case-42"}

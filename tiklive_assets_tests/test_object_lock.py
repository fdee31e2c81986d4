"""Legal holds the store enforces: S3 Object Lock legal holds on a real moto server (127.0.0.1, boto3's
endpoint_url), the software fallback on a bucket without Object Lock and on local disk, and holds by tag and by
user id covering exactly the right keys."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import uuid
import zlib
from datetime import date
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tiklive_assets.compliance import LegalHoldError, LegalHolds, RetentionPolicy, apply_retention, erase_user
from tiklive_assets.compliance.legal_hold import KeySetTags, parse_tag
from tiklive_assets.compliance.retention import STORE_LOCK, lifecycle_rules
from tiklive_assets.sandbox import Corpus
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore, MirroredStore, ObjectStore, S3Store, make_s3_client, raw_key
from tiklive_assets.storage.base import ObjectLocked
from tiklive_assets_tests.support.archive import write_archive_day

DAY1, DAY2 = date(2025, 3, 14), date(2025, 3, 15)
CAPTURED = date(2026, 5, 27)  # a day of the sandbox corpus (it starts 2025-06-01)
CORPUS = Corpus(seed=7)
BOB = CORPUS.account("bob")
ALICE = CORPUS.account("alice123")
PREFIX = "archive"  # the store's own prefix inside the bucket: every raw S3 call below names full keys


def _client(endpoint: str):
    return make_s3_client(
        endpoint_url=endpoint, region_name="us-east-1", access_key_id="testing", secret_access_key="testing"
    )


@pytest.fixture
def lock_bucket(moto_endpoint: str) -> str:
    """A new bucket created with S3 Object Lock enabled (versioning on for good)."""
    name = f"tiklive-lock-{uuid.uuid4().hex[:12]}"
    _client(moto_endpoint).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def state(tmp_path: Path):
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as db:
        yield db


def _put(store: ObjectStore, key: str, body: object) -> str:
    data = gzip.compress(json.dumps(body).encode(), mtime=0)
    store.put_bytes(key, data, content_type="application/json", content_encoding="gzip")
    return key


def _versions(client, bucket: str, key: str) -> list[dict]:
    page = client.list_object_versions(Bucket=bucket, Prefix=f"{PREFIX}/{key}")
    return [v for v in page.get("Versions", []) if v["Key"] == f"{PREFIX}/{key}"]


def _hold_status(client, bucket: str, key: str) -> set[str]:
    """The legal hold status of every version of ``key`` ({"ON"}, {"OFF"}, {"NONE"} when never set)."""
    statuses = set()
    for version in _versions(client, bucket, key):
        try:
            got = client.get_object_legal_hold(Bucket=bucket, Key=f"{PREFIX}/{key}", VersionId=version["VersionId"])
            statuses.add(got.get("LegalHold", {}).get("Status") or "NONE")
        except ClientError:
            statuses.add("NONE")
    return statuses


def _two_days(store: ObjectStore) -> dict[str, str]:
    keys = {}
    for day in (DAY1, DAY2):
        keys[f"{day}-bob"] = _put(store, raw_key(day, "userinfo-by-id", BOB.id), {"user": {"id": BOB.id}})
        keys[f"{day}-alice"] = _put(store, raw_key(day, "userinfo-by-id", ALICE.id), {"user": {"id": ALICE.id}})
    return keys


def test_a_prefix_hold_locks_every_held_key_the_store_refuses_their_deletes_and_release_unlocks(
    moto_endpoint: str, lock_bucket: str, state: StateDB
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, lock_bucket, PREFIX)
    keys = _two_days(store)
    held_prefix = f"tiklive-raw/{DAY1:%Y/%m/%d}/"
    hold = LegalHolds(state).place(held_prefix, "case 42", who="counsel", store=store)

    assert store.object_lock_enabled()
    assert any("S3 Object Lock" in line for line in hold.enforcement)
    assert "S3 Object Lock legal hold ON on 2 object version(s)" in hold.enforcement
    assert LegalHolds(state).get(held_prefix).enforcement == hold.enforcement  # recorded with the hold
    for name, key in keys.items():
        assert _hold_status(client, lock_bucket, key) == ({"ON"} if name.startswith(str(DAY1)) else {"NONE"}), name

    # the store itself refuses: a delete of the locked version, whoever sends it
    locked = keys[f"{DAY1}-bob"]
    (version,) = _versions(client, lock_bucket, locked)
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=lock_bucket, Key=f"{PREFIX}/{locked}", VersionId=version["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ObjectLocked, match="Object Lock legal hold"):
        store.delete(locked)
    assert store.is_locked(locked) and store.get_bytes(locked)  # still there, still readable
    # an unheld key goes for good: every version, not just hidden behind a delete marker
    store.delete(keys[f"{DAY2}-alice"])
    page = client.list_object_versions(Bucket=lock_bucket, Prefix=f"{PREFIX}/{keys[f'{DAY2}-alice']}")
    assert page.get("Versions", []) == [] and page.get("DeleteMarkers", []) == []

    assert LegalHolds(state).release(held_prefix, store=store)
    assert _hold_status(client, lock_bucket, locked) == {"OFF"} and not store.is_locked(locked)
    store.delete(locked)
    assert not store.exists(locked) and _versions(client, lock_bucket, locked) == []
    assert LegalHolds(state).list() == []


def test_release_keeps_what_another_hold_still_covers_locked(
    moto_endpoint: str, lock_bucket: str, state: StateDB
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, lock_bucket, PREFIX)
    keys = _two_days(store)
    holds = LegalHolds(state)
    holds.place("tiklive-raw/", "case 1", store=store)
    KeySetTags(state).tag("legal-hold=case-2", [keys[f"{DAY2}-bob"]])
    holds.place_tag("legal-hold=case-2", "case 2", store=store)
    assert holds.release("tiklive-raw/", store=store)
    assert _hold_status(client, lock_bucket, keys[f"{DAY2}-bob"]) == {"ON"}  # case 2 still holds it
    assert all(_hold_status(client, lock_bucket, k) == {"OFF"} for n, k in keys.items() if n != f"{DAY2}-bob")
    assert holds.release_tag("legal-hold=case-2", store=store)
    assert _hold_status(client, lock_bucket, keys[f"{DAY2}-bob"]) == {"OFF"}


def test_objects_written_under_a_prefix_hold_are_locked_by_a_refresh(
    moto_endpoint: str, lock_bucket: str, state: StateDB
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, lock_bucket, PREFIX)
    holds = LegalHolds(state)
    placed = holds.place("tiklive-raw/", "case 3", who="counsel", store=store)
    late = _put(store, raw_key(DAY1, "userid", "bob"), {"id": BOB.id})
    assert _hold_status(client, lock_bucket, late) == {"NONE"} and holds.covers(late) is not None  # tiklive holds it
    (refreshed,) = holds.refresh(store)
    assert _hold_status(client, lock_bucket, late) == {"ON"}
    assert (refreshed.placed_by, refreshed.placed_at) == (placed.placed_by, placed.placed_at)  # the record stays


def test_a_bucket_without_object_lock_keeps_software_enforcement_and_says_so(
    moto_endpoint: str, s3_bucket: str, state: StateDB, tmp_path: Path
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, s3_bucket, PREFIX)
    keys = _two_days(store)
    holds = LegalHolds(state)
    hold = holds.place(f"tiklive-raw/{DAY1:%Y/%m/%d}/", "case 42", store=store)
    assert not store.object_lock_enabled()
    (line,) = hold.enforcement
    assert "no S3 Object Lock (the bucket was not created with Object Lock)" in line
    assert "protected by tiklive" in line and s3_bucket in line
    listed = "\n".join(h.describe() for h in holds.list())
    assert "no S3 Object Lock" in listed and "case 42" in listed
    # the store does not refuse (only tiklive's jobs do): retention skips the held keys
    report = apply_retention(store, RetentionPolicy(delete_after_days=400), date(2026, 9, 29), holds)
    assert report.held_objects == 2 and report.deleted_objects == 2 and report.store_locked == []
    assert store.exists(keys[f"{DAY1}-bob"]) and not store.exists(keys[f"{DAY2}-bob"])

    local = LocalStore(tmp_path / "archive")
    _two_days(local)
    on_disk = holds.place("tiklive-raw/", "case 43", store=local)
    assert on_disk.enforcement == (f"{local.root}: local disk has no object lock: held keys are protected by tiklive",)

    mirror = MirroredStore(local, store)
    assert [s.enforced for s in mirror.lock_status()] == [False, False] and mirror.set_legal_hold(["x"], True) == 0


def test_a_mirror_locks_the_side_that_has_object_lock(
    moto_endpoint: str, lock_bucket: str, state: StateDB, tmp_path: Path
) -> None:
    client = _client(moto_endpoint)
    mirror = MirroredStore(LocalStore(tmp_path / "archive"), S3Store(client, lock_bucket, PREFIX))
    keys = _two_days(mirror)
    hold = LegalHolds(state).place("tiklive-raw/", "case 5", store=mirror)
    assert [s.enforced for s in mirror.lock_status()] == [False, True]
    assert "S3 Object Lock legal hold ON on 4 object version(s)" in hold.enforcement
    assert all(_hold_status(client, lock_bucket, k) == {"ON"} for k in keys.values())


def test_a_hold_by_tag_covers_exactly_the_tagged_objects(moto_endpoint: str, lock_bucket: str, state: StateDB) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, lock_bucket, PREFIX)
    keys = _two_days(store)
    video = "videos/dt=2025-03-14/author=bob/1.mp4"
    store.put_bytes(video, b"\x00mp4", content_type="video/mp4")
    tagged = {keys[f"{DAY1}-bob"], video}
    for key in tagged:  # S3 object tags, set by whoever prepares the case
        client.put_object_tagging(
            Bucket=lock_bucket, Key=f"{PREFIX}/{key}", Tagging={"TagSet": [{"Key": "legal-hold", "Value": "case-42"}]}
        )
    client.put_object_tagging(  # the same tag key with another case: not this hold
        Bucket=lock_bucket,
        Key=f"{PREFIX}/{keys[f'{DAY2}-alice']}",
        Tagging={"TagSet": [{"Key": "legal-hold", "Value": "case-7"}]},
    )
    KeySetTags(state).tag("legal-hold=case-42", [keys[f"{DAY2}-bob"]])  # a key-set tag recorded in the state DB
    holds = LegalHolds(state)
    hold = holds.place_tag("legal-hold=case-42", "case 42", store=store)

    expected = tagged | {keys[f"{DAY2}-bob"]}
    assert hold.prefix == "tag:legal-hold=case-42" and hold.kind == "tag" and hold.keys == expected
    everything = {info.key for info in store.list("")}
    assert {k for k in everything if holds.covers(k)} == expected
    assert {k for k in everything if _hold_status(client, lock_bucket, k) == {"ON"}} == expected
    assert (
        holds.place_tag("legal-hold=case-42", "case 42", store=store, within="videos/").keys == expected
    )  # grows only
    assert parse_tag(" legal-hold = case-42 ") == ("legal-hold", "case-42")
    with pytest.raises(ValueError, match="<key>=<value>"):
        holds.place_tag("legal-hold", "no value")


def test_a_hold_by_tag_on_local_disk_uses_the_key_set_tags(tmp_path: Path, state: StateDB) -> None:
    store = LocalStore(tmp_path / "archive")
    keys = _two_days(store)
    tags = KeySetTags(state)
    assert tags.tag("legal-hold=case-9", [keys[f"{DAY1}-alice"], keys[f"{DAY2}-alice"]]) == 2
    hold = LegalHolds(state).place_tag("legal-hold=case-9", "case 9", store=store)
    assert hold.keys == {keys[f"{DAY1}-alice"], keys[f"{DAY2}-alice"]}
    assert tags.untag("legal-hold=case-9", [keys[f"{DAY1}-alice"]]) == 1 and tags.untag("legal-hold=case-9") == 0
    report = apply_retention(store, RetentionPolicy(delete_after_days=400), date(2026, 9, 29), LegalHolds(state))
    assert report.held_prefixes == {"tag:legal-hold=case-9": 2}  # the hold keeps its keys after the untag
    assert {i.key for i in store.list("")} == hold.keys


_BOB_RE = re.compile(
    rb"(?<![0-9])" + BOB.id.encode() + rb'(?![0-9])|"(?:unique_id|uniqueId|username)": "bob"'
    rb"|@bob(?![A-Za-z0-9._])|author=bob/|/bob[-.]",
    re.IGNORECASE,
)


def _mentions_bob(store: ObjectStore, key: str) -> bool:
    data = store.get_bytes(key)
    with contextlib.suppress(zlib.error):
        data = zlib.decompress(data, 31)
    return _BOB_RE.search(key.encode()) is not None or _BOB_RE.search(data) is not None


def test_a_hold_by_user_id_covers_exactly_the_users_objects(tmp_path: Path, state: StateDB) -> None:
    from tiklive_assets.compliance import find_objects_for_user

    store = LocalStore(tmp_path / "archive")
    write_archive_day(store, CAPTURED, CORPUS)
    everything = {info.key for info in store.list("")}
    holds = LegalHolds(state)
    hold = holds.place_user(BOB.id, "case 11", store=store, handles=["@Bob"])

    assert hold.prefix == f"user:{BOB.id}" and hold.kind == "user"
    assert hold.keys == set(find_objects_for_user(store, user_id=BOB.id, handle="bob"))  # what an erasure touches
    assert {k for k in everything if _mentions_bob(store, k)} <= hold.keys  # every object mentioning bob
    assert raw_key(CAPTURED, "userinfo-by-id", BOB.id) in hold.keys and raw_key(CAPTURED, "userid", "bob") in hold.keys
    assert raw_key(CAPTURED, "userinfo-by-id", ALICE.id) not in hold.keys
    assert not any("/author=alice123/" in k for k in hold.keys) and any("/author=bob/" in k for k in hold.keys)
    assert dict(hold.selector) == {"user_id": BOB.id, "handles": "bob"}
    with pytest.raises(LegalHoldError, match="case 11"):
        erase_user(store, None, BOB.id, "bob", dry_run=False, holds=holds)
    assert {info.key for info in store.list("")} == everything
    # an index can stand in for the scan: the keys it names are what is held
    other = holds.place_user(ALICE.id, "case 12", store=store, find_keys=lambda uid, handles: [f"x/{uid}"])
    assert other.keys == {f"x/{ALICE.id}"}
    assert holds.release_user(BOB.id) and not holds.release_user(BOB.id)


def test_a_hold_by_user_id_locks_the_users_objects_in_the_bucket(
    moto_endpoint: str, lock_bucket: str, state: StateDB
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, lock_bucket, PREFIX)
    write_archive_day(store, CAPTURED, CORPUS)
    hold = LegalHolds(state).place_user(BOB.id, "case 11", store=store, handles=["bob"])
    everything = {info.key for info in store.list("")}
    assert hold.keys and {k for k in everything if _hold_status(client, lock_bucket, k) == {"ON"}} == hold.keys
    with pytest.raises(ObjectLocked):
        store.delete(raw_key(CAPTURED, "userinfo-by-id", BOB.id))


def test_retention_reports_a_delete_the_store_refused_as_held(
    moto_endpoint: str, lock_bucket: str, state: StateDB
) -> None:
    client = _client(moto_endpoint)
    store = S3Store(client, lock_bucket, PREFIX)
    keys = _two_days(store)
    locked = keys[f"{DAY1}-bob"]
    # a legal hold set on the bucket by another tool: tiklive has no record of it, the store still refuses
    (version,) = _versions(client, lock_bucket, locked)
    client.put_object_legal_hold(
        Bucket=lock_bucket, Key=f"{PREFIX}/{locked}", VersionId=version["VersionId"], LegalHold={"Status": "ON"}
    )
    report = apply_retention(store, RetentionPolicy(delete_after_days=400), date(2026, 9, 29), LegalHolds(state))
    assert report.store_locked == [locked] and report.held_prefixes == {STORE_LOCK: 1}
    assert report.held_objects == 1 and report.deleted_objects == 3 and report.held_days == [DAY1]
    assert "1 refused by the store's Object Lock" in report.summary()
    assert {info.key for info in store.list("")} == {locked}


def test_lifecycle_expiration_leaves_the_days_of_tag_and_user_holds_out(state: StateDB, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    keys = _two_days(store)
    holds = LegalHolds(state)
    holds.place_user(BOB.id, "case 11", store=store, find_keys=lambda uid, handles: [keys[f"{DAY1}-bob"]])
    rules = lifecycle_rules(RetentionPolicy(delete_after_days=730), holds)["Rules"]
    prefixes = [r["Filter"]["Prefix"] for r in rules if "Expiration" in r]
    assert not any(keys[f"{DAY1}-alice"].startswith(p) for p in prefixes)  # the held key's whole day stays
    assert any(keys[f"{DAY2}-alice"].startswith(p) for p in prefixes)


def test_tiklive_hold_places_by_prefix_tag_and_user_and_lists_who_enforces_them(tmp_path: Path, capsys) -> None:
    from tiklive_assets.cli import main

    store = LocalStore(tmp_path / "archive")
    keys = _two_days(store)
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as db:
        KeySetTags(db).tag("legal-hold=case-42", [keys[f"{DAY2}-alice"]])
    home = ["--home", str(tmp_path)]
    assert main(["hold", "place", "tiklive-raw/2025/03/14/", "--reason", "case 41", *home]) == 0
    assert main(["hold", "place", "--tag", "legal-hold=case-42", "--reason", "case 42", *home]) == 0
    assert main(["hold", "place", "--user-id", BOB.id, "--handle", "bob", "--reason", "case 43", *home]) == 0
    capsys.readouterr()
    assert main(["hold", "list", *home]) == 0
    listed = capsys.readouterr().out
    assert "tiklive-raw/2025/03/14/" in listed and "tag:legal-hold=case-42 (1 object(s))" in listed
    assert f"user:{BOB.id} (2 object(s))" in listed and "local disk has no object lock" in listed
    assert main(["hold", "place", "tiklive-raw/", "--tag", "a=b", "--reason", "x", *home]) == 2  # one of the three
    assert main(["hold", "release", "--tag", "legal-hold=case-42", *home]) == 0
    assert main(["hold", "release", "--user-id", BOB.id, *home]) == 0
    assert "released" in capsys.readouterr().out
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as db:
        assert [h.prefix for h in LegalHolds(db).list()] == ["tiklive-raw/2025/03/14/"]

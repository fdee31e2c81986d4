"""Compaction: a day's loose raw objects become one verified bundle per endpoint; holds stay loose; crash-safe."""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
import signal
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tiklive_assets.compliance.compaction import compact_day
from tiklive_assets.compliance.legal_hold import Hold, HoldSet
from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore, ObjectStore, S3Store, make_s3_client, raw_key
from tiklive_assets.storage.bundles import (
    BUNDLE_PREFIX,
    bundle_key,
    bundles_of_day,
    day_objects,
    parse_bundle_key,
    read_bundle,
    read_index,
)
from tiklive_assets.storage.keys import conflict_key
from tiklive_assets_tests.support.archive import write_archive_day

DAY = date(2026, 4, 2)


def _archive(store: ObjectStore) -> None:
    write_archive_day(store, DAY, Corpus(seed=3))
    write_archive_day(store, date(2026, 4, 3), Corpus(seed=3))  # the next day: never touched
    key = raw_key(DAY, "userinfo-by-id", "123")
    store.put_bytes(key, gzip.compress(b'{"a": 1}'), content_type="application/json")
    store.put_bytes(key, gzip.compress(b'{"a": 2}'), content_type="application/json")  # a conflict copy beside it


def _snapshot(store: ObjectStore, day: date = DAY) -> dict[str, tuple[bytes, datetime]]:
    seen = list(day_objects(store, day))
    assert len(seen) == len({k for k, _, _ in seen})  # each key once
    return {k: (b, t) for k, b, t in seen}


def _loose(store: ObjectStore, day: date = DAY) -> list[str]:
    return [i.key for i in store.list(f"tiklive-raw/{day:%Y/%m/%d}/")]


def _hold(prefix: str) -> Hold:
    return Hold(prefix, "litigation", "legal", "2026-04-30T00:00:00Z")


def test_a_day_becomes_one_verified_bundle_per_endpoint(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    _archive(store)
    before, other_day = _snapshot(store), _snapshot(store, date(2026, 4, 3))
    loose_before = _loose(store)
    dry = compact_day(store, DAY, dry_run=True)
    assert dry.objects_packed == len(loose_before) and dry.loose_deleted == 0
    assert _loose(store) == loose_before and not list(store.list(BUNDLE_PREFIX + "/"))  # a dry run writes nothing
    result = compact_day(store, DAY)
    endpoints = sorted({k.split("/")[4] for k in loose_before})
    assert result.bundles_written == [bundle_key("tiklive-raw", DAY, e) for e in endpoints]
    assert result.objects_packed == result.loose_deleted == len(loose_before)
    assert result.bytes_packed == sum(len(b) for b, _ in before.values())
    assert (result.objects_before, result.objects_after) == (len(loose_before), len(endpoints))
    assert dry.objects_after == result.objects_after and result.held_left_loose == []
    assert _loose(store) == []
    assert _snapshot(store) == before  # the same bytes and fetch times, now from bundles
    assert _snapshot(store, date(2026, 4, 3)) == other_day and _loose(store, date(2026, 4, 3))
    conflict = next(k for k in before if ".conflict-" in k)
    assert conflict in read_bundle(store, bundle_key("tiklive-raw", DAY, "userinfo-by-id"))
    again = compact_day(store, DAY)  # idempotent: nothing left to pack
    assert again.objects_packed == again.loose_deleted == 0 and again.bundles_written == []
    assert again.objects_after == len(endpoints)


def test_late_objects_go_into_a_complete_new_generation(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    _archive(store)
    compact_day(store, DAY)
    late = raw_key(DAY, "user-posts", "99-cursor0")
    store.put_bytes(late, gzip.compress(b"late"), content_type="application/json")
    # the same key written again once compaction deleted the loose copy: different bytes, kept beside the first
    detail = next(m.key for m in read_index(store, bundle_key("tiklive-raw", DAY, "post-detail")))
    again = gzip.compress(b"again")
    store.put_bytes(detail, again, content_type="application/json")
    first = _snapshot(store)  # the bundle's bytes win over the loose copy at the same key
    result = compact_day(store, DAY)
    assert sorted(result.bundles_written) == [
        bundle_key("tiklive-raw", DAY, "post-detail", 2),
        bundle_key("tiklive-raw", DAY, "user-posts", 2),
    ]
    assert result.objects_packed == 2 and _loose(store) == []
    assert bundles_of_day(store, DAY).count(bundle_key("tiklive-raw", DAY, "user-posts")) == 0  # generation 1 gone
    moved = conflict_key(detail, hashlib.sha256(again).hexdigest())
    after = _snapshot(store)
    assert after.pop(moved)[0] == again  # the new bytes, beside the first ones
    assert after == first


def test_held_keys_stay_loose_and_a_held_bundle_is_not_replaced(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    _archive(store)
    before = _snapshot(store)
    held_prefix = f"tiklive-raw/{DAY:%Y/%m/%d}/post-detail/"
    held_keys = [k for k in before if k.startswith(held_prefix)]
    result = compact_day(store, DAY, holds=HoldSet([_hold(held_prefix)]))
    assert result.held_left_loose == sorted(held_keys) and held_keys
    assert _loose(store) == sorted(held_keys)
    assert bundle_key("tiklive-raw", DAY, "post-detail") not in bundles_of_day(store, DAY)
    assert _snapshot(store) == before
    # a hold placed after compaction on a bundled member: a late object of that endpoint stays loose
    member = read_index(store, bundle_key("tiklive-raw", DAY, "user-posts"))[0].key
    late = raw_key(DAY, "user-posts", "99-cursor0")
    store.put_bytes(late, gzip.compress(b"late"), content_type="application/json")
    again = compact_day(store, DAY, holds=HoldSet([_hold(member)]))
    assert again.endpoints["user-posts"].held_bundle == member and again.held_left_loose == [late]
    assert again.endpoints["post-detail"].packed == len(held_keys)  # that hold released: packed now
    assert bundles_of_day(store, DAY).count(bundle_key("tiklive-raw", DAY, "user-posts")) == 1
    assert store.exists(late) and compact_day(store, DAY).objects_packed == 1  # the member's hold released


def test_compaction_on_s3(moto_endpoint: str, s3_bucket: str) -> None:
    store = S3Store(make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1"), s3_bucket, "archive")
    _archive(store)
    before = _snapshot(store)
    result = compact_day(store, DAY)
    assert result.loose_deleted == len(before) and _loose(store) == []
    assert _snapshot(store) == before


def _crash_child(root: str, point: str) -> None:
    os.environ["TIKLIVE_CRASH_AT"] = point
    from tiklive_assets import crashpoints

    crashpoints.rearm()
    from tiklive_assets.compliance import compaction

    compaction.DELETE_BATCH = 2  # crash points between small batches: mid-endpoint, not only between endpoints
    compact_day(LocalStore(root), DAY)
    os._exit(0)


@pytest.mark.parametrize(
    "point",
    [
        "compaction.bundle.written",
        "compaction.bundle.written:3",
        "compaction.loose.deleted",
        "compaction.loose.deleted:7",
        "compaction.generation.deleted",
    ],
)
def test_killed_anywhere_a_rerun_converges(tmp_path: Path, point: str) -> None:
    store = LocalStore(tmp_path / "archive")
    _archive(store)
    if point.startswith("compaction.generation"):  # a second generation replaces the first
        compact_day(store, DAY)
        store.put_bytes(raw_key(DAY, "user-posts", "99-cursor0"), gzip.compress(b"late"), content_type="a/b")
    before = _snapshot(store)
    child = multiprocessing.get_context("fork").Process(target=_crash_child, args=(str(store.root), point))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL, f"{point} was never reached"
    assert _snapshot(store) == before  # killed: nothing lost, nothing read twice
    result = compact_day(store, DAY)
    assert result.held_left_loose == [] and _loose(store) == []
    assert _snapshot(store) == before
    live = bundles_of_day(store, DAY)
    endpoints = [parse_bundle_key(k).endpoint for k in live]  # type: ignore[union-attr]
    assert len(endpoints) == len(set(endpoints))  # one generation per endpoint: stale ones are gone
    members = [m.key for key in live for m in read_index(store, key)]
    assert sorted(members) == sorted(before)  # no duplicates, no loss
    assert compact_day(store, DAY).bundles_written == []


def test_fetch_time_of_a_headerless_gzip_survives(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    key = raw_key(DAY, "userid", "bob")
    store.put_bytes(key, gzip.compress(b'{"id": "1"}', mtime=0), content_type="application/json")
    moment = datetime(2026, 4, 2, 9, 15, 30, 250000, tzinfo=UTC).timestamp()
    os.utime(store.root / key, (moment, moment))
    compact_day(store, DAY)
    ((_, _, fetched),) = list(day_objects(store, DAY))
    assert fetched == datetime(2026, 4, 2, 9, 15, 30, 250000, tzinfo=UTC)


def test_a_loose_object_erased_while_compaction_packs_it_does_not_come_back(tmp_path: Path, monkeypatch) -> None:
    """An erasure deletes a loose object after compaction read it and before its bundle is checked: the object is
    left out of the live bundle, the generation that held it is deleted, and every other object stays."""
    import tiklive_assets.compliance.compaction as compaction

    store = LocalStore(tmp_path / "archive")
    _archive(store)
    compact_day(store, DAY)  # generation 1 of every endpoint
    late = [raw_key(DAY, "user-posts", f"9{i}-cursor0") for i in range(3)]
    for i, key in enumerate(late):
        store.put_bytes(key, gzip.compress(b"late %d" % i), content_type="application/json")
    erased = late[1]
    before = _snapshot(store)
    real = compaction.crashpoint

    def erase_meanwhile(name: str) -> None:  # the erasure's delete, between compaction's read and its check
        if name == "compaction.bundle.written" and store.exists(erased):
            store.delete(erased)
        real(name)

    monkeypatch.setattr(compaction, "crashpoint", erase_meanwhile)
    result = compact_day(store, DAY)
    outcome = result.endpoints["user-posts"]
    assert outcome.vanished == [erased] and "deleted meanwhile" in result.summary()
    live = bundle_key("tiklive-raw", DAY, "user-posts", 3)  # generation 2 held the erased object: replaced
    assert outcome.bundle == live and bundles_of_day(store, DAY).count(live) == 1
    assert not [k for k in bundles_of_day(store, DAY) if parse_bundle_key(k).endpoint == "user-posts" and k != live]
    assert erased not in {m.key for key in bundles_of_day(store, DAY) for m in read_index(store, key)}
    assert _loose(store) == [] and outcome.packed == 2 and outcome.deleted == 2
    del before[erased]
    assert _snapshot(store) == before


def test_all_new_objects_erased_meanwhile_leave_the_live_bundle_as_it_was(tmp_path: Path, monkeypatch) -> None:
    import tiklive_assets.compliance.compaction as compaction

    store = LocalStore(tmp_path / "archive")
    _archive(store)
    compact_day(store, DAY)
    late = raw_key(DAY, "user-posts", "99-cursor0")
    store.put_bytes(late, gzip.compress(b"late"), content_type="application/json")
    before = _snapshot(store)
    monkeypatch.setattr(compaction, "crashpoint", lambda name: store.delete(late) if store.exists(late) else None)
    result = compact_day(store, DAY)
    first = bundle_key("tiklive-raw", DAY, "user-posts")
    assert result.endpoints["user-posts"].bundle == first and not result.endpoints["user-posts"].written
    assert [k for k in bundles_of_day(store, DAY) if parse_bundle_key(k).endpoint == "user-posts"] == [first]
    del before[late]
    assert _snapshot(store) == before


def test_a_hold_on_the_bundles_keeps_their_stale_generations(tmp_path: Path) -> None:
    from tiklive_assets.compliance.bundled import settle_generations
    from tiklive_assets.storage.bundles import Member, write_bundle

    store = LocalStore(tmp_path / "archive")
    _archive(store)
    compact_day(store, DAY)
    first = bundle_key("tiklive-raw", DAY, "user-posts")
    extra = raw_key(DAY, "user-posts", "99-cursor0")
    body = gzip.compress(b"late")
    member = Member(extra, hashlib.sha256(body).hexdigest(), len(body), datetime(2026, 4, 2, tzinfo=UTC))
    items = [*read_bundle(store, first), (member, body)]
    second = bundle_key("tiklive-raw", DAY, "user-posts", 2)
    write_bundle(store, second, items)  # a rewrite interrupted before generation 1 was deleted
    hold = HoldSet([_hold(f"{BUNDLE_PREFIX}/")])
    result = compact_day(store, DAY, holds=hold)
    assert result.endpoints["user-posts"].generations_kept == [first] and store.exists(first)
    assert result.endpoints["user-posts"].generations_deleted == 0 and "stale bundle generation" in result.summary()
    kept: list[str] = []
    assert settle_generations(store, holds=hold, kept=kept) == [] and kept == [first] and store.exists(first)
    assert settle_generations(store) == [first] and not store.exists(first)  # the hold released

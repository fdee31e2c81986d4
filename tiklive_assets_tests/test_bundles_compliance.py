"""Erasure, legal holds and retention on compacted days: the raw objects live as members of bundles.

The archive is the compliance tests' fabricated day (the sandbox corpus plus shared pages where bob is one item
among many), packed into bundles exactly as compaction packs a day (``support.bundles.compact_day``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import zlib
from datetime import date
from pathlib import Path

import pytest

from tiklive_assets.compliance import LegalHoldError, LegalHolds, erase_user, find_objects_for_user
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore, ObjectStore, raw_key
from tiklive_assets.storage.bundles import bundles_of_day, parse_bundle_key, read_bundle
from tiklive_assets.storage.keys import RESEARCH_PREFIX
from tiklive_assets.warehouse import load_days, open_warehouse
from tiklive_assets_tests.support.bundles import compact_day, day_bytes
from tiklive_assets_tests.test_compliance import _BOB_RE, ALICE, BOB, build_archive

DAY = date(2026, 5, 28)


def bundled_mentions(store: ObjectStore) -> list[str]:
    """Members of any bundle (live or stale) that still mention bob, and bundle keys naming him."""
    found = []
    for prefix in ("tiklive-raw", RESEARCH_PREFIX):
        for bundle in bundles_of_day(store, DAY, prefix):
            for member, body in read_bundle(store, bundle):
                text = body
                with contextlib.suppress(zlib.error):
                    text = zlib.decompress(body, 31)
                if _BOB_RE.search(member.key.encode()) or _BOB_RE.search(text):
                    found.append(member.key)
    return found


def all_bundles(store: ObjectStore) -> list[str]:
    return [*bundles_of_day(store, DAY), *bundles_of_day(store, DAY, RESEARCH_PREFIX)]


def every_member(store: ObjectStore) -> dict[str, str]:
    return {**day_bytes(store, DAY), **day_bytes(store, DAY, RESEARCH_PREFIX)}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory):
    """The day archived, indexed by a load (the index part names raw keys), then compacted: built once."""
    root = tmp_path_factory.mktemp("compacted")
    store = LocalStore(root / "archive")
    keys = build_archive(store, [DAY])
    loose_plan = find_objects_for_user(store, user_id=BOB.id, handle="bob")
    with open_warehouse(str(root / "warehouse.duckdb")) as wh:
        load_days(store, wh, [DAY], index_store=store)
    bundles = compact_day(store, DAY)
    assert bundles and not [i for i in store.list("tiklive-raw/") if i.key.endswith(".json.gz")]
    return root, keys, loose_plan


@pytest.fixture
def compacted(template, tmp_path: Path):
    """A copy of the compacted day of its own (archive and warehouse), with a state DB."""
    root, keys, loose_plan = template
    shutil.copytree(root / "archive", tmp_path / "archive")
    shutil.copy(root / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    state = StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield LocalStore(tmp_path / "archive"), state, keys, loose_plan
    state.close()


def test_erasure_finds_the_same_objects_in_bundles_through_the_index_and_the_full_scan(compacted) -> None:
    store, state, keys, loose_plan = compacted
    raw_planned = {k for k in loose_plan if k.startswith(("tiklive-raw/", "research-raw/"))}
    assert raw_planned and keys["hashtag"] in raw_planned
    indexed = erase_user(store, None, BOB.id, "bob", dry_run=True, state=state)
    scanned = erase_user(store, None, BOB.id, "bob", dry_run=True, state=state, use_index=False)
    assert indexed.index_days == 1 and not indexed.scanned_days  # the compacted day is indexed, not rescanned
    assert indexed.keys == scanned.keys == loose_plan  # the same plan as before compaction, by either path
    assert indexed.bodies_read < scanned.scanned_objects
    verified = erase_user(store, None, BOB.id, "bob", dry_run=True, state=state, verify_scan=True)
    assert verified.index_missed == [] and verified.keys == loose_plan


def test_erasure_rewrites_bundles_without_the_user_and_keeps_everyone_elses_bytes(compacted) -> None:
    store, state, keys, loose_plan = compacted
    before = every_member(store)
    generations = {k: parse_bundle_key(k) for k in bundles_of_day(store, DAY)}
    report = erase_user(store, None, BOB.id, "bob", dry_run=False, state=state)
    after = every_member(store)
    assert bundled_mentions(store) == []
    assert find_objects_for_user(store, user_id=BOB.id, handle="bob") == []
    deleted = {k for k in report.deleted if k in before}
    redacted = set(report.redacted) & set(before)
    assert deleted and redacted >= {keys["hashtag"], keys["following"], keys["comments"]}
    assert set(after) == set(before) - deleted  # nothing else left the day
    assert {k: v for k, v in after.items() if k not in redacted} == {
        k: v for k, v in before.items() if k not in deleted | redacted
    }  # every other member byte for byte
    assert all(after[k] != before[k] for k in redacted)
    assert raw_key(DAY, "userinfo-by-id", ALICE.id) in after
    # each rewritten bundle went to its next generation, the old one deleted; untouched bundles stayed as they were
    now = {k: parse_bundle_key(k) for k in bundles_of_day(store, DAY)}
    rewritten = {p.endpoint for k, p in generations.items() if p and k not in now}
    assert rewritten and all(p is not None and (p.generation == 2) == (p.endpoint in rewritten) for p in now.values())
    assert erase_user(store, None, BOB.id, "bob", dry_run=False, state=state).keys == []


def test_a_hold_on_another_member_of_a_bundle_refuses_the_erasure(compacted) -> None:
    store, state, keys, _plan = compacted
    holds = LegalHolds(state)
    # alice's own following page: not bob's, but in the bundle the erasure must rewrite for bob's page
    held = raw_key(DAY, "user-following", f"{ALICE.id}-time0")
    holds.place(held, "case 9", store=store)
    before = every_member(store)
    preview = erase_user(store, None, BOB.id, "bob", dry_run=True, holds=holds)
    assert list(preview.held) == [held] and preview.held[held] >= 1  # bob's pages share its bundle
    with pytest.raises(LegalHoldError, match="case 9"):
        erase_user(store, None, BOB.id, "bob", dry_run=False, holds=holds)
    assert every_member(store) == before
    holds.release(held, store=store)
    erase_user(store, None, BOB.id, "bob", dry_run=False, holds=holds)
    assert bundled_mentions(store) == [] and keys["following"] in every_member(store)


def test_an_erasure_killed_between_the_new_generation_and_the_old_delete_converges(compacted, tmp_path) -> None:
    store, state, _keys, _plan = compacted
    before = every_member(store)
    script = (
        "import sys; from pathlib import Path;"
        "from tiklive_assets.compliance.erasure import erase_user;"
        "from tiklive_assets.state import StateDB; from tiklive_assets.storage import LocalStore;"
        "t = Path(sys.argv[1]); state = StateDB.from_url(f'sqlite:///{t / \"state.sqlite\"}');"
        f"erase_user(LocalStore(t / 'archive'), None, user_id='{BOB.id}', handle='bob', dry_run=False, state=state)"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "TIKLIVE_CRASH_AT": "erasure.bundle.written"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    parsed = [parse_bundle_key(k) for k in all_bundles(store)]
    stale = [
        p
        for p in parsed
        if p
        and any(
            q and (q.archive_prefix, q.endpoint) == (p.archive_prefix, p.endpoint) and q.generation > p.generation
            for q in parsed
        )
    ]
    assert len(stale) == 1 and bundled_mentions(store)  # the old generation, bob still in it, beside the new one
    # readers already see the new generation: the crash lost nothing of anyone else
    assert set(every_member(store)) <= set(before)
    report = erase_user(store, None, BOB.id, "bob", dry_run=False, state=state)
    assert bundled_mentions(store) == [] and report.keys
    parsed = [parse_bundle_key(k) for k in all_bundles(store)]
    assert len({(p.archive_prefix, p.endpoint) for p in parsed if p}) == len(
        parsed
    )  # one generation per endpoint again
    survivors = every_member(store)
    assert set(before) - set(survivors) <= set(_plan)  # only bob's objects left the day
    assert {k: v for k, v in survivors.items() if k not in _plan} == {k: v for k, v in before.items() if k not in _plan}


def test_a_user_hold_from_the_cli_finds_bundled_keys_through_the_index(compacted, tmp_path, monkeypatch) -> None:
    import tiklive_assets.compliance.erasure as erasure
    from tiklive_assets.cli import main
    from tiklive_assets.warehouse.archive_index_store import part_key

    store, state, _keys, loose_plan = compacted
    home = ["--home", str(tmp_path)]
    full_scan = erasure.plan_erasure

    def no_scan(*_args, **_kwargs):
        raise AssertionError("the archive index covers the day: no scan")

    monkeypatch.setattr(erasure, "plan_erasure", no_scan)
    assert main(["hold", "place", "--user-id", BOB.id, "--reason", "subpoena 7", *home]) == 0
    (hold,) = LegalHolds(state).list()
    assert hold.kind == "user" and set(hold.keys) == set(loose_plan)  # bundled raw keys, by their raw keys
    assert main(["erase", "--user-id", BOB.id, "--execute", "--no-warehouse", *home]) == 3
    assert main(["hold", "release", "--user-id", BOB.id, *home]) == 0
    # no index part: the hold falls back to the scan, bundles included, and finds the same keys
    monkeypatch.setattr(erasure, "plan_erasure", full_scan)
    store.delete(part_key(DAY))
    assert main(["hold", "place", "--user-id", BOB.id, "--reason", "subpoena 7", *home]) == 0
    (hold,) = LegalHolds(state).list()
    assert set(hold.keys) == set(loose_plan)


@pytest.fixture
def lock_store(moto_endpoint: str):
    import uuid

    from tiklive_assets.storage import S3Store, make_s3_client

    client = make_s3_client(
        endpoint_url=moto_endpoint, region_name="us-east-1", access_key_id="testing", secret_access_key="testing"
    )
    bucket = f"tiklive-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return S3Store(client, bucket, "archive")


def test_holds_lock_the_bundles_of_held_keys_and_retention_keeps_them(lock_store, tmp_path: Path) -> None:
    from tiklive_assets.compliance import RetentionPolicy, apply_retention
    from tiklive_assets.sandbox import Corpus
    from tiklive_assets.storage.base import ObjectLocked
    from tiklive_assets.storage.bundles import bundle_key
    from tiklive_assets_tests.support.archive import write_archive_day

    store, day = lock_store, date(2026, 5, 20)
    write_archive_day(store, day, Corpus(seed=7))
    bundles = set(compact_day(store, day))
    posts = bundle_key("tiklive-raw", day, "user-posts")
    userid = bundle_key("tiklive-raw", day, "userid")
    assert {posts, userid} <= bundles
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        holds = LegalHolds(state)
        # a prefix hold finer than the bundle (one account's pages): the bundle holding them is locked
        holds.place(f"tiklive-raw/{day:%Y/%m/%d}/user-posts/{ALICE.id}-", "case 1", store=store)
        assert store.is_locked(posts) and not store.is_locked(userid)
        with pytest.raises(ObjectLocked):
            store.delete(posts)
        # a key-set hold placed without the store: `hold refresh` locks the bundle holding its key
        from tiklive_assets.compliance.legal_hold import KeySetTags

        KeySetTags(state).tag("legal-hold=case-2", [raw_key(day, "userid", "bob")])
        holds.place_tag("legal-hold=case-2", "case 2")
        assert not store.is_locked(userid)
        holds.refresh(store)
        assert store.is_locked(userid)
        report = apply_retention(store, RetentionPolicy(delete_after_days=400), date(2027, 12, 1), holds)
        left = {info.key for info in store.list("tiklive-bundles/")}
        assert left == {posts, userid} and report.held_days == [day] and report.deleted_days == [day]
        assert report.held_objects == len(read_bundle(store, posts)) + len(read_bundle(store, userid))
        holds.release(f"tiklive-raw/{day:%Y/%m/%d}/user-posts/{ALICE.id}-", store=store)
        assert not store.is_locked(posts) and store.is_locked(userid)  # the other hold still keeps its bundle
        apply_retention(store, RetentionPolicy(delete_after_days=400), date(2027, 12, 1), holds)
        assert {info.key for info in store.list("tiklive-bundles/")} == {userid}


def test_erasure_of_a_compacted_day_on_s3(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    from tiklive_assets.storage import S3Store, make_s3_client

    store = S3Store(make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1"), s3_bucket, "archive")
    keys = build_archive(store, [DAY])
    planned = find_objects_for_user(store, user_id=BOB.id, handle="bob")
    compact_day(store, DAY)
    before = every_member(store)
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        report = erase_user(store, None, BOB.id, "bob", dry_run=False, state=state, use_index=False)
    assert report.keys == planned  # the full scan over bundles plans what it planned over loose objects
    after = every_member(store)
    assert bundled_mentions(store) == [] and keys["hashtag"] in report.redacted
    assert {k: v for k, v in after.items() if k not in planned} == {k: v for k, v in before.items() if k not in planned}
    assert not [i.key for i in store.list("tiklive-bundles/") if parse_bundle_key(i.key) is None]  # no stray copies


def test_a_day_compacted_while_an_erasure_deletes_keeps_none_of_the_user_in_its_bundles(tmp_path, monkeypatch) -> None:
    """Compaction packs the day after the erasure planned over loose objects and before it deleted them: the
    erasure finds the bundles that now hold its keys and rewrites them, so nothing of the user is left."""
    import tiklive_assets.compliance.erasure.execute as execute

    store = LocalStore(tmp_path / "archive")
    build_archive(store, [DAY])
    packed: list[list[str]] = []

    def compact_meanwhile(name: str) -> None:  # the first object deleted, then the whole day compacted
        if name == "erasure.object.done" and not packed:
            packed.append(compact_day(store, DAY))

    monkeypatch.setattr(execute, "crashpoint", compact_meanwhile)
    with StateDB.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}") as state:
        report = erase_user(store, None, BOB.id, "bob", dry_run=False, state=state, use_index=False)
    assert packed and packed[0] and report.keys and not report.rewrite_conflicts
    assert bundled_mentions(store) == []
    assert find_objects_for_user(store, user_id=BOB.id, handle="bob") == []
    assert raw_key(DAY, "userinfo-by-id", ALICE.id) in every_member(store)

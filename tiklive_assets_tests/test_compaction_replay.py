"""A compacted day replays to the same warehouse tables as before compaction, on every read path."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tiklive_assets.compliance.compaction import compact_day
from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore, ObjectStore, S3Store, make_s3_client, raw_key
from tiklive_assets.storage import bundles as bundles_module
from tiklive_assets.storage.bundles import Member, bundle_key, write_bundle
from tiklive_assets.warehouse import TABLE_NAMES, load_days, open_warehouse, parse_day
from tiklive_assets.warehouse import reader as reader_module
from tiklive_assets.warehouse.reader import ParsedDay, count_day_objects, list_day, parser_pool
from tiklive_assets_tests.support.archive import write_archive_day

DAYS = [date(2026, 5, 27), date(2026, 5, 28)]


@pytest.fixture(autouse=True)
def small_row_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles_module, "ROW_GROUP_BYTES", 4_096)  # many row groups even for this small day


def _archive(store: ObjectStore) -> None:
    corpus = Corpus(seed=7)
    for day in DAYS:
        write_archive_day(store, day, corpus)
    bob = corpus.account("bob")
    again = corpus.profile(bob, datetime(2026, 5, 27, 12, tzinfo=UTC).timestamp())
    again["stats"]["followerCount"] += 5  # captured again later: a conflict copy, one more capture
    store.put_bytes(
        raw_key(DAYS[0], "userinfo-by-id", bob.id), gzip.compress(json.dumps(again).encode()), content_type="a/b"
    )


def _same(a: ParsedDay, b: ParsedDay) -> None:
    assert a.objects == b.objects > 10
    assert (a.errors, a.corrupt, a.error_responses) == (b.errors, b.corrupt, b.error_responses)
    for name in TABLE_NAMES:
        assert a.tables[name].equals(b.tables[name]), name


def _fingerprints(store: ObjectStore, path: Path) -> dict:
    with open_warehouse(f"duckdb:///{path}") as wh:
        load_days(store, wh, DAYS)
        return wh.fingerprints()


def test_a_compacted_day_replays_to_identical_tables_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "archive")
    _archive(store)
    before = {day: parse_day(store, day) for day in DAYS}
    counts = {day: count_day_objects(store, day) for day in DAYS}
    listed = list_day(store, DAYS[0])[0]
    tables_before = _fingerprints(store, tmp_path / "before.duckdb")
    for day in DAYS:
        assert compact_day(store, day).loose_deleted == counts[day]
    assert not list(store.list("tiklive-raw/"))  # everything is in bundles now
    assert {day: count_day_objects(store, day) for day in DAYS} == counts
    assert [(i.key, i.size) for i in list_day(store, DAYS[0])[0]] == [(i.key, i.size) for i in listed]
    for day in DAYS:
        _same(parse_day(store, day), before[day])
        _same(parse_day(store, day, threads=4, batch=5), before[day])  # the threaded path reads bundles too
    monkeypatch.setattr(reader_module, "PROCESS_CHUNK", 5)  # split even this small day over the processes
    pool = parser_pool(2)
    try:
        for day in DAYS:
            _same(parse_day(store, day, pool=pool), before[day])
    finally:
        pool.shutdown()
    assert _fingerprints(store, tmp_path / "after.duckdb") == tables_before


def test_a_day_half_compacted_replays_each_object_once(tmp_path: Path) -> None:
    """A bundle written and loose objects not yet deleted (a compaction cut short), beside loose objects no bundle
    holds (a held key): the same tables."""
    store = LocalStore(tmp_path / "archive")
    _archive(store)
    day = DAYS[0]
    before = parse_day(store, day)
    loose = list(store.list(f"tiklive-raw/{day:%Y/%m/%d}/user-posts/"))
    bodies = [(i, store.get_bytes(i.key)) for i in loose]
    members = [(Member(i.key, hashlib.sha256(b).hexdigest(), len(b), i.last_modified), b) for i, b in bodies]
    write_bundle(store, bundle_key("tiklive-raw", day, "user-posts"), members)
    _same(parse_day(store, day), before)
    _same(parse_day(store, day, threads=3, batch=2), before)
    assert count_day_objects(store, day) == before.objects


def test_a_compacted_day_replays_to_identical_tables_on_s3(moto_endpoint: str, s3_bucket: str) -> None:
    store = S3Store(make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1"), s3_bucket, "archive")
    _archive(store)
    day = DAYS[0]
    before = parse_day(store, day, threads=8, batch=7)
    compact_day(store, day)
    assert not list(store.list(f"tiklive-raw/{day:%Y/%m/%d}/"))
    _same(parse_day(store, day, threads=8, batch=7), before)
    _same(parse_day(store, day, threads=1), before)

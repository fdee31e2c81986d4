"""Warehouse: parsing the archive, idempotent day loads on DuckDB and Postgres, replay, backfills, exports, marts.

The archive here is fabricated with the sandbox corpus (the exact wire shapes the sandbox serves) for three past
days, written with the real store API under the real key layout, so no test waits for a rate limiter.
"""

from __future__ import annotations

import gzip
import itertools
import json
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import (
    LocalStore,
    raw_key,
)
from tiklive_assets.warehouse import (
    TABLE_NAMES,
    TABLES,
    build_marts,
    export_day,
    load_days,
    open_warehouse,
    parse_day,
    query_marts,
    write_account_csvs,
)
from tiklive_assets_tests.support.archive import GONE, HANDLES, write_archive_day

DAYS = [date(2026, 5, 27), date(2026, 5, 28), date(2026, 5, 29)]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("archive"))
    corpus = Corpus(seed=7)
    for day in DAYS:
        write_archive_day(store, day, corpus)
    # the same request captured again later that day (a sensor poll, a rerun): different bytes, kept beside the
    # original as a copy, and parsed as one more capture
    bob = corpus.account("bob")
    again = corpus.profile(bob, datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, 12, tzinfo=UTC).timestamp())
    again["stats"]["followerCount"] += 5
    store.put_bytes(
        raw_key(DAYS[0], "userinfo-by-id", bob.id),
        gzip.compress(json.dumps(again).encode()),
        content_type="application/json",
    )
    return store


def fingerprints(url: str) -> dict[str, tuple[int, str]]:
    with open_warehouse(url) as wh:
        return wh.fingerprints()


# -- parsing --


def test_parse_day_builds_every_table_from_archived_objects(archive: LocalStore) -> None:
    parsed = parse_day(archive, DAYS[0])
    assert parsed.errors == []
    tables = parsed.tables
    assert set(tables) == set(TABLE_NAMES)
    for spec in TABLES:
        assert tables[spec.name].schema == spec.arrow_schema, spec.name
        keys = tables[spec.name].select(list(spec.key)).to_pylist()
        assert len(keys) == len({tuple(k.values()) for k in keys}), f"{spec.name}: duplicate keys"
    posts = {row["aweme_id"]: row for row in tables["posts"].to_pylist()}
    assert len(posts) == 12  # 6 listed per account
    archived = [p for p in posts.values() if p["storage_key"]]
    assert len(archived) == 6 and all(p["bytes"] > 0 and p["storage_key"].endswith(".mp4") for p in archived)
    assert all(p["archived_at"] is not None for p in archived)
    # every capture of counters is history: 12 listing items + 6 details, each with its own captured_at
    assert tables["post_metrics_history"].num_rows == 18
    assert {r["source"] for r in tables["post_metrics_history"].to_pylist()} == {"user-posts", "post-detail"}
    snapshots = tables["user_snapshots"].to_pylist()
    assert {s["handle"] for s in snapshots} == set(HANDLES) and all(s["follower_count"] > 0 for s in snapshots)
    bob_counts = sorted(s["follower_count"] for s in snapshots if s["handle"] == "bob")
    assert len(bob_counts) == 2 and bob_counts[1] == bob_counts[0] + 5  # the copy kept beside is a second capture
    assert tables["dead_letters"].to_pylist()[0] | {"captured_at": None} == {
        "aweme_id": GONE,
        "reason": "video not found (deleted)",
        "http_status": 404,
        "dt": DAYS[0],
        "captured_at": None,
        "source_key": raw_key(DAYS[0], "post-detail", f"{GONE}-http404"),
    }
    comments = tables["comments"].to_pylist()
    replies = [c for c in comments if c["parent_id"]]
    assert replies and {r["parent_id"] for r in replies} <= {c["comment_id"] for c in comments}
    edges = tables["follow_edges"].to_pylist()
    assert {e["direction"] for e in edges} == {"follower", "following"}
    assert {h["hashtag"] for h in tables["hashtags"].to_pylist()} <= {"cats", "cooking", "travel", "news", "dance"}
    ledger = {(r["endpoint"], r["http_status"]): r["requests"] for r in tables["credits_ledger"].to_pylist()}
    assert ledger[("post-detail", 404)] == 1
    assert ledger[("userinfo-by-id", 200)] == 3  # two profiles and bob's second capture: three paid responses
    users = {u["user_id"]: u for u in tables["users"].to_pylist()}
    assert users[Corpus(seed=7).account("bob").id]["source"] == "profile"


def test_unreadable_objects_are_reported_not_fatal(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    day = DAYS[0]
    store.put_bytes(raw_key(day, "post-detail", "123"), b"not gzip", content_type="application/json")
    store.put_bytes(
        raw_key(day, "post-detail", "124"), gzip.compress(b'{"no": "aweme"}'), content_type="application/json"
    )
    parsed = parse_day(store, day)
    assert len(parsed.errors) == 2 and parsed.tables["posts"].num_rows == 0
    assert parsed.tables["credits_ledger"].to_pylist()[0]["requests"] == 2
    quarantined = {r["source_key"]: r["error"] for r in parsed.tables["quarantine"].to_pylist()}
    assert quarantined[raw_key(day, "post-detail", "123")].startswith("not gzip")
    assert "no post id" in quarantined[raw_key(day, "post-detail", "124")]
    assert parsed.corrupt == [raw_key(day, "post-detail", "123")]  # a damaged copy, not an upstream oddity


def test_reading_from_s3_uses_parallel_gets_and_matches_local(
    archive: LocalStore, moto_endpoint: str, s3_bucket: str
) -> None:
    from tiklive_assets.storage import S3Store, make_s3_client

    s3 = S3Store(make_s3_client(moto_endpoint, "us-east-1", "testing", "testing"), s3_bucket)
    for info in archive.list(""):
        if f"/{DAYS[1]:%Y/%m/%d}/" in info.key or f"dt={DAYS[1]}" in info.key:
            s3.put_bytes(info.key, archive.get_bytes(info.key), content_type="application/octet-stream")
    local, remote = parse_day(archive, DAYS[1]), parse_day(s3, DAYS[1], threads=8, batch=7)
    assert remote.errors == [] and remote.objects == local.objects
    serial = parse_day(s3, DAYS[1], threads=1)  # one GET at a time reads the same objects
    assert serial.objects == remote.objects and serial.row_counts == remote.row_counts
    for name in TABLE_NAMES:
        if name == "post_metrics_history":
            # S3's last_modified has whole seconds: a listing and a detail stored in the same second are one
            # capture (keyed on aweme_id, captured_at), and the /post-detail/ one is kept
            assert 12 <= remote.tables[name].num_rows <= local.tables[name].num_rows
            continue
        assert remote.tables[name].num_rows == local.tables[name].num_rows, name
    assert remote.tables["posts"].column("aweme_id") == local.tables["posts"].column("aweme_id")


# -- loading: idempotent per day, on both backends --


def _load_twice(url: str, archive: LocalStore) -> None:
    with open_warehouse(url) as wh:
        load_days(archive, wh, DAYS)
        before = wh.fingerprints()
        load_days(archive, wh, [DAYS[1]])  # a day again
        load_days(archive, wh, DAYS)  # everything again
        assert wh.fingerprints() == before
        assert before["posts"][0] > 12 and before["user_snapshots"][0] == 7  # 2 accounts x 3 days + a second capture
        # the newest day's counters win, and an MP4 archived on an earlier day keeps its storage_key
        (stale,) = wh.query(
            "SELECT count(*) FROM posts WHERE dt < ? AND aweme_id IN "
            "(SELECT aweme_id FROM post_metrics_history WHERE dt = ?)",
            [DAYS[-1], DAYS[-1]],
        )[0]
        assert stale == 0
        (with_video,) = wh.query("SELECT count(*) FROM posts WHERE storage_key IS NOT NULL")[0]
        assert with_video >= 6  # 3 per account per day, some the same videos listed again
        for spec in TABLES:
            keys = ", ".join(spec.key)
            (dupes,) = wh.query(
                f"SELECT count(*) FROM (SELECT {keys} FROM {spec.name} GROUP BY {keys} HAVING count(*) > 1) AS d"
            )[0]
            assert dupes == 0, spec.name


def test_loading_a_day_twice_changes_nothing_duckdb(tmp_path: Path, archive: LocalStore) -> None:
    _load_twice(str(tmp_path / "warehouse.duckdb"), archive)


def test_loading_a_day_twice_changes_nothing_postgres(postgres_url: str, archive: LocalStore) -> None:
    _load_twice(postgres_url, archive)


def test_both_backends_hold_the_same_rows(tmp_path: Path, postgres_url: str, archive: LocalStore) -> None:
    duck = str(tmp_path / "w.duckdb")
    for url in (duck, postgres_url):
        with open_warehouse(url) as wh:
            load_days(archive, wh, DAYS)
    with open_warehouse(duck) as a, open_warehouse(postgres_url) as b:
        for spec in TABLES:
            cols = ", ".join(c.name for c in spec.columns if c.sql not in ("TIMESTAMPTZ",))
            order = ", ".join(spec.key)
            assert a.query(f"SELECT {cols} FROM {spec.name} ORDER BY {order}") == [
                tuple(int(v) if type(v).__name__ == "Decimal" else v for v in row)
                for row in b.query(f"SELECT {cols} FROM {spec.name} ORDER BY {order}")
            ], spec.name


def test_loading_out_of_order_gives_the_same_tables(tmp_path: Path, archive: LocalStore) -> None:
    forward, backward = str(tmp_path / "f.duckdb"), str(tmp_path / "b.duckdb")
    with open_warehouse(forward) as wh:
        load_days(archive, wh, DAYS)
    with open_warehouse(backward) as wh:
        for day in reversed(DAYS):
            load_days(archive, wh, [day])
    assert fingerprints(forward) == fingerprints(backward)


# -- replay: database lost --


def test_replay_rebuilds_a_deleted_warehouse_identically(
    tmp_path: Path, archive: LocalStore, monkeypatch, capsys
) -> None:
    from tiklive_assets.cli import main

    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    monkeypatch.delenv("TIKLIVE_WAREHOUSE_URL", raising=False)
    (tmp_path / "archive").symlink_to(archive.root)
    warehouse = tmp_path / "warehouse.duckdb"
    assert main(["replay", "--from", str(DAYS[0]), "--to", str(DAYS[-1])]) == 0
    built = fingerprints(str(warehouse))
    warehouse.unlink()
    assert not warehouse.exists()
    assert main(["replay", "--from", str(DAYS[0]), "--to", str(DAYS[-1]), "--processes", "2"]) == 0
    assert fingerprints(str(warehouse)) == built
    assert (
        all(rows > 0 for name, (rows, _) in built.items() if name not in ("dead_letters", "quarantine", "tombstones"))
        and built["dead_letters"][0] == 3
    )
    assert built["quarantine"][0] == 0
    scratch = tmp_path / "scratch.duckdb"
    assert main(["replay", "--from", str(DAYS[1]), "--to", str(DAYS[1]), "--into", str(scratch)]) == 0
    assert fingerprints(str(scratch))["user_snapshots"][0] == 2
    out = capsys.readouterr().out
    assert "replayed" in out and "posts" in out


def test_replay_rejects_a_backwards_range(capsys) -> None:
    from tiklive_assets.cli import main

    assert main(["replay", "--from", "2026-05-29", "--to", "2026-05-01"]) == 2
    assert "before" in capsys.readouterr().err


# -- exports and marts --


def test_exports_marts_and_csv(tmp_path: Path, archive: LocalStore) -> None:
    exports = tmp_path / "exports"
    for day in DAYS:
        export_day(exports, day, parse_day(archive, day).tables)
    for spec in TABLES:
        for day in DAYS:
            path = exports / spec.name / f"dt={day}" / "part-0.parquet"
            assert pq.read_schema(path).remove_metadata() == spec.arrow_schema, spec.name
            assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert not [p for p in exports.rglob("*") if p.name.endswith(".tmp")]
    marts = build_marts(exports, tmp_path / "marts.duckdb")
    # an analyst's read-only connection stays open while the pipeline rebuilds the marts file
    analyst = duckdb.connect(str(marts), read_only=True)
    try:
        build_marts(exports, marts)
        assert analyst.execute("SELECT count(*) FROM follower_growth").fetchone()[0] == 6
    finally:
        analyst.close()
    _, growth = query_marts(
        marts, "SELECT handle, day, followers, follower_delta FROM follower_growth ORDER BY handle, day"
    )
    for handle in HANDLES:
        series = [r for r in growth if r[0] == handle]
        assert [r[1] for r in series] == DAYS and series[0][3] is None
        assert [r[3] for r in series[1:]] == [b[2] - a[2] for a, b in itertools.pairwise(series)]
    _, summary = query_marts(
        marts,
        "SELECT day, videos_archived, credits, dead_letters, dead_letters_by_reason "
        "FROM daily_archive_summary ORDER BY day",
    )
    assert [r[1] for r in summary] == [6, 6, 6] and all(r[3] == 1 for r in summary)
    assert summary[0][4] == "video not found (deleted): 1"
    _, virality = query_marts(marts, "SELECT min(views_per_hour), max(views_per_hour), count(*) FROM video_virality")
    assert virality[0][0] >= 0 and virality[0][1] > 0 and virality[0][2] == 3 * 18
    for mart in ("top_hashtags", "top_sounds"):
        assert query_marts(marts, f"SELECT count(*) FROM {mart}")[1][0][0] > 0
    rows = write_account_csvs(exports, HANDLES, DAYS[-1])
    assert set(rows) == set(HANDLES) and all(n >= 6 for n in rows.values())
    lines = (exports / "csv" / "alice123.csv").read_text().splitlines()
    assert lines[0] == "aweme_id,create_time,region,title,play_count,digg_count,comment_count,share_count"
    assert (exports / "csv" / f"dt={DAYS[-1]}" / "bob.csv").exists()


# -- Dagster: definitions, pools, single-run backfills --


def test_definitions_open_no_database_and_declare_pools(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TIKLIVE_HOME", str(tmp_path))
    from tiklive_assets.definitions import defs as project_defs
    from tiklive_assets.defs.warehouse import assets

    graph = project_defs().resolve_asset_graph()
    assert dg.AssetKey("warehouse_posts") in graph.get_all_asset_keys()
    assert list(tmp_path.iterdir()) == []  # nothing opened or created at load time
    for asset in (assets.warehouse_tables, assets.marts):
        assert asset.op.pool == assets.DUCKDB_POOL
    for asset in assets.WAREHOUSE_ASSETS:
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        assert asset.partitions_def is not None
    capture = {a.key for a in assets.CAPTURE_ASSETS}
    for key in assets.TABLE_KEYS.values():
        assert capture <= set(assets.warehouse_tables.asset_deps[key])


def _materialize(home: Path, archive: LocalStore, *, days: list[date], single_run: bool) -> None:
    from tiklive_assets.defs.resources import (
        ArchiveStoreResource,
        DataRootResource,
        TrackingConfigResource,
    )
    from tiklive_assets.defs.warehouse.assets import WAREHOUSE_ASSETS
    from tiklive_assets.defs.warehouse.resources import WarehouseResource

    config = home / "tiklive.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("accounts:\n  - alice123\n  - bob\n")
    resources = {
        "archive_store": ArchiveStoreResource(local_root=str(archive.root)),
        "data_root": DataRootResource(home=str(home)),
        "warehouse": WarehouseResource(url=str(home / "warehouse.duckdb")),
        "tracking": TrackingConfigResource(path=str(config)),
    }
    instance = dg.DagsterInstance.ephemeral()
    runs = [(str(days[0]), str(days[-1]))] if single_run else [(str(d), str(d)) for d in days]
    for start, end in runs:
        result = dg.materialize(
            WAREHOUSE_ASSETS,
            resources=resources,
            instance=instance,
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        )
        assert result.success
        materialized = {(e.asset_key, e.partition) for e in result.get_asset_materialization_events()}
        expected_days = [d for d in days if start <= str(d) <= end]
        assert {p for _, p in materialized} == {str(d) for d in expected_days}  # exactly the requested keys


def test_single_run_backfill_equals_day_by_day_runs(tmp_path: Path, archive: LocalStore) -> None:
    one_run, daily_runs = tmp_path / "one", tmp_path / "daily"
    _materialize(one_run, archive, days=DAYS, single_run=True)
    _materialize(daily_runs, archive, days=DAYS, single_run=False)
    assert fingerprints(str(one_run / "warehouse.duckdb")) == fingerprints(str(daily_runs / "warehouse.duckdb"))
    for path in sorted((one_run / "exports").rglob("*.parquet")):
        twin = daily_runs / path.relative_to(one_run)
        assert pq.read_table(path).equals(pq.read_table(twin)), path
    for path in sorted((one_run / "exports" / "csv").rglob("*.csv")):
        assert path.read_bytes() == (daily_runs / path.relative_to(one_run)).read_bytes(), path
    _, rows = query_marts(one_run / "marts.duckdb", "SELECT count(*) FROM daily_archive_summary")
    assert rows[0][0] == 3


def test_marts_need_exports_and_say_so(tmp_path: Path) -> None:
    from tiklive_assets.warehouse import WarehouseError

    with pytest.raises(WarehouseError, match="materialize parquet_exports"):
        build_marts(tmp_path / "exports", tmp_path / "marts.duckdb")
    assert not (tmp_path / "marts.duckdb").exists()


def test_parsing_in_processes_gives_the_same_tables(archive: LocalStore, monkeypatch) -> None:
    from tiklive_assets.warehouse import reader

    monkeypatch.setattr(reader, "PROCESS_CHUNK", 5)  # split even this small day over the worker processes
    pool = reader.parser_pool(2)
    try:
        split = parse_day(archive, DAYS[2], pool=pool)
    finally:
        pool.shutdown()
    whole = parse_day(archive, DAYS[2])
    assert split.objects == whole.objects > 10
    for name in TABLE_NAMES:
        assert split.tables[name].equals(whole.tables[name]), name


def test_a_copied_archive_replays_to_identical_history(tmp_path: Path) -> None:
    """captured_at travels inside each object (gzip MTIME), so new file times after a copy change nothing."""
    import os
    import shutil

    from tiklive_assets.capture.raw_archive import RawArchive
    from tiklive_assets.tikliveapi.client import ApiResponse

    corpus = Corpus(seed=7)
    day = DAYS[0]
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    original = LocalStore(tmp_path / "original")
    archive = RawArchive(original, day)
    bob = corpus.account("bob")
    for hour in (0, 3):  # two captures of bob's profile and first page, three hours apart
        fetched = noon.replace(hour=12 + hour)
        now = fetched.timestamp()
        for endpoint, params, body in (
            ("/userinfo-by-id/", {"userid": bob.id}, corpus.profile(bob, now)),
            (
                "/user-posts/",
                {"userid": bob.id, "count": 30, "cursor": 0},
                {
                    "videos": [corpus.listing_item(p, now) for p in corpus.visible_posts(bob, now)[:5]],
                    "cursor": "1",
                    "hasMore": True,
                },
            ),
        ):
            archive.write(ApiResponse(endpoint, params, 200, json.dumps(body).encode(), fetched))
    shutil.copytree(tmp_path / "original", tmp_path / "copy", copy_function=shutil.copyfile)  # new mtimes
    for path in (tmp_path / "copy").rglob("*.gz*"):
        os.utime(path, (0, 1_900_000_000))
    first, second = parse_day(original, day), parse_day(LocalStore(tmp_path / "copy"), day)
    assert first.tables["user_snapshots"].num_rows == 2 and first.tables["post_metrics_history"].num_rows == 10
    for name in TABLE_NAMES:
        if name == "credits_ledger":
            continue  # counts bytes and objects, not times
        assert first.tables[name].equals(second.tables[name]), name
    captured = sorted(r["captured_at"] for r in first.tables["user_snapshots"].to_pylist())
    assert [c.hour for c in captured] == [12, 15]


def test_the_same_response_fetched_again_later_is_identical_not_a_new_capture(tmp_path: Path) -> None:
    from tiklive_assets.capture.raw_archive import RawArchive
    from tiklive_assets.tikliveapi.client import ApiResponse

    store = LocalStore(tmp_path)
    archive = RawArchive(store, DAYS[0])
    body = json.dumps({"id": "107955"}).encode()
    noon = datetime(2026, 5, 27, 12, tzinfo=UTC)
    for minute in (0, 7):  # the same page polled again later: same body, another fetch second
        archive.write(ApiResponse("/userid/", {"username": "cristiano"}, 200, body, noon.replace(minute=minute)))
    assert dict(archive.written) == {"created": 1, "identical": 1}
    assert [info.key for info in store.list()] == [raw_key(DAYS[0], "userid", "cristiano")]
    archive.write(ApiResponse("/userid/", {"username": "cristiano"}, 200, b'{"id": "107956"}', noon.replace(minute=9)))
    assert archive.written["conflict"] == 1  # different bytes: kept beside, never overwritten


# -- the fast paths change nothing --


def _reference_to_arrow(table, rows, _tally=None):  # the tally (if the parser passes one) counts, never converts
    """The straightforward conversion: transpose the rows, one pa.array per column, then sort by the key."""
    import pyarrow as pa

    if not rows:
        return table.arrow_schema.empty_table()
    arrays = [
        pa.array(list(column), type=f.type)
        for column, f in zip(zip(*rows, strict=True), table.arrow_schema, strict=True)
    ]
    result = pa.Table.from_arrays(arrays, schema=table.arrow_schema)
    return result.sort_by([(name, "ascending") for name in table.key])


def _reference_load(con, day: date, tables) -> None:
    """The straightforward load: window tables delete the day and insert it, upsert tables use the same
    ``INSERT … ON CONFLICT DO UPDATE`` statement as Postgres."""
    con.execute("BEGIN TRANSACTION")
    for spec in TABLES:
        con.register("staged", tables[spec.name])
        cols = ", ".join(spec.column_names)
        if spec.mode == "window":
            con.execute(f"DELETE FROM {spec.name} WHERE dt = ?", [day])
            con.execute(f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM staged")
        elif tables[spec.name].num_rows:
            con.execute(spec.upsert_sql("staged"))
        con.unregister("staged")
    con.execute("COMMIT")


def _rows(con, spec, ordered: bool) -> list[tuple]:
    order = f" ORDER BY {', '.join(spec.key)}" if ordered else ""
    return con.execute(f"SELECT {', '.join(spec.column_names)} FROM {spec.name}{order}").fetchall()


def test_fast_paths_give_the_same_tables_as_straightforward_references(
    tmp_path: Path, archive: LocalStore, monkeypatch
) -> None:
    """Arrow conversion (struct pass) and the DuckDB load (Arrow straight into an empty table, merge otherwise)
    against plain references, row by row: into an empty warehouse, over days whose keys overlap, and a re-load."""
    from tiklive_assets.warehouse import DuckDBWarehouse, parse

    sequence = [DAYS[0], DAYS[1], DAYS[2], DAYS[1]]
    parsed = [parse_day(archive, day).tables for day in sequence]
    with monkeypatch.context() as patch:
        patch.setattr(parse, "to_arrow", _reference_to_arrow)
        reference = [parse_day(archive, day).tables for day in sequence]
    for fast, slow in zip(parsed, reference, strict=True):
        for name in TABLE_NAMES:
            assert fast[name].schema == slow[name].schema, name
            assert fast[name].to_pylist() == slow[name].to_pylist(), name
            assert fast[name].equals(slow[name]), name

    fast_db, merge_db = tmp_path / "fast.duckdb", tmp_path / "merge.duckdb"
    with open_warehouse(str(fast_db)) as wh:
        for day, tables in zip(sequence, parsed, strict=True):
            wh.load_day(day, tables)
    with monkeypatch.context() as patch:  # every upsert through the merge, as before the empty-table shortcut
        patch.setattr(DuckDBWarehouse, "_upsert", DuckDBWarehouse._merge)
        with open_warehouse(str(merge_db)) as wh:
            for day, tables in zip(sequence, parsed, strict=True):
                wh.load_day(day, tables)
    with open_warehouse(str(tmp_path / "reference.duckdb")) as wh:
        for day, tables in zip(sequence, parsed, strict=True):
            _reference_load(wh.con, day, tables)
        expected = {spec.name: _rows(wh.con, spec, ordered=True) for spec in TABLES}
    fast, merged = duckdb.connect(str(fast_db), read_only=True), duckdb.connect(str(merge_db), read_only=True)
    try:
        for spec in TABLES:
            assert _rows(fast, spec, ordered=True) == expected[spec.name], spec.name
            assert _rows(fast, spec, ordered=False) == _rows(merged, spec, ordered=False), spec.name  # same order
        assert sum(len(rows) for rows in expected.values()) > 500
        assert all(expected[name] for name in ("posts", "users", "comments", "music"))  # upserts were exercised
    finally:
        fast.close()
        merged.close()

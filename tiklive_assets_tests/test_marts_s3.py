"""Marts over exports on S3 (moto's server on 127.0.0.1): published beside the archive, read in place by httpfs.

The archive is fabricated with the sandbox corpus for two days, exported locally and published to a moto bucket
under a prefix; the marts over s3:// must return exactly the rows the local marts return, table by table and mart
by mart. The credentials are a random secret per test, so a leak into output or files is detectable.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import boto3
import duckdb
import pytest

from tiklive_assets.cli import main
from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import InvalidStoreUrl, LocalStore, S3Store, make_s3_client
from tiklive_assets.warehouse import TABLES, WarehouseError, build_marts, export_day, parse_day, query_marts
from tiklive_assets.warehouse.marts import MARTS
from tiklive_assets.warehouse.remote import (
    HttpfsUnavailable,
    RemoteExports,
    build_remote_marts,
    load_httpfs,
    open_remote_marts,
    packaged_httpfs,
    publish_day,
    publish_exports,
    query_remote_marts,
    remote_marts,
)
from tiklive_assets_tests.support.archive import write_archive_day

DAYS = [date(2026, 5, 27), date(2026, 5, 28)]
PREFIX = "team/tiklive"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(exports, marts file) built locally from a two-day archive."""
    root = tmp_path_factory.mktemp("local")
    archive = LocalStore(root / "archive")
    corpus = Corpus(seed=11)
    for day in DAYS:
        write_archive_day(archive, day, corpus)
        export_day(root / "exports", day, parse_day(archive, day).tables)
    return root / "exports", build_marts(root / "exports", root / "marts.duckdb")


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh secret key in the AWS chain (moto accepts any), to look for where it must never appear."""
    value = f"moto-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", f"moto-key-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", value)
    return value


@pytest.fixture
def published(local: tuple[Path, Path], moto_endpoint: str, s3_bucket: str, secret: str) -> RemoteExports:
    exports, _ = local
    store = S3Store(make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1"), s3_bucket, PREFIX)
    for day in DAYS:
        sizes = publish_day(store, exports, day)
        assert set(sizes) == {spec.name for spec in TABLES} and all(n > 0 for n in sizes.values())
    return RemoteExports(s3_bucket, PREFIX, moto_endpoint, "us-east-1")


def _all_rows(query, name: str) -> list[tuple]:
    columns, rows = query(f"SELECT * FROM {name}")
    return sorted(rows, key=repr), columns


def test_published_layout_mirrors_the_local_exports(local, published: RemoteExports, moto_endpoint: str) -> None:
    exports, _ = local
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=published.bucket)["Contents"]}
    expected = {f"{PREFIX}/exports/{p.relative_to(exports).as_posix()}" for p in exports.rglob("*.parquet")}
    assert keys == expected and len(keys) == len(TABLES) * len(DAYS)
    one = published.key("posts", DAYS[0])
    assert (
        client.get_object(Bucket=published.bucket, Key=one)["Body"].read()
        == (exports / "posts" / f"dt={DAYS[0]}" / "part-0.parquet").read_bytes()
    )


def test_remote_marts_return_the_local_rows(local, published: RemoteExports) -> None:
    _, marts_file = local
    names = [spec.name for spec in TABLES] + list(MARTS)
    with remote_marts(published) as con:
        for name in names:
            remote_rel = con.sql(f"SELECT * FROM {name}")
            remote_rows, remote_cols = sorted(remote_rel.fetchall(), key=repr), remote_rel.columns
            local_rows, local_cols = _all_rows(lambda q: query_marts(marts_file, q), name)
            assert remote_cols == local_cols, name
            assert remote_rows == local_rows, name
        assert con.sql("SELECT count(*) FROM follower_growth").fetchone()[0] > 0  # not two empty sets
        assert con.sql("SELECT count(DISTINCT dt) FROM credits_ledger").fetchone()[0] == len(DAYS)


def test_a_new_day_shows_after_publishing_it(local, moto_endpoint: str, s3_bucket: str, secret: str) -> None:
    exports, _ = local
    store = S3Store(make_s3_client(endpoint_url=moto_endpoint, region_name="us-east-1"), s3_bucket, "")
    publish_day(store, exports, DAYS[0])
    remote = RemoteExports(s3_bucket, "", moto_endpoint, "us-east-1")
    sql = "SELECT DISTINCT day FROM daily_archive_summary ORDER BY day"
    assert query_remote_marts(remote, sql)[1] == [(DAYS[0],)]
    assert publish_exports(store, exports) == DAYS  # the days exported before, published at once
    assert query_remote_marts(remote, sql)[1] == [(d,) for d in DAYS]


def test_the_marts_file_holds_views_and_no_credentials(
    local, published: RemoteExports, secret: str, tmp_path: Path
) -> None:
    path = build_remote_marts(published, tmp_path / "remote.duckdb")
    assert secret.encode() not in path.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name != "remote.duckdb"]  # no temporary file left
    bare = duckdb.connect(str(path), read_only=True)
    try:
        assert bare.execute("SELECT count(*) FROM duckdb_secrets()").fetchone()[0] == 0
        views = {r[0] for r in bare.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert set(MARTS) <= views
        assert bare.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0] == 0  # no data copied in
    finally:
        bare.close()
    con = open_remote_marts(path, published)
    try:
        ((persistent, scope),) = con.execute("SELECT persistent, scope FROM duckdb_secrets()").fetchall()
        assert persistent is False and scope == [f"s3://{published.bucket}"]
        assert secret not in repr(con.execute("SELECT * FROM duckdb_secrets()").fetchall())  # redacted
        assert con.execute("SELECT count(*) FROM top_hashtags").fetchone()[0] > 0
    finally:
        con.close()


def _url(remote: RemoteExports) -> str:
    return f"s3://{remote.bucket}/{remote.prefix}?endpoint_url={remote.endpoint_url}&region=us-east-1"


def test_tiklive_sql_remote_prints_what_the_local_marts_print(
    local, published: RemoteExports, secret: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, marts_file = local
    query = "SELECT handle, day, followers, follower_delta FROM follower_growth ORDER BY handle, day"
    assert main(["sql", "--home", str(marts_file.parent), "--csv", "-c", query]) == 0
    expected = capsys.readouterr().out
    assert main(["sql", "--home", str(tmp_path), "--remote", _url(published), "--csv", "-c", query]) == 0
    out = capsys.readouterr()
    assert out.out == expected and expected.count("\n") > 2
    assert main(["sql", "--remote", _url(published), "-c", "SELECT * FROM duckdb_secrets()"]) == 0
    shown = capsys.readouterr()
    assert "tiklive_exports" in shown.out and secret not in shown.out + shown.err


def test_tiklive_sql_remote_defaults_to_the_archive_settings(
    published: RemoteExports, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIKLIVE_ARCHIVE_BUCKET", published.bucket)
    monkeypatch.setenv("TIKLIVE_ARCHIVE_PREFIX", PREFIX)
    monkeypatch.setenv("TIKLIVE_S3_ENDPOINT_URL", str(published.endpoint_url))
    monkeypatch.setenv("TIKLIVE_S3_REGION", "us-east-1")
    assert main(["sql", "--remote", "--csv", "-c", "SELECT count(DISTINCT day) AS days FROM follower_growth"]) == 0
    assert capsys.readouterr().out == f"days\n{len(DAYS)}\n"


def test_nothing_published_is_a_clear_error(
    moto_endpoint: str, s3_bucket: str, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = RemoteExports(s3_bucket, "nowhere", moto_endpoint, "us-east-1")
    with pytest.raises(WarehouseError, match="no published Parquet exports of .*posts"):
        build_remote_marts(remote, Path("/nonexistent/never-written.duckdb"))
    assert main(["sql", "--remote", _url(remote), "-c", "SELECT 1"]) == 1
    assert "parquet_exports asset publishes them" in capsys.readouterr().err


def test_remote_urls_are_checked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tiklive_assets.warehouse import remote

    for bad in ("s3://key:secret@bucket/p", "s3:///p", "s3://b/p?conditional=1", "https://b/p"):
        with pytest.raises(InvalidStoreUrl):
            RemoteExports.from_url(bad)
    monkeypatch.setenv("TIKLIVE_S3_ENDPOINT_URL", "https://acct.r2.cloudflarestorage.com")
    monkeypatch.setenv("TIKLIVE_S3_REGION", "auto")
    assert RemoteExports.from_url("s3://b/a/b/") == RemoteExports(
        "b", "a/b", "https://acct.r2.cloudflarestorage.com", "auto"
    )
    assert (
        RemoteExports.from_url("s3://b?endpoint_url=http://127.0.0.1:9&region=x").endpoint_url == "http://127.0.0.1:9"
    )
    assert RemoteExports("b", "a/b").glob("posts") == "s3://b/a/b/exports/posts/dt=*/*.parquet"
    # an explicit endpoint (R2, B2, moto) is addressed path-style, over TLS when it says https; AWS keeps DuckDB's
    assert remote._endpoint_options(RemoteExports("b", endpoint_url="https://acct.r2.cloudflarestorage.com")) == {
        "ENDPOINT": "acct.r2.cloudflarestorage.com",
        "USE_SSL": "true",
        "URL_STYLE": "path",
    }
    assert remote._endpoint_options(RemoteExports("b", endpoint_url="http://127.0.0.1:5000"))["USE_SSL"] == "false"
    assert remote._endpoint_options(RemoteExports("b")) == {}
    monkeypatch.delenv("TIKLIVE_ARCHIVE_BUCKET", raising=False)
    assert main(["sql", "--remote", "-c", "SELECT 1"]) == 1
    assert "TIKLIVE_ARCHIVE_BUCKET is unset" in capsys.readouterr().err


def test_publishing_from_a_local_archive_does_nothing(local, tmp_path: Path) -> None:
    exports, _ = local
    assert publish_day(LocalStore(tmp_path / "archive"), exports, DAYS[0]) == {}


def test_the_pinned_duckdb_has_its_httpfs_wheel() -> None:
    path, why = packaged_httpfs()
    assert path is not None, why  # pyproject pins duckdb and duckdb-extension-httpfs to the same version
    con = duckdb.connect()
    try:
        con.execute("SET extension_directory = '/nonexistent'")  # the wheel's copy, not one installed earlier
        assert load_httpfs(con) == str(path)
        assert con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()[0]
    finally:
        con.close()


def test_no_loadable_httpfs_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tiklive_assets.warehouse import remote

    monkeypatch.setattr(
        remote, "packaged_httpfs", lambda: (None, "the duckdb-extension-httpfs package is not installed")
    )
    con = duckdb.connect()
    try:
        con.execute(f"SET extension_directory = '{tmp_path}'")  # nothing installed there
        con.execute("SET custom_extension_repository = 'http://127.0.0.1:9'")  # a download that cannot succeed
        with pytest.raises(HttpfsUnavailable) as raised:
            load_httpfs(con)
    finally:
        con.close()
    message = str(raised.value)
    assert f"pip install duckdb-extension-httpfs=={duckdb.__version__}" in message
    assert "is not installed" in message and "INSTALL httpfs" in message

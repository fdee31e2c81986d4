"""Marts over Parquet exports on S3: analysts on other machines query the archive's bucket without copying it.

Layout: when the archive is on an S3-compatible bucket, the exports asset also publishes each day's files beside
it, at ``s3://<bucket>/<prefix>/exports/<table>/dt=YYYY-MM-DD/part-0.parquet`` (:func:`publish_day`): the same
tree as ``TIKLIVE_HOME/exports``, so the marts are the same views with another root. One PUT per file, which S3
makes atomic: a reader sees the old file or the new one.

Reading: DuckDB's ``httpfs`` extension. :func:`load_httpfs` loads it without the network when it can: first the
copy the ``duckdb-extension-httpfs`` wheel ships (built for exactly this DuckDB version; an extension of another
version is refused by DuckDB), then one already installed in DuckDB's extension directory, and only then DuckDB's
own download. If none works, :class:`HttpfsUnavailable` says what to install.

Credentials: the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, roles) resolved by
boto3, as for the archive itself, handed to DuckDB as a *temporary* secret scoped to the bucket: held in the
connection's memory only, never written to a marts file or DuckDB's secret directory, never printed. Endpoint and
region come from the URL's ``?endpoint_url=&region=`` or ``TIKLIVE_S3_ENDPOINT_URL``/``TIKLIVE_S3_REGION``; an
explicit endpoint (R2, B2, moto) is addressed path-style, AWS itself virtual-host style.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from tiklive_assets import settings
from tiklive_assets.storage import InvalidStoreUrl, MirroredStore, ObjectStore, S3Store, make_s3_client

from . import schema
from .backends import WarehouseError
from .exports import PARQUET_NAME, day_dir, exported_days
from .marts import MART_SQL, table_views

EXPORTS_DIR = "exports"  # under the archive's prefix
SECRET_NAME = "tiklive_exports"
HTTPFS_WHEEL = "duckdb-extension-httpfs"
REMOTE_OPTIONS = ("endpoint_url", "region")


class HttpfsUnavailable(WarehouseError):
    """DuckDB cannot load httpfs, so s3:// cannot be read; the message says what to install."""


@dataclass(frozen=True)
class RemoteExports:
    """Where published exports are: ``s3://bucket/prefix`` (the archive's), read from ``<prefix>/exports/``."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RemoteExports:
        """``s3://bucket/prefix[?endpoint_url=...&region=...]``; endpoint and region default to the settings."""
        parts = urlsplit(url.strip())
        if parts.scheme != "s3":
            raise InvalidStoreUrl(url, "remote exports are read from s3:// only")
        if "@" in parts.netloc:
            raise InvalidStoreUrl(url, "it carries credentials")
        if not parts.netloc:
            raise InvalidStoreUrl(url, "it names no bucket")
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise InvalidStoreUrl(url, "its query string does not parse") from None
        unknown = sorted(set(query) - set(REMOTE_OPTIONS))
        if unknown:
            raise InvalidStoreUrl(url, f"unknown option(s) {', '.join(unknown)}; known: {', '.join(REMOTE_OPTIONS)}")
        options = {name: values[-1] for name, values in query.items()}
        return cls(
            bucket=parts.netloc,
            prefix=unquote(parts.path).strip("/"),
            endpoint_url=options.get("endpoint_url") or settings.s3_endpoint_url(),
            region=options.get("region") or settings.s3_region(),
        )

    @classmethod
    def from_settings(cls) -> RemoteExports:
        """The archive's bucket and prefix (``TIKLIVE_ARCHIVE_BUCKET``, ``TIKLIVE_ARCHIVE_PREFIX``)."""
        bucket = settings.archive_bucket()
        if not bucket:
            raise WarehouseError(
                f"no remote exports configured: {settings.ARCHIVE_BUCKET} is unset (the archive is on local disk). "
                "Give the bucket, e.g. --remote s3://bucket/prefix, or set it"
            )
        return cls(bucket, settings.archive_prefix().strip("/"), settings.s3_endpoint_url(), settings.s3_region())

    @property
    def url(self) -> str:
        """The archive root as an analyst writes it (no credentials, no query)."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, table: str, day: date) -> str:
        return exports_key(self.prefix, table, day)

    def glob(self, table: str) -> str:
        base = "/".join(p for p in (self.prefix, EXPORTS_DIR, table) if p)
        return f"s3://{self.bucket}/{base}/dt=*/*.parquet"

    def client(self) -> Any:
        return make_s3_client(endpoint_url=self.endpoint_url, region_name=self.region)


def exports_key(prefix: str, table: str, day: date) -> str:
    """The object key of one table's day file under an archive ``prefix``."""
    return "/".join(p for p in (prefix.strip("/"), EXPORTS_DIR, table, f"dt={day.isoformat()}", PARQUET_NAME) if p)


# -- publishing --------------------------------------------------------------------------------------------------


def s3_store_of(store: ObjectStore) -> S3Store | None:
    """The S3 store an archive is written to (a mirrored archive's primary), None when it is on local disk."""
    if isinstance(store, MirroredStore):
        store = store.primary
    return store if isinstance(store, S3Store) else None


def publish_day(store: ObjectStore, exports: Path, day: date) -> dict[str, int]:
    """Copy ``day``'s Parquet file of every table beside the archive on S3; bytes per table ({} on local disk).

    The bucket's copy is replaced (a rematerialized day overwrites it, as the local file is): one PUT per file.
    """
    s3 = s3_store_of(store)
    if s3 is None:
        return {}
    published = {}
    for spec in schema.TABLES:
        path = day_dir(exports, spec.name, day) / PARQUET_NAME
        key = exports_key(s3.prefix, spec.name, day)
        try:
            with path.open("rb") as body:
                s3.client.put_object(Bucket=s3.bucket, Key=key, Body=body, ContentType="application/vnd.apache.parquet")
        except FileNotFoundError:
            raise WarehouseError(f"cannot publish {path}: it was not exported (export the day first)") from None
        except (ClientError, BotoCoreError, OSError) as exc:
            raise s3.classify(exc, "publishing an export to", key) from exc
        published[spec.name] = path.stat().st_size
    return published


def publish_exports(store: ObjectStore, exports: Path) -> list[date]:
    """Publish every day already exported under ``exports`` (a first publish of an existing archive)."""
    days = exported_days(exports)
    for day in days:
        publish_day(store, exports, day)
    return days


# -- DuckDB: httpfs and the secret -------------------------------------------------------------------------------


def packaged_httpfs() -> tuple[Path | None, str | None]:
    """(the httpfs file the wheel ships for the running DuckDB, None) or (None, why there is none)."""
    import duckdb

    try:
        import duckdb_extension_httpfs  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None, f"the {HTTPFS_WHEEL} package is not installed"
    base = Path(duckdb_extension_httpfs.__file__).parent / "extensions"
    path = base / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if path.is_file():
        return path, None
    built = ", ".join(sorted(p.name for p in base.glob("v*"))) or "no version"
    return None, f"the installed {HTTPFS_WHEEL} is built for DuckDB {built}, not v{duckdb.__version__}"


def load_httpfs(con: Any) -> str:
    """Load httpfs into ``con``; returns where it came from. Raises :class:`HttpfsUnavailable`."""
    import duckdb

    path, why_not = packaged_httpfs()
    if path is not None:
        try:
            con.execute(f"LOAD '{_quote(str(path))}'")
            return str(path)
        except duckdb.Error as exc:
            why_not = f"{path} does not load: {exc}"
    last = ""
    for source, statements in (("installed", ["LOAD httpfs"]), ("downloaded", ["INSTALL httpfs", "LOAD httpfs"])):
        try:
            for statement in statements:
                con.execute(statement)
            return source
        except duckdb.Error as exc:
            last = str(exc).splitlines()[0]
    version = duckdb.__version__
    raise HttpfsUnavailable(
        f"DuckDB {version} cannot load its httpfs extension, which reading s3:// needs: {why_not}, none is installed "
        f"in DuckDB's extension directory, and downloading it failed ({last}). Install the copy built for exactly "
        f"this DuckDB, `pip install {HTTPFS_WHEEL}=={version}`, or reinstall the project (`pip install -e .`), "
        f"which pins duckdb to a version {HTTPFS_WHEEL} is published for and installs both; on a machine with "
        "internet, `INSTALL httpfs` in DuckDB also works"
    )


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _endpoint_options(remote: RemoteExports) -> dict[str, str]:
    if not remote.endpoint_url:
        return {}  # AWS itself: DuckDB's default endpoint, virtual-host style
    parts = urlsplit(remote.endpoint_url if "://" in remote.endpoint_url else f"https://{remote.endpoint_url}")
    host = parts.hostname or ""
    return {
        "ENDPOINT": f"{host}:{parts.port}" if parts.port else host,
        "USE_SSL": "true" if parts.scheme == "https" else "false",
        "URL_STYLE": "path",  # R2, B2, MinIO and moto serve path-style requests
    }


def configure_s3(con: Any, remote: RemoteExports) -> None:
    """A temporary DuckDB secret for ``remote``'s bucket, from the AWS credential chain; nothing is printed."""
    import boto3
    import duckdb

    session = boto3.session.Session()
    found = session.get_credentials()
    options: dict[str, str] = {"TYPE": "s3", "REGION": remote.region or session.region_name or "us-east-1"}
    if found is not None:
        frozen = found.get_frozen_credentials()
        options["KEY_ID"] = frozen.access_key
        options["SECRET"] = frozen.secret_key
        if frozen.token:
            options["SESSION_TOKEN"] = frozen.token
    options.update(_endpoint_options(remote))
    options["SCOPE"] = f"s3://{remote.bucket}"
    body = ", ".join(
        f"{name} {value}" if name in ("TYPE", "USE_SSL") else f"{name} '{_quote(value)}'"
        for name, value in options.items()
    )
    try:
        con.execute(f"CREATE OR REPLACE TEMPORARY SECRET {SECRET_NAME} ({body})")
    except duckdb.Error as exc:  # the statement holds the credentials: report the error class only
        raise WarehouseError(f"cannot give DuckDB the S3 settings for {remote.url} ({type(exc).__name__})") from None


def prepare(con: Any, remote: RemoteExports) -> None:
    """httpfs loaded and the bucket's secret set: what a connection needs before it reads ``remote``."""
    load_httpfs(con)
    configure_s3(con, remote)


# -- the marts over S3 -------------------------------------------------------------------------------------------


def remote_views(remote: RemoteExports) -> list[str]:
    """The marts file's statements (every table's view, then each mart) with the tables read from ``remote``."""
    statements = table_views(lambda table: _quote(remote.glob(table)))
    statements += [f"CREATE VIEW {name} AS {sql}" for name, sql in MART_SQL.items()]
    return statements


def check_published(remote: RemoteExports) -> None:
    """Every table has at least one published day under ``remote``, or a WarehouseError saying what to do."""
    client = remote.client()
    store = S3Store(client, remote.bucket, remote.prefix)
    missing = []
    for spec in schema.TABLES:
        prefix = "/".join(p for p in (remote.prefix, EXPORTS_DIR, spec.name, "dt=") if p)
        try:
            found = client.list_objects_v2(Bucket=remote.bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise store.classify(exc, "listing the exports in", prefix) from exc
        if not found:
            missing.append(spec.name)
    if missing:
        raise WarehouseError(
            f"no published Parquet exports of {', '.join(missing)} under {remote.url}/{EXPORTS_DIR}/: the "
            "parquet_exports asset publishes them when the archive is on S3 (rematerialize it for a day, or "
            "publish_exports for the days exported before)"
        )


def build_remote_marts(remote: RemoteExports, marts_path: Path) -> Path:
    """Write a marts file whose views read ``remote`` (views only: no data, no credentials); swapped in atomically.

    Open it with :func:`open_remote_marts`, which sets up httpfs and the secret that every session needs."""
    import duckdb

    check_published(remote)
    marts_path = Path(marts_path).absolute()
    marts_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{marts_path.name}.", suffix=".tmp", dir=marts_path.parent)
    os.close(fd)
    os.unlink(tmp)  # duckdb creates the file itself
    try:
        con = duckdb.connect(tmp)
        try:
            prepare(con, remote)  # DuckDB binds each view as it is created: it reads the Parquet footers
            for statement in remote_views(remote):
                con.execute(statement)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, marts_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".wal").unlink(missing_ok=True)
    return marts_path


def open_remote_marts(marts_path: Path, remote: RemoteExports) -> Any:
    """A read-only connection to a marts file built by :func:`build_remote_marts`, ready to read ``remote``."""
    import duckdb

    con = duckdb.connect(str(marts_path), read_only=True)
    try:
        prepare(con, remote)
    except BaseException:
        con.close()
        raise
    return con


@contextlib.contextmanager
def remote_marts(remote: RemoteExports) -> Iterator[Any]:
    """A read-only connection to the marts over ``remote``, from a marts file built for the session and removed
    after it: what ``tiklive sql --remote`` opens."""
    with tempfile.TemporaryDirectory(prefix="tiklive-remote-marts-") as tmp:
        path = build_remote_marts(remote, Path(tmp) / "marts.duckdb")
        con = open_remote_marts(path, remote)
        try:
            yield con
        finally:
            con.close()


def query_remote_marts(remote: RemoteExports, sql: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of one read-only query against the marts over ``remote``."""
    with remote_marts(remote) as con:
        relation = con.sql(sql)
        return relation.columns, relation.fetchall()

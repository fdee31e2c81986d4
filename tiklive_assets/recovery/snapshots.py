"""Warehouse snapshots: the whole warehouse as Parquet files in the object store, one folder per snapshot.

A snapshot lives under ``warehouse-snapshots/<UTC time>/`` (``20261201T013000Z``) in the archive's store, so it is
mirrored to the secondary store whenever the archive is (a :class:`~tiklive_assets.storage.MirroredStore` writes
both sides and journals what the secondary missed for ``tiklive mirror repair``). It holds one Parquet file per
table and, written last, ``manifest.json``: when it was taken, each table's row count, each file's size and sha256,
and the last day the warehouse held. A folder without a manifest is an interrupted snapshot: never restored, and
removed by the next prune.

* DuckDB: ``EXPORT DATABASE ... (FORMAT PARQUET)`` into a temp dir (its ``schema.sql`` and ``load.sql`` travel
  along), read inside the same connection that counted the rows.
* Postgres: each table through a server-side cursor into a Parquet file, all in one ``REPEATABLE READ``
  transaction, so the files and the counts are of one moment.

Snapshots are kept :data:`KEEP_DAYS` days; the newest complete snapshot is never pruned, however old it is, nor is
one under a legal hold. A snapshot the store refuses to delete (an object lock) is reported and kept; the prune goes
on with the others. A manifest that cannot be read is skipped with a warning naming its key; one of a format this
release does not support stops the listing (:class:`SnapshotError`) rather than being passed over.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tiklive_assets.storage import ObjectStore, StoreError, sha256_file
from tiklive_assets.storage.mirror import MirroredStore
from tiklive_assets.warehouse import DuckDBWarehouse, PostgresWarehouse, describe_url, open_warehouse
from tiklive_assets.warehouse.schema import RESEARCH_TABLES, TABLES, Table

SNAPSHOT_PREFIX = "warehouse-snapshots/"
MANIFEST = "manifest.json"
KEEP_DAYS = 30
INCOMPLETE_GRACE = timedelta(hours=6)  # a folder without a manifest this old is an interrupted snapshot
FORMAT_VERSION = 1
ID_FORMAT = "%Y%m%dT%H%M%SZ"
KNOWN_TABLES: dict[str, Table] = {t.name: t for t in (*TABLES, *RESEARCH_TABLES)}
_BATCH_ROWS = 50_000
_COPY_LINE = re.compile(r"""COPY\s+"?(?P<table>[^"\s]+)"?\s+FROM\s+'(?P<path>[^']+)'""", re.IGNORECASE)
_CONTENT_TYPES = {".parquet": "application/vnd.apache.parquet", ".sql": "text/plain", ".json": "application/json"}
log = logging.getLogger(__name__)


class SnapshotError(RuntimeError):
    """A snapshot cannot be taken, found or read; the message says what to do."""


class ManifestUnreadable(SnapshotError):
    """A ``manifest.json`` that is not valid JSON or lacks a field a manifest holds."""


class Pruned(list[str]):
    """The ids of the snapshots removed, oldest first; ``failed``: id -> why the store refused a delete (kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: dict[str, str] = {}


@dataclass(frozen=True)
class SnapshotFile:
    name: str
    bytes: int
    sha256: str
    table: str | None = None  # the table it holds (None: DuckDB's schema.sql / load.sql)


@dataclass(frozen=True)
class Manifest:
    """What a snapshot holds; ``manifest.json`` is this, as JSON."""

    snapshot_id: str
    taken_at: datetime
    backend: str  # "duckdb" or "postgres"
    warehouse: str  # where it was taken from (no password)
    last_day: date | None  # the newest ``dt`` of the warehouse's daily tables; None: they were empty
    tables: dict[str, int]  # rows per table
    files: list[SnapshotFile] = field(default_factory=list)
    seconds: float = 0.0
    format: int = FORMAT_VERSION

    @property
    def prefix(self) -> str:
        return f"{SNAPSHOT_PREFIX}{self.snapshot_id}/"

    @property
    def size(self) -> int:
        """Bytes of every file of the snapshot."""
        return sum(f.bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def replay_from(self) -> date:
        """The first day a restore must replay: the day after ``last_day`` when that day had ended (UTC) before the
        snapshot was taken, else ``last_day`` itself (it was still open: more of it may have been archived since).
        An empty snapshot replays from the day it was taken."""
        if self.last_day is None:
            return self.taken_at.date()
        day_ended = datetime.combine(self.last_day + timedelta(days=1), datetime.min.time(), UTC)
        return self.last_day + timedelta(days=1) if self.taken_at >= day_ended else self.last_day

    def to_json(self) -> bytes:
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        data["last_day"] = self.last_day.isoformat() if self.last_day else None
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, key: str = MANIFEST) -> Manifest:
        """The manifest in ``raw`` (read from ``key``); :class:`ManifestUnreadable` when it is not one,
        :class:`SnapshotError` when its format is not :data:`FORMAT_VERSION`."""
        try:
            data = json.loads(raw)
            version = int(data.get("format", FORMAT_VERSION))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ManifestUnreadable(f"{key} is not a snapshot manifest ({type(exc).__name__}: {exc})") from exc
        if version != FORMAT_VERSION:
            raise SnapshotError(
                f"{key} is a snapshot manifest of format {version}; this release reads format {FORMAT_VERSION}: "
                "restore it with the release that took it, or an older snapshot with --at"
            )
        try:
            return cls(
                snapshot_id=data["snapshot_id"],
                taken_at=datetime.fromisoformat(data["taken_at"]),
                backend=data["backend"],
                warehouse=data["warehouse"],
                last_day=date.fromisoformat(data["last_day"]) if data.get("last_day") else None,
                tables={str(k): int(v) for k, v in data["tables"].items()},
                files=[SnapshotFile(**f) for f in data.get("files", [])],
                seconds=float(data.get("seconds", 0.0)),
                format=version,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ManifestUnreadable(f"{key} is not a snapshot manifest ({type(exc).__name__}: {exc})") from exc


def snapshot_id(when: datetime) -> str:
    return when.astimezone(UTC).strftime(ID_FORMAT)


def parse_snapshot_id(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


# -- taking one ---------------------------------------------------------------------------------------------------


def last_day(wh: Any, tables: list[str]) -> date | None:
    """The newest ``dt`` over the daily (window) tables the warehouse holds."""
    days = [wh.query(f"SELECT max(dt) FROM {t.name}")[0][0] for t in TABLES if t.mode == "window" and t.name in tables]
    found = [d for d in days if d is not None]
    return max(found) if found else None


def _duckdb_export(wh: DuckDBWarehouse, folder: Path) -> tuple[dict[str, int], date | None, dict[str, str]]:
    """EXPORT DATABASE into ``folder``; (rows per table, last day, file name -> table), read in one connection."""
    names = [r[0] for r in wh.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema()")]
    rows = {name: wh.row_count(name) if name in KNOWN_TABLES else _count(wh, name) for name in names}
    newest = last_day(wh, names)
    escaped = str(folder).replace("'", "''")
    wh.con.execute(f"EXPORT DATABASE '{escaped}' (FORMAT PARQUET, COMPRESSION ZSTD)")
    tables: dict[str, str] = {}
    load = folder / "load.sql"
    for match in _COPY_LINE.finditer(load.read_text() if load.exists() else ""):
        tables[Path(match["path"]).name] = match["table"]
    return rows, newest, tables


def _count(wh: Any, name: str) -> int:
    return int(wh.query(f'SELECT count(*) FROM "{name}"')[0][0])


def _postgres_export(wh: PostgresWarehouse, folder: Path) -> tuple[dict[str, int], date | None, dict[str, str]]:
    """Each known table through a server-side cursor into ``<table>.parquet``, in one REPEATABLE READ transaction."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    conn = wh.conn
    conn.commit()
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            stored = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                ).fetchall()
            }
            names = [name for name in KNOWN_TABLES if name in stored]
            newest = last_day(_InTransaction(conn), names)
            rows, tables = {}, {}
            for name in names:
                spec = KNOWN_TABLES[name]
                path = folder / f"{name}.parquet"
                with (
                    pq.ParquetWriter(path, spec.arrow_schema, compression="zstd") as writer,
                    conn.cursor(name=f"snapshot_{name}") as cur,
                ):
                    cur.execute(f"SELECT {', '.join(spec.column_names)} FROM {name}")
                    rows[name] = 0
                    while batch := cur.fetchmany(_BATCH_ROWS):
                        columns = dict(zip(spec.column_names, zip(*batch, strict=True), strict=True))
                        writer.write_table(pa.Table.from_pydict(columns, schema=spec.arrow_schema))
                        rows[name] += len(batch)
                tables[path.name] = name
    finally:
        conn.isolation_level = None
    return rows, newest, tables


class _InTransaction:
    """``query`` inside the caller's open transaction (PostgresWarehouse.query would commit it)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def query(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        return self.conn.execute(sql.replace("?", "%s"), list(params)).fetchall()


def take_snapshot(
    store: ObjectStore, warehouse_url: str, *, now: datetime | None = None, scratch: Path | None = None
) -> Manifest:
    """Snapshot the warehouse at ``warehouse_url`` into ``store``: every file first, the manifest last."""
    started = time.monotonic()
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    ident = snapshot_id(when)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warehouse-snapshot-", dir=scratch) as tmp:
        folder = Path(tmp) / ident
        target = open_warehouse(warehouse_url)
        backend = "postgres" if isinstance(target, PostgresWarehouse) else "duckdb"
        if isinstance(target, DuckDBWarehouse) and not target.path.exists():
            raise SnapshotError(f"no warehouse at {warehouse_url}: nothing to snapshot (run the warehouse first)")
        with open_warehouse(warehouse_url, read_only=backend == "duckdb") as wh:
            if isinstance(wh, DuckDBWarehouse):
                rows, newest, tables = _duckdb_export(wh, folder)
            else:
                folder.mkdir()
                assert isinstance(wh, PostgresWarehouse)
                rows, newest, tables = _postgres_export(wh, folder)
        files = []
        for path in sorted(folder.iterdir()):
            digest, size = sha256_file(path)
            files.append(SnapshotFile(path.name, size, digest, tables.get(path.name)))
            _upload(store, f"{SNAPSHOT_PREFIX}{ident}/{path.name}", path)
        manifest = Manifest(
            snapshot_id=ident,
            taken_at=when,
            backend=backend,
            warehouse=describe_url(warehouse_url),
            last_day=newest,
            tables=rows,
            files=files,
            seconds=round(time.monotonic() - started, 3),
        )
        result = store.put_bytes(manifest.prefix + MANIFEST, manifest.to_json(), content_type="application/json")
        if result.status == "conflict":
            raise SnapshotError(f"{manifest.prefix}{MANIFEST} already holds another snapshot; try again in a second")
    return manifest


def _upload(store: ObjectStore, key: str, path: Path) -> None:
    content_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    if store.put_file(key, path, content_type=content_type).status == "conflict":
        raise SnapshotError(f"{key} already holds other bytes: another snapshot was taken the same second")


def unreplicated(store: ObjectStore, manifest: Manifest) -> list[str]:
    """The snapshot's keys the secondary store missed in this process (empty without a secondary)."""
    if not isinstance(store, MirroredStore):
        return []
    return [key for key in store.unreplicated if key.startswith(manifest.prefix)]


# -- finding, reading and pruning ----------------------------------------------------------------------------------


def _folders(store: ObjectStore) -> dict[str, list[str]]:
    """Snapshot id -> the keys in its folder."""
    folders: dict[str, list[str]] = {}
    for info in store.list(SNAPSHOT_PREFIX):
        ident, _, _name = info.key.removeprefix(SNAPSHOT_PREFIX).partition("/")
        folders.setdefault(ident, []).append(info.key)
    return folders


def list_snapshots(store: ObjectStore) -> list[Manifest]:
    """Every complete snapshot (its manifest written), oldest first. A manifest that cannot be read is skipped with a
    warning naming its key; one of an unsupported format raises :class:`SnapshotError`."""
    found = []
    for ident, keys in sorted(_folders(store).items()):
        key = f"{SNAPSHOT_PREFIX}{ident}/{MANIFEST}"
        if key in keys:
            try:
                found.append(Manifest.from_json(store.get_bytes(key), key))
            except ManifestUnreadable as exc:
                log.warning("skipping snapshot %s: %s", ident, exc)
    return sorted(found, key=lambda m: m.taken_at)


def choose_snapshot(store: ObjectStore, at: datetime | None = None) -> Manifest:
    """The newest complete snapshot, or the newest taken at or before ``at``."""
    snapshots = list_snapshots(store)
    if at is not None:
        snapshots = [m for m in snapshots if m.taken_at <= at]
    if not snapshots:
        when = f" taken at or before {at.isoformat()}" if at else ""
        raise SnapshotError(
            f"no warehouse snapshot{when} under {SNAPSHOT_PREFIX} in {store.describe()}: rebuild the warehouse from "
            "the archive alone with `tiklive replay --from <first day> --to <today>`"
        )
    return snapshots[-1]


def prune_snapshots(
    store: ObjectStore,
    *,
    now: datetime | None = None,
    keep_days: int = KEEP_DAYS,
    held: Callable[[str], bool] = lambda key: False,
) -> Pruned:
    """Remove snapshots older than ``keep_days`` and interrupted ones; their ids. The newest complete snapshot
    stays however old it is, and so does a snapshot with a file ``held`` (under a legal hold). A snapshot whose
    delete the store refuses (:class:`StoreError`, e.g. an object lock) is kept and named in ``failed``; the prune
    goes on with the next one (a folder left without its manifest is removed by a later prune)."""
    now = now or datetime.now(UTC)
    folders = _folders(store)
    complete = sorted(i for i, keys in folders.items() if f"{SNAPSHOT_PREFIX}{i}/{MANIFEST}" in keys)
    newest = complete[-1] if complete else None
    removed = Pruned()
    for ident, keys in sorted(folders.items()):
        taken = parse_snapshot_id(ident)
        if ident == newest or taken is None or any(held(key) for key in keys):
            continue  # the newest complete snapshot stays, held ones too; a folder not named by a time is not ours
        old = taken < now - timedelta(days=keep_days)
        interrupted = ident not in complete and taken < now - INCOMPLETE_GRACE
        if old or interrupted:
            manifest = [k for k in keys if k.endswith("/" + MANIFEST)]
            try:
                for key in manifest + [k for k in keys if k not in manifest]:  # the manifest first: never half-complete
                    store.delete(key)
            except StoreError as exc:
                log.warning("snapshot %s not pruned: %s", ident, exc)
                removed.failed[ident] = str(exc)
                continue
            removed.append(ident)
    return removed


def held_by(state: Any) -> Callable[[str], bool]:
    """Whether a legal hold recorded in the state database covers a key (a held snapshot is never pruned)."""
    from tiklive_assets.compliance.legal_hold import LegalHolds

    holds = LegalHolds(state).snapshot()
    return lambda key: holds.covers(key) is not None


@contextmanager
def fetched(store: ObjectStore, manifest: Manifest, scratch: Path | None = None) -> Iterator[Path]:
    """The snapshot's files in a temp dir (removed afterwards), each checked against the manifest's sha256."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warehouse-restore-", dir=scratch) as tmp:
        folder = Path(tmp)
        for item in manifest.files:
            path = folder / item.name
            with store.open_read(manifest.prefix + item.name) as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            digest, size = sha256_file(path)
            if (digest, size) != (item.sha256, item.bytes):
                raise SnapshotError(
                    f"{manifest.prefix}{item.name} is damaged (sha256 {digest[:16]}, {size} bytes; the manifest says "
                    f"{item.sha256[:16]}, {item.bytes} bytes): restore an older snapshot with --at, or copy it back "
                    "from the secondary store"
                )
        yield folder

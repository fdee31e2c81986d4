"""Snapshots of the state database in the object store, and restores from them.

A snapshot is the folder ``state-snapshots/<UTC time>/`` (time as ``YYYYMMDDTHHMMSS.ffffffZ``): one gzip JSON Lines
file per table (``<table>.jsonl.gz``, a JSON object per row) read in one consistent transaction, then
``manifest.json`` (format, schema version, the database it came from, per table its columns, row count, size and
sha256). The manifest is written last, so a folder without one is an interrupted snapshot and is never restored.

Snapshots are kept 30 days; older ones are pruned, never the newest complete one, nor one a legal hold covers.
A restore takes the newest complete snapshot at or before a time, checks every file against the manifest, and
replaces the tables in one write transaction; it refuses a database that already holds rows unless forced.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tiklive_assets.storage.errors import StoreError

from .core import StateCore, as_utc, utcnow
from .errors import StateError
from .schema import ADDED_COLUMNS
from .tables import Column, TableAccess, core_tables, read_consistently, state_tables, write_at_once

PREFIX = "state-snapshots/"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
KEEP = timedelta(days=30)
PARTIAL_GRACE = timedelta(days=1)  # an interrupted snapshot older than this is removed (a running one is younger)
_NAME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_CHUNK = 1 << 20

Progress = Callable[[str], None]


def schema_version() -> int:
    """This release's state schema as a number that only grows: the tables it creates plus the columns it adds to
    older databases (the state database is only ever migrated forward, by adding)."""
    return len(core_tables()) + len(ADDED_COLUMNS)


class SnapshotError(StateError):
    """A snapshot cannot be taken, found or restored; the message says what, where, and what to do."""


class StateNotEmpty(SnapshotError):
    """The state database to restore into already holds rows (restore replaces them only when forced)."""


def snapshot_name(when: datetime) -> str:
    return as_utc(when).strftime(_NAME_FORMAT)


def parse_snapshot_name(name: str) -> datetime | None:
    try:
        return datetime.strptime(name, _NAME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class SnapshotInfo:
    """One snapshot folder as listed: complete once its manifest exists."""

    name: str
    taken_at: datetime
    keys: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.name}/"

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST

    @property
    def complete(self) -> bool:
        return self.manifest_key in self.keys


def list_snapshots(store: Any) -> list[SnapshotInfo]:
    """Every snapshot folder in ``store``, oldest first (complete or not; see ``SnapshotInfo.complete``)."""
    found: dict[str, SnapshotInfo] = {}
    for info in store.list(PREFIX):
        name = info.key[len(PREFIX) :].split("/", 1)[0]
        taken = parse_snapshot_name(name)
        if taken is None:
            continue  # not a snapshot folder
        snap = found.setdefault(name, SnapshotInfo(name, taken))
        snap.keys.append(info.key)
        snap.size += int(info.size)
    return sorted(found.values(), key=lambda s: s.taken_at)


def read_manifest(store: Any, snap: SnapshotInfo) -> dict[str, Any]:
    try:
        manifest = json.loads(store.get_bytes(snap.manifest_key))
    except (KeyError, ValueError) as exc:
        raise SnapshotError(
            f"the manifest of snapshot {snap.name} ({snap.manifest_key} in {store.describe()}) cannot be read "
            f"({type(exc).__name__}: {exc}); restore another one with --at (`tiklive state list` shows them)"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise SnapshotError(
            f"snapshot {snap.name} has manifest format {manifest.get('format') if isinstance(manifest, dict) else '?'}"
            f", this release reads format {FORMAT_VERSION}: restore it with the release that wrote it"
        )
    return manifest


# -- taking one ---------------------------------------------------------------------------------------------------


def _write_rows(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
            count += 1
    return count


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def take_snapshot(
    state: StateCore,
    store: Any,
    *,
    scratch: Path | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    extra_tables: Sequence[str] = (),
) -> dict[str, Any]:
    """Copy every table of ``state`` to ``store`` as one snapshot; returns its manifest (``name`` names it).

    The tables are read in one read transaction (a single moment of the database, however busy), written to
    local files under ``scratch``, then uploaded, the manifest last."""
    say = progress or (lambda _message: None)
    state._ensure_migrated()
    taken = as_utc(now or utcnow())
    name = snapshot_name(taken)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="state-snapshot-", dir=scratch) as tmp:
        folder = Path(tmp)

        def read_all(access: TableAccess) -> dict[str, dict[str, Any]]:
            tables: dict[str, dict[str, Any]] = {}
            for table in access.existing(state_tables(extra_tables)):
                columns = access.columns(table)
                rows = _write_rows(folder / f"{table}.jsonl.gz", access.rows(table, columns))
                tables[table] = {
                    "file": f"{table}.jsonl.gz",
                    "rows": rows,
                    "columns": [{"name": c.name, "type": c.type} for c in columns],
                }
                say(f"  read {table}: {rows:,} row(s)")
            return tables

        tables = read_consistently(state, read_all)
        prefix = f"{PREFIX}{name}/"
        for entry in tables.values():
            path = folder / entry["file"]
            entry["bytes"], entry["sha256"] = path.stat().st_size, _sha256(path)
            result = store.put_file(prefix + entry["file"], path, content_type="application/gzip")
            if result.status == "conflict":
                raise SnapshotError(f"{prefix}{entry['file']} already holds other bytes; take the snapshot again")
            say(f"  stored {prefix}{entry['file']} ({entry['bytes']:,} bytes)")
    manifest = {
        "format": FORMAT_VERSION,
        "schema_version": schema_version(),
        "name": name,
        "taken_at": taken.isoformat(timespec="microseconds"),
        "dialect": state.dialect,
        "database": state.describe(),
        "tables": tables,
    }
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    store.put_bytes(prefix + MANIFEST, body, content_type="application/json")  # last: the snapshot is complete
    say(f"  stored {prefix}{MANIFEST}: {sum(t['rows'] for t in tables.values()):,} row(s) in {len(tables)} tables")
    return manifest


# -- pruning ------------------------------------------------------------------------------------------------------


@dataclass
class PruneReport:
    deleted: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # old enough, but a legal hold covers them
    failed: list[str] = field(default_factory=list)  # the store refused a delete (say, its own object lock)
    kept: int = 0


def prune_snapshots(
    store: Any,
    *,
    keep: timedelta = KEEP,
    now: datetime | None = None,
    held: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
) -> PruneReport:
    """Delete complete snapshots taken more than ``keep`` ago and interrupted ones older than a day; never the newest
    complete snapshot, nor a snapshot one of whose keys ``held`` says is under a legal hold."""
    say = progress or (lambda _message: None)
    now = as_utc(now or utcnow())
    snaps = list_snapshots(store)
    complete = [s for s in snaps if s.complete]
    newest = complete[-1].name if complete else None
    report = PruneReport()
    for snap in snaps:
        age = now - snap.taken_at
        expired = age > keep if snap.complete else age > min(keep, PARTIAL_GRACE)
        if snap.name == newest or not expired:
            report.kept += 1
            continue
        if held is not None and any(held(key) for key in snap.keys):
            report.held.append(snap.name)
            report.kept += 1
            continue
        try:  # the manifest first: a folder half deleted is never taken for a complete snapshot
            for key in sorted(snap.keys, key=lambda k: k != snap.manifest_key):
                store.delete(key)
        except StoreError as exc:
            report.failed.append(f"{snap.name}: {exc}")
            say(f"  could not prune {snap.prefix}: {exc}")
            continue
        report.deleted.append(snap.name)
        say(f"  pruned {snap.prefix} (taken {snap.taken_at:%Y-%m-%d %H:%M} UTC)")
    return report


# -- restoring ----------------------------------------------------------------------------------------------------


def choose_snapshot(store: Any, at: datetime | None = None) -> SnapshotInfo:
    """The newest complete snapshot taken at or before ``at`` (default: the newest of all)."""
    snaps = [s for s in list_snapshots(store) if s.complete]
    if at is not None:
        snaps = [s for s in snaps if s.taken_at <= as_utc(at)]
    if not snaps:
        when = f" taken at or before {as_utc(at):%Y-%m-%d %H:%M:%S} UTC" if at is not None else ""
        raise SnapshotError(
            f"no complete state snapshot{when} under {PREFIX} in {store.describe()}: `tiklive state list` shows "
            "what there is; without one, `tiklive state rebuild` derives the state from the archive"
        )
    return snaps[-1]


def _download(store: Any, key: str, path: Path) -> str:
    digest = hashlib.sha256()
    with store.open_read(key) as src, path.open("wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


@dataclass
class RestoreReport:
    snapshot: str
    rows: dict[str, int]
    replaced: dict[str, int]  # rows the database held before, per table (only with force)
    kept: int = 0  # legal-hold and erasure-log kv rows the database held, kept over the snapshot's (only with force)


def _kept_prefixes() -> tuple[str, ...]:
    """kv prefixes a forced restore keeps: legal holds (by prefix, tag or user), the key-set tags they match, and
    the erasure log. A hold placed after the snapshot must survive it, or retention and erasure could delete what it
    holds; the erasure log records what was erased, which the snapshot cannot know."""
    from tiklive_assets.compliance.erasure.log import ERASURE_LOG_PREFIX
    from tiklive_assets.compliance.legal_hold import HOLD_KV_PREFIX, KEYSET_HOLD_KV_PREFIX, TAG_KV_PREFIX

    return (HOLD_KV_PREFIX, KEYSET_HOLD_KV_PREFIX, TAG_KV_PREFIX, ERASURE_LOG_PREFIX)


def _current_kv(access: TableAccess, prefixes: Sequence[str]) -> list[list[Any]]:
    """The database's kv rows (key, value, updated_at) under ``prefixes``, read before a restore clears them."""
    if not access.existing(["kv"]):
        return []
    rows: list[list[Any]] = []
    for prefix in prefixes:
        rows += [
            list(r)
            for r in access.tx.fetchall(
                "SELECT key, value, updated_at FROM kv WHERE substr(key, 1, ?) = ?", [len(prefix), prefix]
            )
        ]
    return rows


def _put_back_kv(access: TableAccess, rows: list[list[Any]]) -> int:
    """Upsert ``rows`` into kv: the value the database held wins over the snapshot's."""
    for row in rows:
        access.tx.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            row,
        )
    return len(rows)


def occupied(state: StateCore, extra_tables: Sequence[str] = ()) -> dict[str, int]:
    """Rows per state table that holds any (empty: a fresh database)."""
    state._ensure_migrated()

    def counts(access: TableAccess) -> dict[str, int]:
        found = {t: access.count(t) for t in access.existing(state_tables(extra_tables))}
        return {t: n for t, n in found.items() if n}

    return dict(read_consistently(state, counts))


def _columns_to_restore(table: str, wanted: list[str], target: list[Column], snap: str) -> list[Column]:
    if not target:
        raise SnapshotError(
            f"snapshot {snap} holds table {table}, which this state database lacks and this release does not "
            "create: restore with the release that took the snapshot"
        )
    by_name = {c.name: c for c in target}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise SnapshotError(
            f"snapshot {snap} has column(s) {', '.join(missing)} of {table} that this state database lacks: it was "
            "taken by a newer release; upgrade, then restore"
        )
    return [by_name[n] for n in wanted]


def _research_tables(state: Any) -> None:
    """Create the Research API's tables (created on its first use) so its rows can be restored into them."""
    from tiklive_assets.research.quota import ResearchState

    ResearchState(state).windows()


def restore_snapshot(
    state: StateCore,
    store: Any,
    snap: SnapshotInfo,
    *,
    force: bool = False,
    scratch: Path | None = None,
    progress: Progress | None = None,
    migrations: Sequence[Callable[[Any], object]] | None = None,
) -> RestoreReport:
    """Replace every state table with snapshot ``snap``'s rows, in one write transaction.

    ``migrations`` create the tables other areas own before the rows go in (default: the Research API's quota
    ledger and window progress). Refuses (StateNotEmpty) when the database already holds rows, unless ``force``.
    Legal holds, the key-set tags they match and the erasure log the database holds are kept (their current value
    wins over the snapshot's): a hold placed after the snapshot still holds, and past erasures stay recorded."""
    say = progress or (lambda _message: None)
    keep = _kept_prefixes()
    kept = 0
    manifest = read_manifest(store, snap)
    state.migrate()
    for migrate in (_research_tables,) if migrations is None else migrations:
        migrate(state)
    tables: dict[str, dict[str, Any]] = manifest["tables"]
    before = occupied(state, list(tables))
    if before and not force:
        held = ", ".join(f"{t} {n:,}" for t, n in sorted(before.items()))
        raise StateNotEmpty(
            f"the state database at {state.describe()} already holds rows ({held}); restoring snapshot "
            f"{snap.name} would replace them. Stop every capture run, take `tiklive state snapshot` if you may want "
            "them back, then run the restore again with --force (or point TIKLIVE_STATE_URL at an empty database)"
        )
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="state-restore-", dir=scratch) as tmp:
        folder = Path(tmp)
        for entry in tables.values():
            key = snap.prefix + entry["file"]
            try:
                digest = _download(store, key, folder / entry["file"])
            except KeyError:
                raise SnapshotError(f"{key} is missing from {store.describe()}: restore another snapshot") from None
            if digest != entry["sha256"]:
                raise SnapshotError(
                    f"{key} does not match its manifest (sha256 {digest[:12]}..., expected {entry['sha256'][:12]}..."
                    "): the copy is damaged; restore another snapshot with --at"
                )
            say(f"  fetched {key} ({entry['bytes']:,} bytes, {entry['rows']:,} row(s))")

        def replace(access: TableAccess) -> dict[str, int]:
            nonlocal kept
            restored: dict[str, int] = {}
            current = _current_kv(access, keep)
            for table in access.existing(state_tables(list(tables))):
                access.clear(table)  # a table the snapshot lacks was empty when it was taken
            for table, entry in tables.items():
                wanted = [c["name"] for c in entry["columns"]]
                columns = _columns_to_restore(table, wanted, access.columns(table), snap.name)
                restored[table] = access.insert(table, columns, _read_rows(folder / entry["file"]))
                if restored[table] != entry["rows"]:
                    raise SnapshotError(
                        f"{snap.prefix}{entry['file']} holds {restored[table]:,} row(s), its manifest says "
                        f"{entry['rows']:,}: nothing was restored; restore another snapshot with --at"
                    )
                say(f"  restored {table}: {restored[table]:,} row(s)")
            kept = _put_back_kv(access, current)
            if kept:
                say(f"  kept {kept:,} legal-hold and erasure-log row(s) the database held")
            return restored

        rows = write_at_once(state, replace)
    return RestoreReport(snap.name, rows, before, kept)

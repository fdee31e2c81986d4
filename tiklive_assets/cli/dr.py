"""``tiklive dr``: disaster recovery. Warehouse snapshots, restoring the warehouse, and the recovery drills.

* ``tiklive dr snapshot``: snapshot the warehouse now into ``warehouse-snapshots/<UTC time>/`` of the archive's
  store (mirrored to the secondary when one is configured), then prune snapshots older than 30 days (never the
  newest, never one under a legal hold; one the store refuses to delete is named and kept). The
  ``warehouse_snapshot`` job does the same every day.
* ``tiklive dr snapshots``: list the snapshots.
* ``tiklive dr restore-warehouse [--at TIME]``: the latest snapshot (or the newest taken at or before TIME; a bare
  date means the end of that day, 23:59:59 UTC) into the configured warehouse, then a replay of only the archived
  days after it; prints what it did and the time taken.
* ``tiklive dr drill warehouse-lost | state-lost | key-revoked | pipeline-drift | all``: run a disaster on a scratch
  copy (a temp data root and the bundled sandbox API), recover, check the outcome and print the recovery time.

Exit status 0 on success (a drill: it passed); 1 when a restore left damaged days, named erasures to run again or
could not read the erasure log, or a drill failed; 2 for a usage problem, no snapshot, or a warehouse that cannot be
written.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from tiklive_assets.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, add_command, add_home, fail, use_location

SUMMARY = "disaster recovery: warehouse snapshots, restore-warehouse, and the recovery drills"
DESCRIPTION = (
    "Warehouse snapshots (daily, 30 days kept, in the archive's store and its secondary), restoring the warehouse "
    "from the latest snapshot plus a replay of the days after it, and drills that stage a disaster on a scratch copy "
    "with the bundled sandbox, recover from it, check the outcome and measure the recovery time."
)
EXAMPLES = (
    "tiklive dr snapshot",
    "tiklive dr snapshots",
    "tiklive dr restore-warehouse",
    "tiklive dr restore-warehouse --at 2026-11-28T12:00 --into /tmp/check.duckdb",
    "tiklive dr drill warehouse-lost",
    "tiklive dr drill all",
)
DRILLS = ("warehouse-lost", "state-lost", "key-revoked", "pipeline-drift")
STAGES = {  # what each drill stages (the drills' own words; not imported: that would slow every command's start)
    "warehouse-lost": "the warehouse is deleted; restore the latest snapshot, then replay what was archived after it",
    "state-lost": "the state database is deleted; rebuild it from the archive, then run the next day",
    "key-revoked": "the API rejects the key mid-run; rotate it and rerun",
    "pipeline-drift": "the API changes its payload shapes; the drift is reported, the unreadable object quarantined",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    dr = add_command(sub, "dr", SUMMARY, DESCRIPTION, EXAMPLES)
    actions = dr.add_subparsers(dest="dr_command", required=True, metavar="ACTION")
    snapshot = actions.add_parser(
        "snapshot",
        help="snapshot the warehouse now, then prune snapshots past 30 days (never the newest, never a held one)",
        description="Snapshot the warehouse now, then prune snapshots older than 30 days. The newest complete "
        "snapshot is never pruned, however old it is, nor is a snapshot under a legal hold; a snapshot the store "
        "refuses to delete (an object lock) is named and kept.",
    )
    listing = actions.add_parser("snapshots", help="list the warehouse snapshots, oldest first")
    restore = actions.add_parser(
        "restore-warehouse",
        help="restore the latest snapshot (or --at TIME) into the warehouse, then replay only the days after it",
    )
    restore.add_argument(
        "--at",
        type=_parse_time,
        default=None,
        metavar="TIME",
        help="the newest snapshot taken at or before TIME (YYYY-MM-DD[THH:MM[:SS]], UTC unless it has an offset, or "
        "a snapshot id like 20261130T013000Z); a bare date YYYY-MM-DD means the end of that day, 23:59:59 UTC, so "
        "the snapshots taken that day count",
    )
    restore.add_argument(
        "--into",
        default=None,
        metavar="PATH_OR_URL",
        help="target: a DuckDB file path or postgresql:// URL (default: $TIKLIVE_WAREHOUSE_URL, "
        "else $TIKLIVE_HOME/warehouse.duckdb)",
    )
    restore.add_argument("--exports", action="store_true", help="also rewrite the Parquet exports of each replayed day")
    restore.add_argument(
        "--processes", type=int, default=1, metavar="N", help="parse the replayed days over N processes"
    )
    drill = actions.add_parser(
        "drill",
        help="stage a disaster on a scratch copy, recover, check and time it",
        description="Stage a disaster, recover from it, check the outcome and print the recovery time. Each drill "
        "runs on a scratch copy (a temp data root, removed afterwards unless --keep) against the bundled sandbox "
        "API: it never touches this deployment's data root, warehouse, state database, store or API key.",
        epilog="scenarios: " + "; ".join(f"{name}: {STAGES[name]}" for name in DRILLS) + "; all: each in turn.",
    )
    drill.add_argument("scenario", choices=(*DRILLS, "all"), help="which disaster ('all': each in turn)")
    drill.add_argument("--keep", action="store_true", help="keep the scratch data root (its path is printed)")
    add_home(snapshot, listing, restore)


def _parse_time(text: str) -> datetime:
    from tiklive_assets.recovery.snapshots import parse_snapshot_id

    ident = parse_snapshot_id(text)
    if ident is not None:
        return ident
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or a snapshot id like 20261130T013000Z"
        ) from None
    if len(text) == 10:  # a bare date means the end of that day (23:59:59 UTC): its snapshots count
        when = when.replace(hour=23, minute=59, second=59)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    if args.dr_command == "drill":
        return _drill(args)
    from tiklive_assets.recovery.snapshots import SnapshotError
    from tiklive_assets.storage import StoreError
    from tiklive_assets.warehouse import WarehouseError

    root = use_location(args)
    try:
        if args.dr_command == "snapshot":
            return _snapshot(root)
        if args.dr_command == "snapshots":
            return _list()
        return _restore(args, root)
    except (SnapshotError, WarehouseError, StoreError) as exc:
        return fail(exc)


def _store():
    from tiklive_assets.defs.resources import default_resources

    return default_resources()["archive_store"].open()  # the archive's store: local, S3, or mirrored


def _snapshot(root) -> int:
    from tiklive_assets.recovery.snapshots import prune_snapshots, take_snapshot, unreplicated
    from tiklive_assets.warehouse import default_url, describe_url

    store = _store()
    url = default_url(root.home)
    print(f"snapshotting {describe_url(url)} into {store.describe()}")
    manifest = take_snapshot(store, url, scratch=root.home / "tmp")
    print(
        f"snapshot {manifest.snapshot_id}: {manifest.rows:,} rows in {len(manifest.tables)} tables, "
        f"{manifest.size / 1e6:.1f} MB, last day {manifest.last_day or 'none'}, {manifest.seconds:.1f}s"
    )
    missed = unreplicated(store, manifest)
    if missed:
        print(f"{len(missed)} file(s) did not reach the secondary store: `tiklive mirror repair` copies them")
    from tiklive_assets.defs.resources import DataRootResource
    from tiklive_assets.recovery.snapshots import held_by

    with DataRootResource(home=str(root.home)).state() as state:  # snapshots under a legal hold are kept
        removed = prune_snapshots(store, held=held_by(state))
    print(f"pruned {len(removed)} snapshot(s) older than 30 days" + (f": {', '.join(removed)}" if removed else ""))
    for ident, why in removed.failed.items():  # the new snapshot is taken: a refused delete does not undo it
        print(f"snapshot {ident} was not pruned, the store refused to delete it (kept): {why}", file=sys.stderr)
    return EXIT_OK


def _list() -> int:
    from tiklive_assets.recovery.snapshots import list_snapshots

    store = _store()
    snapshots = list_snapshots(store)
    if not snapshots:
        print(f"no warehouse snapshot in {store.describe()}: `tiklive dr snapshot` takes one")
        return EXIT_OK
    print(f"{len(snapshots)} snapshot(s) in {store.describe()}:")
    for m in snapshots:
        print(
            f"  {m.snapshot_id}  last day {str(m.last_day or 'none'):<10}  {m.rows:>12,} rows  "
            f"{m.size / 1e6:>8.1f} MB  {m.backend}"
        )
    return EXIT_OK


def _erasure_log(root) -> tuple[list[dict], str | None]:
    """The erasure log of the state database and None, or nothing and why it could not be read (the restore goes
    on, then exits with an error: erased users' rows may be back in the restored tables)."""
    from tiklive_assets.compliance import erasure_log
    from tiklive_assets.defs.resources import DataRootResource

    try:
        with DataRootResource(home=str(root.home)).state() as state:
            return erasure_log(state), None
    except Exception as exc:  # noqa: BLE001 - a lost state database must not stop a warehouse restore
        return [], f"{type(exc).__name__}: {exc}"


def _restore(args: argparse.Namespace, root) -> int:
    from tqdm import tqdm

    from tiklive_assets.cli.replay import _print_report
    from tiklive_assets.recovery.restore import restore_warehouse
    from tiklive_assets.warehouse import default_url, describe_url

    store = _store()
    target = args.into or default_url(root.home)
    print(f"restoring {describe_url(target)} from {store.describe()}")
    erasures, unreadable = _erasure_log(root)
    if unreadable:
        print(f"the erasure log could not be read ({unreadable}): restoring anyway", file=sys.stderr)
    bar = tqdm(desc="replay", unit="obj", unit_scale=True, file=sys.stderr, disable=None)
    try:
        report = restore_warehouse(
            store,
            target,
            at=args.at,
            exports=root.exports if args.exports else None,
            processes=args.processes,
            scratch=root.home / "tmp",
            erasure_log=erasures,
            progress=lambda n: None if bar.update(n) else None,
            say=print,
        )
    finally:
        bar.close()
    for name in report.not_in_snapshot:
        print(f"  {name}: not in the snapshot (a newer table): `tiklive replay` from the first day fills it")
    for name in report.unknown_tables:
        print(f"  {name}: in the snapshot but unknown to this release, not restored")
    if report.replay is not None:
        _print_report(report.replay)
    if report.research:
        print(f"research tables rebuilt from research-raw/: {report.research}")
    for entry in report.erasures_after:
        fail(
            f"erasure {entry.get('request_id')} ({entry.get('subject_ref')}) ran after this snapshot was taken: the "
            "restored tables may hold that user's rows again; run the same `tiklive erase ... --execute` again now"
        )
    print(
        f"restored {describe_url(target)} in {report.seconds:.1f}s: snapshot {report.snapshot.snapshot_id} in "
        f"{report.restore_seconds:.1f}s, then {len(report.replayed)} day(s) replayed"
    )
    if unreadable:
        fail(
            f"the erasure log could not be read ({unreadable}): the restored tables may hold erased users' rows "
            "again; check every erasure request by hand and run `tiklive erase ... --execute` again for each"
        )
    damaged = report.replay is not None and (report.replay.corrupt or report.replay.refused)
    return EXIT_ERROR if damaged or report.erasures_after or unreadable else EXIT_OK


def _drill(args: argparse.Namespace) -> int:
    from tiklive_assets.recovery.drills import run_drill

    names = DRILLS if args.scenario == "all" else (args.scenario,)
    results = [run_drill(name, keep=args.keep, say=print) for name in names]
    if len(results) > 1:
        print("")
        for result in results:
            print(f"{result.name:<16} {'PASS' if result.passed else 'FAIL'}  {result.headline}")
    return EXIT_OK if all(r.passed for r in results) else EXIT_ERROR


__all__ = ["DRILLS", "EXIT_USAGE", "add_parser", "run"]

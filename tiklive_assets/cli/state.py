"""``tiklive state``: snapshot the state database to the object store, list and restore snapshots, or rebuild the
state from the archive alone.

The state database holds what capture has done (the queue, cursors, dead letters, the credit ledger, cached user ids,
legal holds, Research API windows); the hourly ``state_snapshot`` job copies it under ``state-snapshots/`` in the
archive's store. When it is lost: ``restore`` the newest snapshot, then ``rebuild`` to add what was archived since;
with no snapshot at all, ``rebuild`` alone. Either way the next ``tiklive run`` pays for no video already archived.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta

from tiklive_assets.cli import common

SUMMARY = "snapshot, list, restore or rebuild the state database (queue, cursors, ledger, caches)"
DESCRIPTION = (
    "The state database records what capture has done. `snapshot` copies every table to the object store under "
    "state-snapshots/<UTC time>/ (one gzip JSON Lines file per table, then a manifest), and prunes snapshots older "
    "than 30 days (never the newest); the hourly state_snapshot job does the same. `list` shows them. `restore` "
    "replaces the state database with the newest complete snapshot at or before --at (it refuses a database that "
    "holds rows unless --force). `rebuild` derives from the archive alone which videos are downloaded, resolved or "
    "dead, and the cached user ids, and merges that into the database: after a restore it adds what was archived "
    "since; with no snapshot it is the whole recovery. Either way the next run pays for no video already archived."
)
EXAMPLES = (
    "tiklive state snapshot",
    "tiklive state list",
    "tiklive state restore                      # the newest snapshot, into an empty state database",
    "tiklive state restore --at 2026-11-24T06:00 --force",
    "tiklive state rebuild                      # then: tiklive run",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    state = common.add_command(sub, "state", SUMMARY, DESCRIPTION, EXAMPLES)
    actions = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    snapshot = actions.add_parser("snapshot", help="copy every state table to the object store now, then prune")
    snapshot.add_argument(
        "--keep-days", type=int, default=30, help="prune snapshots older than this many days (default 30)"
    )
    listing = actions.add_parser("list", help="list the snapshots in the object store, oldest first")
    restore = actions.add_parser(
        "restore", help="replace the state database with a snapshot (the newest, or the newest at or before --at)"
    )
    restore.add_argument(
        "--at",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="UTC time, e.g. 2026-11-24T06:00, or a day 2026-11-24 (read as its end, 23:59:59 UTC, as "
        "`tiklive dr restore-warehouse --at` reads it): the newest snapshot taken at or before it",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace the rows the state database holds now (stop capture runs first); its legal holds and erasure "
        "log are kept",
    )
    rebuild = actions.add_parser(
        "rebuild",
        help="derive downloaded, resolved and dead videos and the user-id cache from the archive alone; forward-only "
        "(a video the database knows only moves forward, never back). Stop capture runs first: it clears the lease "
        "of each video it moves forward",
    )
    rebuild.add_argument(
        "--from",
        dest="first_day",
        type=common.parse_day,
        default=None,
        metavar="DAY",
        help="the first archive day to read (default: TIKLIVE_FIRST_DAY, the first partition)",
    )
    common.add_home(snapshot, listing, restore, rebuild)


def parse_time(text: str) -> datetime:
    """An argparse ``type``: an ISO 8601 time (UTC unless it says otherwise), a day (its end, 23:59:59 UTC, so its
    snapshots count too), or a snapshot's name."""
    from tiklive_assets.state.snapshots import parse_snapshot_name

    named = parse_snapshot_name(text)
    if named is not None:
        return named
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use YYYY-MM-DDTHH:MM (UTC), e.g. 2026-11-24T06:00, or a day YYYY-MM-DD"
        ) from None
    if len(text.strip()) == 10:  # a bare day: its end, as `tiklive dr restore-warehouse --at` reads it
        value = value.replace(hour=23, minute=59, second=59)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _say(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> int:
    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.state import StateError
    from tiklive_assets.storage.errors import StoreError

    root = common.use_location(args)
    resources = default_resources()
    try:
        store = resources["archive_store"].open()
        if args.state_command == "list":
            return _list(store)
        with resources["data_root"].state() as state:
            if args.state_command == "snapshot":
                return _snapshot(state, store, root.home / "tmp", timedelta(days=args.keep_days))
            if args.state_command == "restore":
                return _restore(state, store, root.home / "tmp", args.at, args.force)
            return _rebuild(state, store, args.first_day)
    except (StateError, StoreError) as exc:
        return common.fail(str(exc), common.EXIT_ERROR)


def _held(state):
    from tiklive_assets.compliance.legal_hold import LegalHolds

    holds = LegalHolds(state).snapshot()
    return lambda key: holds.covers(key) is not None


def _snapshot(state, store, scratch, keep: timedelta) -> int:
    from tiklive_assets.state.snapshots import prune_snapshots, take_snapshot

    print(f"snapshotting the state database ({state.describe()}) to {store.describe()}", flush=True)
    manifest = take_snapshot(state, store, scratch=scratch, progress=_say)
    rows = sum(t["rows"] for t in manifest["tables"].values())
    print(f"snapshot {manifest['name']}: {rows:,} row(s) in {len(manifest['tables'])} tables")
    report = prune_snapshots(store, keep=keep, held=_held(state), progress=_say)
    print(
        f"pruned {len(report.deleted)} snapshot(s) older than {keep.days} days; {report.kept} kept"
        + (f" ({len(report.held)} under a legal hold)" if report.held else "")
    )
    for problem in report.failed:
        print(f"  not pruned: {problem}")
    return common.EXIT_OK


def _list(store) -> int:
    from tiklive_assets.state.snapshots import list_snapshots

    snaps = list_snapshots(store)
    if not snaps:
        print(f"no state snapshots in {store.describe()} yet: `tiklive state snapshot` takes one")
        return common.EXIT_OK
    now = datetime.now(UTC)
    for snap in snaps:
        age = now - snap.taken_at
        shown = f"{age.days} d {age.seconds // 3600} h ago" if age.days else f"{age.seconds // 60} min ago"
        status = "complete" if snap.complete else "INCOMPLETE (interrupted: never restored)"
        print(f"{snap.name}  {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC  {shown:>14}  {snap.size:>12,} bytes  {status}")
    complete = sum(s.complete for s in snaps)
    print(f"{len(snaps)} snapshot(s), {complete} complete, in {store.describe()}")
    return common.EXIT_OK


def _restore(state, store, scratch, at: datetime | None, force: bool) -> int:
    from tiklive_assets.state.snapshots import choose_snapshot, restore_snapshot

    snap = choose_snapshot(store, at)
    print(f"restoring snapshot {snap.name} ({snap.taken_at:%Y-%m-%d %H:%M:%S} UTC) into {state.describe()}")
    report = restore_snapshot(state, store, snap, force=force, scratch=scratch, progress=_say)
    replaced = sum(report.replaced.values())
    print(
        f"restored {sum(report.rows.values()):,} row(s) in {len(report.rows)} tables from {snap.name}"
        + (f", replacing {replaced:,}" if replaced else "")
        + (f"; kept {report.kept:,} legal-hold and erasure-log row(s) the database held" if report.kept else "")
    )
    print("next: `tiklive state rebuild` adds what the archive gained since the snapshot, then `tiklive run`")
    return common.EXIT_OK


def _rebuild(state, store, first_day: date | None) -> int:
    from tiklive_assets.defs.partitions import first_day as partitions_first_day
    from tiklive_assets.state.rebuild import rebuild_from_archive

    start = first_day or date.fromisoformat(partitions_first_day())
    print(f"rebuilding the state database ({state.describe()}) from the archive since {start}", flush=True)
    rebuild_from_archive(state, store, first_day=start, progress=_say)
    print("next: `tiklive run`: videos already archived are not resolved again")
    return common.EXIT_OK

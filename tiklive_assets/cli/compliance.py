"""`tiklive erase`, `tiklive hold` and `tiklive retention`: GDPR erasure, legal holds and tiered retention."""

from __future__ import annotations

import argparse
import contextlib
import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from tiklive_assets import settings
from tiklive_assets.cli.common import EXIT_OK, EXIT_USAGE, add_command, add_home, fail, use_location

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB
    from tiklive_assets.storage import ObjectStore

EXIT_REFUSED = 3  # a legal hold covers what the erasure would touch

EPILOG = """environment:
  TIKLIVE_HOME       data root (default ./data): archive/, state.sqlite (legal holds, the erasure log), warehouse.duckdb
  TIKLIVE_ARCHIVE_BUCKET  the archive's S3 bucket (default: local disk under TIKLIVE_HOME/archive)
  TIKLIVE_STATE_URL  state database (default TIKLIVE_HOME/state.sqlite; postgresql://user@host/db)
  TIKLIVE_WAREHOUSE_URL  warehouse backend (default TIKLIVE_HOME/warehouse.duckdb; postgresql://user@host/db)
  TIKLIVE_OPERATOR   who places holds and runs erasures when --who / --operator is not given (default $USER)
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    erase = add_command(
        sub,
        "erase",
        "GDPR Art. 17: find (dry run) or remove every archived object and warehouse row of one TikTok user",
        "Locate every raw object, video, cover and warehouse row that references the user, delete what is "
        "about them and redact them out of shared pages (listings, follower pages, comments). Objects are found "
        "through the archive index exported beside the archive (index/user-ids/), so only the objects it names are "
        "read, with or without the warehouse; a day without an index part yet is scanned whole, and the output "
        "says which. Compacted days are erased too: the bundle holding the user's objects is rewritten without them "
        "(every other object keeps its bytes). A dry run (the default) "
        "prints the plan and changes nothing; --execute carries it out, re-exports the affected days' Parquet and "
        "marts, and writes an erasure log entry without the personal data. A legal hold covering any affected "
        "object refuses the erasure (exit status 3). Remove the user from tiklive.yaml first, or the next capture "
        "brings them back.",
        examples=["tiklive erase --handle bob", "tiklive erase --user-id 107955 --execute --operator dpo@example.com"],
        epilog=EPILOG,
    )
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", help="the TikTok user id")
    who.add_argument("--handle", help="the TikTok handle (resolved to the id through the warehouse)")
    erase.add_argument("--execute", action="store_true", help="carry the erasure out (default: dry run)")
    erase.add_argument(
        "--operator", default=None, help="who asked for it, for the erasure log (default: $TIKLIVE_OPERATOR or $USER)"
    )
    erase.add_argument("--no-warehouse", action="store_true", help="only the archive (the warehouse is elsewhere)")
    erase.add_argument(
        "--verify-scan",
        action="store_true",
        help="also scan the whole archive as an audit of the index: any object the scan finds and the index "
        "missed is reported (and erased too)",
    )
    erase.add_argument("--full-scan", action="store_true", help="ignore the archive index and scan the whole archive")
    erase.add_argument("--json", action="store_true", help="print the report as JSON")

    hold_sub = _with_actions(
        sub,
        "hold",
        "legal holds: preserve a prefix, a tag or a user's objects against retention and erasure",
        "A legal hold suspends retention and erasure for every key under a prefix (for example "
        "tiklive-raw/2026/05/ or videos/dt=2026-05-29/), every object carrying a tag (--tag legal-hold=case-42: an "
        "S3 object tag, or a key-set tag recorded in the state database), or every object about or mentioning a "
        "user (--user-id). Holds live in the state database. On a bucket with S3 Object Lock the hold also sets the "
        "store's own legal hold on every held object, so the bucket itself refuses to delete them; elsewhere the "
        "jobs enforce it, and `list` says which applies. A held object that compaction packed into a bundle holds "
        "(and locks) that bundle. --user-id finds the user's objects through the archive index (days without an "
        "index part are scanned). `refresh` adds the objects archived since a hold was placed, and locks bundles "
        "written since.",
        [
            'tiklive hold place tiklive-raw/2026/05/ --reason "case 42"',
            'tiklive hold place --tag legal-hold=case-42 --reason "case 42"',
            'tiklive hold place --user-id 107955 --reason "subpoena 7"',
            "tiklive hold list",
        ],
    )
    place = hold_sub.add_parser("place", help="place a hold on a prefix, a tag or a user")
    release = hold_sub.add_parser("release", help="release the hold on a prefix, a tag or a user")
    for parser_ in (place, release):
        parser_.add_argument("prefix", nargs="?", default=None, help="the key prefix held")
        parser_.add_argument("--tag", default=None, help="the objects carrying this tag (<key>=<value>)")
        parser_.add_argument("--user-id", default=None, help="the objects about or mentioning this TikTok user")
    place.add_argument("--handle", action="append", default=[], help="a handle of --user-id (repeatable)")
    place.add_argument("--within", default="", help="with --tag: only objects under this prefix")
    place.add_argument("--reason", required=True, help="why (case number, regulator inquiry)")
    place.add_argument("--who", default=None, help="who placed it (default: $TIKLIVE_OPERATOR or $USER)")
    listing = hold_sub.add_parser("list", help="list holds and who enforces them")
    refresh = hold_sub.add_parser("refresh", help="hold (and lock) the objects archived since each hold was placed")

    ret_sub = _with_actions(
        sub,
        "retention",
        "tiered retention: S3 lifecycle rules (hot/warm/cold) or deleting expired days where there are none",
        "Hot raw archive 30 days, warm 12 months, cold thereafter, with an optional deletion "
        "age. Only bundles (tiklive-bundles/, what compaction makes of a day past the hot period) are tiered: loose "
        "raw objects stay in the standard class, since moving tiny objects costs more than it saves (cold classes "
        "bill each object as at least 128 KiB and each transition as a request). `lifecycle` prints (or --apply "
        "puts) the S3 Lifecycle configuration, skipping held prefixes; `apply` deletes expired raw days, loose and "
        "bundled, from stores without lifecycle rules (local disk), skipping held keys and bundles holding one, and "
        "the same days' warehouse rows, so the policy is the same in the archive and the warehouse.",
        ["tiklive retention lifecycle", "tiklive retention apply --delete-after 730 --dry-run"],
    )
    lifecycle = ret_sub.add_parser("lifecycle", help="print the S3 lifecycle rules (or --apply them)")
    lifecycle.add_argument("--apply", action="store_true", help="put them on the archive bucket(s)")
    apply = ret_sub.add_parser("apply", help="delete raw days past --delete-after (local stores)")
    apply.add_argument("--today", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today UTC)")
    apply.add_argument("--dry-run", action="store_true", help="report what would go, change nothing")
    for parser_ in (lifecycle, apply):
        parser_.add_argument("--warm-after", type=int, default=30, help="days before the warm tier (default 30)")
        parser_.add_argument("--cold-after", type=int, default=365, help="days before the cold tier (default 365)")
        parser_.add_argument("--delete-after", type=int, default=None, help="days before deletion (default: never)")
    add_home(erase, place, release, listing, refresh, lifecycle, apply)


def _with_actions(
    sub: argparse._SubParsersAction, name: str, summary: str, description: str, examples: list[str]
) -> argparse._SubParsersAction:
    """A command whose first argument is one of its ACTIONs, found in ``args.<name>_command``."""
    command = add_command(sub, name, summary, description, examples=examples, epilog=EPILOG)
    return command.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def run(args: argparse.Namespace) -> int:
    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.state import StateDB

    root = use_location(args)
    store = default_resources()["archive_store"].open()
    with StateDB.from_url(root.state_url) as state:
        if args.command == "hold":
            return _hold(args, root, store, state)
        if args.command == "retention":
            return _retention(args, root, store, state)
        return _erase(args, root, store, state)


def _hold(args: argparse.Namespace, root: settings.DataRoot, store: ObjectStore, state: StateDB) -> int:
    from tiklive_assets.compliance import LegalHolds

    holds = LegalHolds(state)
    if args.hold_command in ("list", "refresh"):
        for hold in holds.list() if args.hold_command == "list" else holds.refresh(store):
            print(hold.describe())
        for status in store.lock_status():
            print(f"store {status.where}: {status.detail}")
        return EXIT_OK
    given = [name for name in ("prefix", "tag", "user_id") if getattr(args, name) is not None]
    if len(given) != 1:
        return fail("give exactly one of a prefix, --tag or --user-id", EXIT_USAGE)
    try:
        if args.hold_command == "release":
            if args.tag is not None:
                released, what = holds.release_tag(args.tag, store=store), args.tag
            elif args.user_id is not None:
                released, what = holds.release_user(args.user_id, store=store), f"user {args.user_id}"
            else:
                released, what = holds.release(args.prefix, store=store), args.prefix
            print(f"hold on {what} released" if released else f"no hold on {what}")
            return EXIT_OK
        if args.tag is not None:
            hold = holds.place_tag(args.tag, args.reason, store=store, within=args.within, who=args.who)
        elif args.user_id is not None:
            from tiklive_assets.warehouse import default_url, open_warehouse

            with open_warehouse(default_url(root.home)) as warehouse:
                hold = holds.place_user(
                    args.user_id, args.reason, store=store, handles=args.handle, warehouse=warehouse, who=args.who
                )
        else:
            hold = holds.place(args.prefix, args.reason, who=args.who, store=store)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    print(f"hold placed: {hold.describe()}")
    return EXIT_OK


def _retention(args: argparse.Namespace, root: settings.DataRoot, store: ObjectStore, state: StateDB) -> int:
    from tiklive_assets.compliance import LegalHolds, RetentionPolicy, apply_lifecycle, apply_retention, lifecycle_rules
    from tiklive_assets.warehouse import default_url, open_warehouse

    try:
        policy = RetentionPolicy(
            warm_after_days=args.warm_after, cold_after_days=args.cold_after, delete_after_days=args.delete_after
        )
    except ValueError as exc:
        return fail(f"{exc} (set --warm-after, --cold-after and --delete-after in that order)", EXIT_USAGE)
    holds = LegalHolds(state)
    if args.retention_command == "lifecycle":
        if args.apply:
            applied = apply_lifecycle(store, policy, holds)
            print(f"lifecycle rules put on {len(applied)} bucket(s)")
        else:
            print(json.dumps(lifecycle_rules(policy, holds), indent=2, default=str))
        return EXIT_OK
    today = args.today or datetime.now(UTC).date()
    with open_warehouse(default_url(root.home)) as warehouse:
        report = apply_retention(store, policy, today, holds, warehouse=warehouse, dry_run=args.dry_run)
    print(
        f"retention ({'dry run' if report.dry_run else 'applied'}), cutoff {report.cutoff}: "
        f"{report.deleted_objects} objects ({report.deleted_bytes / 1e6:.1f} MB) in {len(report.deleted_days)} "
        f"days; {report.held_objects} objects kept by legal holds"
    )
    return EXIT_OK


def _erase(args: argparse.Namespace, root: settings.DataRoot, store: ObjectStore, state: StateDB) -> int:
    from tiklive_assets.compliance import LegalHoldError, LegalHolds, erase_user
    from tiklive_assets.warehouse import default_url, open_warehouse

    with contextlib.ExitStack() as stack:
        warehouse = None if args.no_warehouse else stack.enter_context(open_warehouse(default_url(root.home)))
        try:
            report = erase_user(
                store,
                warehouse,
                args.user_id,
                args.handle,
                dry_run=not args.execute,
                holds=LegalHolds(state),
                state=state,
                operator=args.operator,
                use_index=not args.full_scan,
                verify_scan=args.verify_scan,
            )
        except LegalHoldError as exc:
            return fail(f"refused: {exc}", EXIT_REFUSED)
        if args.execute and report.affected_days and warehouse is not None:
            from tiklive_assets.warehouse import build_marts, load_days
            from tiklive_assets.warehouse.marts import default_marts_path

            # Parquet and the archive index without the user
            load_days(store, warehouse, report.affected_days, exports=root.exports, index_store=store)
            if root.exports.exists():
                build_marts(root.exports, default_marts_path(root.home))
    print(json.dumps(report.__dict__, default=str, indent=2) if args.json else report.summary())
    if report.index_missed and not args.json:
        print(f"the archive index missed {len(report.index_missed)} object(s); replay their days to re-index them:")
        for key in report.index_missed[:20]:
            print(f"  {key}")
    return EXIT_OK

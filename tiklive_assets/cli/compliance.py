"""`tiklive erase`, `tiklive hold` and `tiklive retention`: GDPR erasure, legal holds and tiered retention."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from tiklive_assets import settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    erase = sub.add_parser(
        "erase",
        help="GDPR Art. 17: find (dry run) or remove every archived object and warehouse row of one TikTok user",
        description="Locate every raw object, video, cover and warehouse row that references the user, delete what is "
        "about them and redact them out of shared pages (listings, follower pages, comments). A dry run (the default) "
        "prints the plan and changes nothing; --execute carries it out, re-exports the affected days' Parquet and "
        "marts, and writes an erasure log entry without the personal data. A legal hold covering any affected "
        "object refuses the erasure. Remove the user from tiklive.yaml first, or the next capture brings them back.",
    )
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", help="the TikTok user id")
    who.add_argument("--handle", help="the TikTok handle (resolved to the id through the warehouse)")
    erase.add_argument("--execute", action="store_true", help="carry the erasure out (default: dry run)")
    erase.add_argument("--operator", default=None, help="who asked for it, for the erasure log (default: $USER)")
    erase.add_argument("--no-warehouse", action="store_true", help="only the archive (the warehouse is elsewhere)")
    erase.add_argument("--json", action="store_true", help="print the report as JSON")
    erase.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")

    hold = sub.add_parser(
        "hold",
        help="legal holds: preserve a prefix of the archive against retention and erasure",
        description="A legal hold suspends retention and erasure for every key under a prefix (for example "
        "tiklive-raw/2026/05/ or videos/dt=2026-05-29/). Holds live in the state database.",
    )
    hold_sub = hold.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    place = hold_sub.add_parser("place", help="place a hold on a prefix")
    place.add_argument("prefix")
    place.add_argument("--reason", required=True, help="why (case number, regulator inquiry)")
    place.add_argument("--who", default=None, help="who placed it (default: $USER)")
    release = hold_sub.add_parser("release", help="release the hold on a prefix")
    release.add_argument("prefix")
    hold_sub.add_parser("list", help="list holds")
    for parser_ in (place, release, hold_sub.choices["list"]):
        parser_.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")

    retention = sub.add_parser(
        "retention",
        help="tiered retention: S3 lifecycle rules (hot/warm/cold) or deleting expired days where there are none",
        description="Hot raw archive 30 days, warm 12 months, cold thereafter, with an optional deletion "
        "age. `lifecycle` prints (or --apply puts) the S3 Lifecycle configuration, skipping held prefixes; `apply` "
        "deletes expired raw days from stores without lifecycle rules (local disk), skipping held prefixes, and the "
        "same days' warehouse rows, so the policy is the same in the archive and the warehouse.",
    )
    ret_sub = retention.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    lifecycle = ret_sub.add_parser("lifecycle", help="print the S3 lifecycle rules (or --apply them)")
    lifecycle.add_argument("--apply", action="store_true", help="put them on the archive bucket(s)")
    apply = ret_sub.add_parser("apply", help="delete raw days past --delete-after (local stores)")
    apply.add_argument("--today", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today UTC)")
    apply.add_argument("--dry-run", action="store_true", help="report what would go, change nothing")
    for parser_ in (lifecycle, apply):
        parser_.add_argument("--warm-after", type=int, default=30, help="days before the warm tier (default 30)")
        parser_.add_argument("--cold-after", type=int, default=365, help="days before the cold tier (default 365)")
        parser_.add_argument("--delete-after", type=int, default=None, help="days before deletion (default: never)")
        parser_.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")


def _open(args: argparse.Namespace):
    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.state import StateDB

    if getattr(args, "home", None):
        os.environ[settings.HOME] = str(args.home.absolute())
    root = settings.DataRoot.from_env()
    return root, default_resources()["archive_store"].open(), StateDB.from_url(root.state_url)


def run(args: argparse.Namespace) -> int:
    from tiklive_assets.compliance import (
        LegalHoldError,
        LegalHolds,
        RetentionPolicy,
        apply_lifecycle,
        apply_retention,
        erase_user,
        lifecycle_rules,
    )
    from tiklive_assets.warehouse import default_url, open_warehouse

    root, store, state = _open(args)
    operator = os.environ.get("USER", "unknown")
    try:
        if args.command == "hold":
            holds = LegalHolds(state)
            if args.hold_command == "place":
                hold = holds.place(args.prefix, args.reason, who=args.who or operator)
                print(f"hold placed on {hold.prefix}: {hold.reason} ({hold.placed_by}, {hold.placed_at})")
            elif args.hold_command == "release":
                print(f"hold on {args.prefix} released" if holds.release(args.prefix) else f"no hold on {args.prefix}")
            else:
                for hold in holds.list():
                    print(f"{hold.prefix:<40} {hold.reason} ({hold.placed_by}, {hold.placed_at})")
            return 0
        if args.command == "retention":
            try:
                policy = RetentionPolicy(
                    warm_after_days=args.warm_after,
                    cold_after_days=args.cold_after,
                    delete_after_days=args.delete_after,
                )
            except ValueError as exc:
                print(f"{exc} (set --warm-after, --cold-after and --delete-after in that order)", file=sys.stderr)
                return 2
            holds = LegalHolds(state)
            if args.retention_command == "lifecycle":
                if args.apply:
                    applied = apply_lifecycle(store, policy, holds)
                    print(f"lifecycle rules put on {len(applied)} bucket(s)")
                else:
                    print(json.dumps(lifecycle_rules(policy, holds), indent=2, default=str))
                return 0
            today = args.today or datetime.now(UTC).date()
            with open_warehouse(default_url(root.home)) as warehouse:
                report = apply_retention(store, policy, today, holds, warehouse=warehouse, dry_run=args.dry_run)
            print(
                f"retention ({'dry run' if report.dry_run else 'applied'}), cutoff {report.cutoff}: "
                f"{report.deleted_objects} objects ({report.deleted_bytes / 1e6:.1f} MB) in {len(report.deleted_days)} "
                f"days; {report.held_objects} objects kept by legal holds"
            )
            return 0
        # erase
        warehouse_cm = None if args.no_warehouse else open_warehouse(default_url(root.home))
        warehouse = warehouse_cm.__enter__() if warehouse_cm else None
        try:
            report = erase_user(
                store,
                warehouse,
                args.user_id,
                args.handle,
                dry_run=not args.execute,
                holds=LegalHolds(state),
                state=state,
                operator=args.operator or operator,
            )
            if args.execute and report.affected_days and warehouse is not None:
                from tiklive_assets.warehouse import build_marts, load_days
                from tiklive_assets.warehouse.marts import default_marts_path

                load_days(store, warehouse, report.affected_days, exports=root.exports)  # Parquet without the user
                if root.exports.exists():
                    build_marts(root.exports, default_marts_path(root.home))
        except LegalHoldError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 3
        finally:
            if warehouse_cm:
                warehouse_cm.__exit__(None, None, None)
        print(json.dumps(report.__dict__, default=str, indent=2) if args.json else report.summary())
        return 0
    finally:
        state.close()

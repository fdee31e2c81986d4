"""``tiklive mirror repair`` / ``tiklive mirror status``: copy keys the secondary store missed, from the primary.

Every write goes to the primary and then the secondary; a key the secondary did not take is journaled in the
primary under ``_mirror/unreplicated/`` (the primary is the truth and just took it). Repair copies each journaled key
to the secondary and removes its marker; ``--scan PREFIX`` also compares the two listings under a prefix, for
keys whose marker could not be written.
"""

from __future__ import annotations

import argparse
import sys

from tiklive_assets.cli.common import add_home, use_location

EXIT_OK, EXIT_LEFT, EXIT_SETUP = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction, epilog: str = "") -> None:
    mirror = sub.add_parser(
        "mirror",
        help="show or repair keys the secondary store (TIKLIVE_ARCHIVE_SECONDARY_BUCKET) missed",
        description="Every archive write goes to the primary store, then to the secondary. A key the secondary "
        "did not take (down, full, refusing) stays safe in the primary and is journaled there under "
        "_mirror/unreplicated/. `repair` copies each journaled key from the primary to the secondary and removes "
        "its marker; the hourly mirror_repair job does the same. Exit status: 0 every key is replicated, 1 some "
        "keys are still missing from the secondary (run again once it is back), 2 no secondary is configured or "
        "the primary failed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  tiklive mirror status\n  tiklive mirror repair\n"
        "  tiklive mirror repair --scan tiklive-raw/2026/05/29/\n\n" + epilog,
    )
    actions = mirror.add_subparsers(dest="mirror_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="list the journaled keys and how long each has been missing")
    repair = actions.add_parser("repair", help="copy journaled keys to the secondary, then drop their markers")
    repair.add_argument(
        "--scan",
        metavar="PREFIX",
        default=None,
        help="also compare the listings under PREFIX and copy what the secondary lacks "
        "(one HEAD per primary key: use a day's prefix, not the whole archive)",
    )
    repair.add_argument("--quiet", action="store_true", help="no line per key, only the summary")
    add_home(status, repair)


def run(args: argparse.Namespace, out=None, err=None) -> int:
    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.storage import MirroredStore, StoreError
    from tiklive_assets.storage.mirror import oldest_unreplicated, repair

    out, err = out or sys.stdout, err or sys.stderr
    root = use_location(args)
    store = default_resources()["archive_store"].open()
    if not isinstance(store, MirroredStore):
        print(
            f"no secondary store is configured ({store.describe()}): set TIKLIVE_ARCHIVE_SECONDARY_BUCKET "
            "(and TIKLIVE_SECONDARY_S3_ENDPOINT_URL) to mirror the archive",
            file=err,
        )
        return EXIT_SETUP
    try:
        if args.mirror_command == "status":
            count, age, entries = oldest_unreplicated(store)
            if not count:
                print(f"every key is replicated ({store.describe()})", file=out)
                return EXIT_OK
            print(f"{count} key(s) missing from {store.secondary.describe()}, the oldest for {age}:", file=out)
            for entry in entries[:50]:
                print(f"  {entry.since:%Y-%m-%d %H:%M:%S}  {entry.key}", file=out)
            return EXIT_LEFT

        def progress(done: int, total: int, key: str, outcome: str) -> None:
            if not args.quiet:
                print(f"[{done}/{total}] {outcome}: {key}", file=out, flush=True)

        scratch = root.home / "tmp"
        report = repair(store, scratch=scratch, scan_prefix=args.scan, progress=progress)
    except StoreError as exc:
        print(f"the primary store failed: {exc}", file=err)
        return EXIT_SETUP
    print(
        f"mirror repair: {report.journaled} key(s) to replicate, {report.copied} copied, {report.already_there} "
        f"already there, {report.gone} gone from the primary, {len(report.diverged)} diverged, "
        f"{len(report.failed)} still missing" + (f" ({report.scanned} scanned under {args.scan})" if args.scan else ""),
        file=out,
    )
    for problem in report.diverged[:10]:
        print(f"  diverged: {problem}", file=err)
    for problem in report.failed[:10]:
        print(f"  still missing: {problem}", file=err)
    if report.failed:
        print(
            f"{len(report.failed)} key(s) are still missing from {store.secondary.describe()}; they stay journaled: "
            "run `tiklive mirror repair` again once the secondary is back (check TIKLIVE_ARCHIVE_SECONDARY_BUCKET "
            "and TIKLIVE_SECONDARY_S3_ENDPOINT_URL)",
            file=err,
        )
        return EXIT_LEFT
    return EXIT_OK

"""``tiklive replay``: rebuild the warehouse (or a scratch database) for a range of days from the raw archive alone.

Each day is parsed from its archived responses and loaded in one transaction that replaces what the day held, so
replaying twice changes nothing and a lost warehouse comes back identical. Exit status 0; 1 when archived objects
are damaged (not gzip); 2 for a usage problem or a warehouse that cannot be written.
"""

from __future__ import annotations

import argparse
import sys

from tiklive_assets.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    add_command,
    add_home,
    fail,
    parse_day,
    range_problem,
    use_location,
)

SUMMARY = "rebuild the warehouse (or a scratch database) for a range of days from the raw archive alone"
DESCRIPTION = (
    "Parse every archived response of each day from --from to --to (inclusive) and load it into the warehouse, "
    "one transaction per day, replacing what each day held: replaying a day twice changes nothing, and a deleted "
    "warehouse comes back identical (the 'database lost' recovery). Reads only the raw archive "
    "($TIKLIVE_HOME/archive, or the bucket named by $TIKLIVE_ARCHIVE_BUCKET), never the API."
)
EXAMPLES = (
    "tiklive replay --from 2026-05-01 --to 2026-05-29",
    "tiklive replay --from 2026-05-29 --to 2026-05-29 --into /tmp/scratch.duckdb",
    "tiklive replay --from 2026-05-01 --to 2026-05-29 --into postgresql://postgres@127.0.0.1/restore_test",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    replay = add_command(sub, "replay", SUMMARY, DESCRIPTION, EXAMPLES)
    for flag, dest, what in (
        ("--from", "start", "first archive day to replay"),
        ("--to", "end", "last archive day to replay (inclusive)"),
    ):
        replay.add_argument(flag, dest=dest, type=parse_day, required=True, metavar="YYYY-MM-DD", help=what)
    replay.add_argument(
        "--into",
        default=None,
        metavar="PATH_OR_URL",
        help="target: a DuckDB file path or postgresql:// URL (default: $TIKLIVE_WAREHOUSE_URL, "
        "else $TIKLIVE_HOME/warehouse.duckdb)",
    )
    replay.add_argument(
        "--exports",
        action="store_true",
        help="also rewrite the Parquet exports of each replayed day under $TIKLIVE_HOME/exports",
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="replace a day even when some of its archived objects are damaged (not gzip); without "
        "it such a day keeps the rows it has, since a replay must never silently drop rows",
    )
    replay.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="parse a local archive's days over N processes (default 1; try 2 on a 2-core host)",
    )
    add_home(replay)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.warehouse import WarehouseError, default_url, describe_url, replay

    problem = range_problem(args.start, args.end)
    if problem:
        return fail(problem)
    root = use_location(args)
    store = default_resources()["archive_store"].open()  # the same store the pipeline writes (local or S3)
    target = args.into or default_url(root.home)
    days = (args.end - args.start).days + 1
    print(f"replaying {days} day(s) {args.start}..{args.end} from {store.describe()} into {describe_url(target)}")
    bars: list[tqdm] = []

    def progress_factory(total: int):
        bars.append(tqdm(total=total, desc="replay", unit="obj", unit_scale=True, file=sys.stderr))
        return bars[0].update

    try:
        report = replay(
            store,
            target,
            args.start,
            args.end,
            exports=root.exports if args.exports else None,
            processes=args.processes,
            progress_factory=progress_factory,
            force=args.force,
        )
    except WarehouseError as exc:
        return fail(exc)
    finally:
        for bar in bars:
            bar.close()
    if next(iter(store.list("research-raw/")), None) is not None:  # the Research API's tables, from its archive
        from tiklive_assets.research.warehouse import load_research_warehouse

        research = load_research_warehouse(store, target)
        print(f"research tables rebuilt from research-raw/: {research}")
    _print_report(report)
    return EXIT_ERROR if report.corrupt else EXIT_OK


def _print_report(report) -> None:
    rate = report.objects / report.seconds if report.seconds else 0.0
    print(f"replayed {report.objects} objects in {report.seconds:.1f}s ({rate:,.0f} objects/s):")
    for name, rows in report.rows.items():
        print(f"  {name:<22} {rows:>10,} rows")
    if report.items_without_id or report.values_nulled:
        fields = ", ".join(f"{name} ({n})" for name, n in report.values_nulled.most_common(5))
        print(
            f"{report.items_without_id} listed item(s) without any id skipped; "
            f"{sum(report.values_nulled.values())} value(s) nulled (not readable unambiguously)"
            + (f": {fields}" if fields else "")
        )
    if report.errors:
        _examples(
            f"{len(report.errors)} object(s) quarantined: no parser could read them, the rest of each day loaded. "
            "They are listed in the `quarantine` table; replay the day again after a parser fix. For example:",
            report.errors,
        )
    for day, keys in report.refused.items():
        fail(
            f"{day} left as it was: {len(keys)} of its archived object(s) are damaged (not gzip), and replacing "
            "the day would drop the rows they fed. Restore them from the secondary store or a backup and replay "
            "again, or pass --force to replace the day anyway."
        )
    if report.corrupt:
        _examples(
            f"{len(report.corrupt)} archived object(s) are damaged (not gzip): restore them from the secondary "
            "store or a backup, then replay. For example:",
            report.corrupt,
        )


def _examples(headline: str, problems: list) -> None:
    """``headline`` on stderr, then the first five problems, indented."""
    print(headline, file=sys.stderr)
    for problem in problems[:5]:
        print(f"  {problem}", file=sys.stderr)

"""The ``tiklive`` command: run the daily pipeline, start the sandbox API, check a key.

Run ``tiklive --help`` or ``tiklive <command> --help`` for every option. Each command lives in its own module of
this package, with ``add_parser(subparsers)`` and ``run(args) -> int``; :data:`COMMANDS` names them, and a
command's module imports what it needs when it runs, so ``tiklive --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

from tiklive_assets import settings
from tiklive_assets.cli import common

# command -> the module of this package that carries it out (``run`` is carried out here, by cmd_run)
COMMANDS = {
    "sandbox": "sandbox",
    "check-key": "check_key",
    "replay": "replay",
    "cursors": "cursors",
    "mirror": "mirror",
    "sql": "sql",
    "status": "status",
    "ui": "ui",
    "research": "research",
    "erase": "compliance",
    "hold": "compliance",
    "retention": "compliance",
    "state": "state",
    "dr": "dr",
    "cost": "cost",
    "compact": "compact",
}


def build_parser() -> argparse.ArgumentParser:
    from tiklive_assets.cli import (
        check_key,
        compact,
        compliance,
        cost,
        cursors,
        dr,
        mirror,
        replay,
        research,
        sandbox,
        sql,
        state,
        status,
        ui,
    )

    parser = argparse.ArgumentParser(
        prog="tiklive",
        description="tiklive-assets: capture TikTok data into a durable raw archive and a queryable warehouse.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=common.EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(sub)
    sandbox.add_parser(sub)
    replay.add_parser(sub)
    check_key.add_parser(sub)
    cursors.add_parser(sub)
    research.add_parser(sub)
    compliance.add_parsers(sub)
    status.add_parser(sub)
    mirror.add_parser(sub, common.EPILOG)
    sql.add_parser(sub)
    ui.add_parser(sub)
    state.add_parser(sub)
    dr.add_parser(sub)
    cost.add_parser(sub)
    compact.add_parser(sub)
    return parser


RUN_SUMMARY = "materialize one day's pipeline in-process and print a summary"
RUN_DESCRIPTION = (
    "Materialize the day's pipeline (the assets the daily schedule runs) in-process, with progress, then print "
    "what was captured, the credits spent, dead letters by reason and where the files are."
)


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    run = common.add_command(sub, "run", RUN_SUMMARY, RUN_DESCRIPTION)
    run.add_argument("--date", type=common.parse_day, default=None, help="ingest day YYYY-MM-DD (default: today, UTC)")
    run.add_argument(
        "--sandbox",
        action="store_true",
        help="start the bundled sandbox API in-process and capture from it (no key, no credits)",
    )
    run.add_argument(
        "--realism",
        action="store_true",
        help="with --sandbox: serve the payload variants real responses show (ids under video_id/id, string "
        "counters, bioLink objects, photo posts, upstream errors and truncated bodies inside HTTP 200)",
    )
    common.add_config(run)
    common.add_home(run)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common.setup_logging()
    _quiet_framework_warnings()
    with _rate_waits_shown():
        if args.command == "run":
            return cmd_run(args)
        return importlib.import_module(f"tiklive_assets.cli.{COMMANDS[args.command]}").run(args)


def _quiet_framework_warnings() -> None:
    """Silence the one framework warning a normal command prints, precisely (by message), and say why.

    Dagster marks the ``backfill_policy`` parameter of ``@asset``/``@multi_asset`` as beta and warns each time the
    definitions are imported. The warehouse and research assets need it: a backfill of many days runs as one run
    and one transaction per day, instead of one run per day. There is no stable API for it in the pinned Dagster,
    so the warning tells the user nothing they can act on; every other warning still shows.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `\w+` is currently in beta")


@contextmanager
def _rate_waits_shown():
    """Print the rate limiter's "waiting N s for the plan's rate window" lines while a command runs: a long step
    that waits for the plan's window would otherwise look hung. INFO on that logger only (everything else stays at
    WARNING), restored afterwards so that calling main() in-process (tests) leaves logging as it was."""
    waits = logging.getLogger("tiklive_assets.tikliveapi.ratelimit")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    level, propagate = waits.level, waits.propagate
    waits.addHandler(handler)
    waits.setLevel(logging.INFO)
    waits.propagate = False  # once, in our format: not again through the root handler
    try:
        yield
    finally:
        waits.removeHandler(handler)
        waits.setLevel(level)
        waits.propagate = propagate


def cmd_run(args: argparse.Namespace) -> int:
    from tiklive_assets.cli.run import run_day
    from tiklive_assets.cli.sandbox import start_in_process

    with ExitStack() as stack:
        common.use_location(args)
        if args.sandbox:
            base_url = start_in_process(stack, realism=args.realism)
            shapes = ", serving the payload variants real responses show" if args.realism else ""
            print(f"sandbox TikLiveAPI started at {base_url} (synthetic data, no credits billed{shapes})")
        elif args.realism:
            return common.fail(common.REALISM_NEEDS_SANDBOX)
        elif not settings.api_key():
            return common.fail(
                "TIKLIVE_API_KEY is not set: export your TikLiveAPI key, or add --sandbox to use the bundled "
                "sandbox API.",
                common.EXIT_USAGE,
            )
        day = args.date or datetime.now(UTC).date()
        return run_day(day, started=time.monotonic())
    return 0


if __name__ == "__main__":
    sys.exit(main())

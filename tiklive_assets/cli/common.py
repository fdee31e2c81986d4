"""What the ``tiklive`` commands share: the data-root and tracking-file options, dates, and how a command fails.

Each command module adds its options with these helpers and starts its ``run(args)`` with :func:`use_location`,
so ``--home`` and ``--config`` mean the same everywhere and reach whatever the command starts (they are set in
the environment through :mod:`tiklive_assets.settings`). A command reports a problem with :func:`fail`: one line
on stderr, no traceback, and its exit status (2 for a usage or configuration problem unless it says otherwise).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from tiklive_assets import settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

EPILOG = """environment:
  TIKLIVE_API_KEY    your TikLiveAPI key (X-Api-Key); never printed or logged
  TIKLIVE_BASE_URL   API host (default https://api.tikliveapi.com; point it at a sandbox to use one)
  TIKLIVE_HOME       data root (default ./data): archive/, state.sqlite, warehouse.duckdb, exports/, marts.duckdb
  TIKLIVE_WAREHOUSE_URL  warehouse backend (default TIKLIVE_HOME/warehouse.duckdb; postgresql://user@host/db)
  TIKLIVE_CONFIG     what to track (default tiklive.yaml)
  TIKLIVE_STATE_URL  state database: queue, cursors, credits, holds (default sqlite under TIKLIVE_HOME; postgresql://)
  TIKLIVE_ARCHIVE_BUCKET  the archive's S3-compatible bucket (default: local disk under TIKLIVE_HOME/archive);
                     state and warehouse snapshots are kept beside the archive
  TIKLIVE_ARCHIVE_SECONDARY_BUCKET  a second bucket every archive write (and snapshot) is mirrored to
  every variable, with its default: the README's Configuration table
"""

HOME_HELP = "data root (default: $TIKLIVE_HOME or ./data)"
CONFIG_HELP = "tracking YAML (default: $TIKLIVE_CONFIG or tiklive.yaml)"
REALISM_NEEDS_SANDBOX = "--realism shapes the bundled sandbox's answers: add --sandbox."


def add_home(*parsers: argparse.ArgumentParser) -> None:
    """``--home`` on each parser: the data root this command reads and writes."""
    for parser in parsers:
        parser.add_argument("--home", type=Path, default=None, help=HOME_HELP)


def add_config(*parsers: argparse.ArgumentParser) -> None:
    """``--config`` on each parser: the tracking file this command reads."""
    for parser in parsers:
        parser.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)


def use_location(args: argparse.Namespace) -> settings.DataRoot:
    """Apply ``--home`` and ``--config`` (where the command has them) to this process and what it starts; return
    the data root the command works in."""
    home = getattr(args, "home", None)
    if home:
        settings.use_home(home)
    config = getattr(args, "config", None)
    if config:
        settings.use_config(config)
    return settings.DataRoot.from_env()


def parse_day(text: str) -> date:
    """An argparse ``type``: a YYYY-MM-DD date, or a usage error that shows the expected form."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2026-05-29") from None


def fail(message: object, code: int = EXIT_USAGE) -> int:
    """Print ``message`` on stderr (one line, no traceback) and return the exit status ``code``."""
    print(message, file=sys.stderr)
    return code


def range_problem(start: date, end: date) -> str | None:
    """Why ``--from start --to end`` is not a range of days, or None when it is."""
    return f"--to {end} is before --from {start}" if end < start else None


def setup_logging() -> None:
    """WARNING and above on stderr, for every command (the commands print their own progress)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    help: str,
    description: str,
    examples: list[str] | tuple[str, ...] = (),
    epilog: str | None = EPILOG,
) -> argparse.ArgumentParser:
    """A subcommand: ``help`` in ``tiklive --help``, then its own help page: ``description``, its ``examples``
    and ``epilog`` (the environment it reads) laid out as written. ``epilog=None``: no epilog, the description
    wrapped to the terminal."""
    if epilog is None:
        return sub.add_parser(name, help=help, description=description)
    shown = "examples:\n" + "".join(f"  {example}\n" for example in examples) + "\n" if examples else ""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=shown + epilog,
    )

"""The ``tiklive`` command: run the daily pipeline, start the sandbox API, check a key.

Run ``tiklive --help`` or ``tiklive <command> --help`` for every option.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, date, datetime
from pathlib import Path

from tiklive_assets import settings

EPILOG = """environment:
  TIKLIVE_API_KEY    your TikLiveAPI key (X-Api-Key); never printed or logged
  TIKLIVE_BASE_URL   API host (default https://api.tikliveapi.com; point it at a sandbox to use one)
  TIKLIVE_HOME       data root (default ./data): archive/, state.sqlite, warehouse.duckdb, exports/, marts.duckdb
  TIKLIVE_WAREHOUSE_URL  warehouse backend (default TIKLIVE_HOME/warehouse.duckdb; postgresql://user@host/db)
  TIKLIVE_CONFIG     what to track (default tiklive.yaml)
"""


DEFAULT_CHECK_HANDLE = "cristiano"  # looked up by check-key when no account is tracked: a public handle that exists


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2026-05-29") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiklive",
        description="tiklive-assets: capture TikTok data into a durable raw archive and a queryable warehouse.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="materialize one day's pipeline in-process and print a summary",
        description="Materialize the day's pipeline (the assets the daily schedule runs) in-process, with progress, "
        "then print what was captured, the credits spent, dead letters by reason and where the files are.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    run.add_argument("--date", type=_parse_day, default=None, help="ingest day YYYY-MM-DD (default: today, UTC)")
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
    run.add_argument(
        "--config", type=Path, default=None, help="tracking YAML (default: $TIKLIVE_CONFIG or tiklive.yaml)"
    )
    run.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")

    sandbox = sub.add_parser(
        "sandbox",
        help="serve the bundled sandbox TikLiveAPI over HTTP",
        description="Serve the sandbox: every TikLiveAPI endpoint with the exact wire format, from deterministic "
        "synthetic data, with optional faults. Point TIKLIVE_BASE_URL at it and use its key.",
    )
    sandbox.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    sandbox.add_argument("--api-key", default=None, help="key the sandbox accepts (default: sandbox-key)")
    sandbox.add_argument("--seed", type=int, default=7, help="seed of the synthetic corpus (default 7)")
    sandbox.add_argument(
        "--rate-limit", type=int, default=None, help="requests allowed per window (default: unlimited)"
    )
    sandbox.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds (default 60)")
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every API call")
    sandbox.add_argument("--error-rate", type=float, default=0.0, help="fraction of API calls answered with a 5xx")
    sandbox.add_argument(
        "--cdn-ttl", type=float, default=300.0, help="seconds before signed CDN URLs expire (default 300)"
    )
    sandbox.add_argument("--video-size", type=int, default=50_000, help="approximate bytes of each sandbox MP4")
    sandbox.add_argument("--accounts", type=int, default=6, help="synthetic accounts (default 6; more for load tests)")
    sandbox.add_argument(
        "--realism",
        action="store_true",
        help="serve the payload variants real responses show: ids under video_id/id and as integers, "
        "string or null counters, hasMore 1/0, bioLink objects, photo posts (images + an MP3), the "
        "{code, msg, data} envelope, and now and then an upstream error or a truncated body inside "
        "HTTP 200 (the retry gets the real answer)",
    )
    sandbox.add_argument(
        "--credit-balance",
        type=int,
        default=None,
        help="credits the account has; once spent, every request is answered HTTP 200 "
        '{"message": "Insufficient balance..."}, as TikLiveAPI does (default: unlimited)',
    )

    replay = sub.add_parser(
        "replay",
        help="rebuild the warehouse (or a scratch database) for a range of days from the raw archive alone",
        description="Parse every archived response of each day from --from to --to (inclusive) and load it into the "
        "warehouse, one transaction per day, replacing what each day held: replaying a day twice changes nothing, "
        "and a deleted warehouse comes back identical (the 'database lost' recovery). Reads only the raw "
        "archive ($TIKLIVE_HOME/archive, or the bucket named by $TIKLIVE_ARCHIVE_BUCKET), never the API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  tiklive replay --from 2026-05-01 --to 2026-05-29\n"
        "  tiklive replay --from 2026-05-29 --to 2026-05-29 --into /tmp/scratch.duckdb\n"
        "  tiklive replay --from 2026-05-01 --to 2026-05-29 --into postgresql://postgres@127.0.0.1/restore_test\n\n"
        + EPILOG,
    )
    replay.add_argument(
        "--from", dest="start", type=_parse_day, required=True, metavar="YYYY-MM-DD", help="first archive day to replay"
    )
    replay.add_argument(
        "--to",
        dest="end",
        type=_parse_day,
        required=True,
        metavar="YYYY-MM-DD",
        help="last archive day to replay (inclusive)",
    )
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
    replay.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")

    check = sub.add_parser(
        "check-key",
        help="verify an API key with one /userid/ lookup (1-2 credits)",
        description="Verify TIKLIVE_API_KEY before a first run or after rotating it: look up one handle with "
        "/userid/ (the first account of the tracking YAML unless --username names one), then its profile with "
        "/userinfo-by-id/. The API only answers a lookup, found or not, to a key it accepts, so a 404 for the "
        "handle also proves the key works. Exit status 0: the key is accepted; 1: it was rejected (HTTP 401/403) "
        "or is not set; 2: the check could not tell (network, server error, unexpected answer). The key itself is "
        "never printed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    check.add_argument(
        "--username",
        default=None,
        help=f"handle to look up (default: the first account of the tracking YAML, else {DEFAULT_CHECK_HANDLE})",
    )
    check.add_argument(
        "--config", type=Path, default=None, help="tracking YAML (default: $TIKLIVE_CONFIG or tiklive.yaml)"
    )
    check.add_argument("--base-url", default=None, help="API host (default: $TIKLIVE_BASE_URL or the real API)")

    cursors = sub.add_parser(
        "cursors",
        help="list discovery cursors (with drift signals) or reset one to a known-good value",
        description="The state database's `cursors` table is the one authoritative place for discovery cursors "
        "(scope <endpoint>:<entity>:<ingest day>). `list` shows each with its pages, completeness and drift; "
        "`reset` sets one to a value (or to the value N writes back in its history) and reopens its walk "
        "(the pipeline-drift runbook: stop the worker, reset to the last known-good cursor, let it walk forward).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    cursors_sub = cursors.add_subparsers(dest="cursors_command", required=True, metavar="ACTION")
    listing = cursors_sub.add_parser("list", help="list cursors (default: all)")
    listing.add_argument("--prefix", default="", help="only scopes starting with this, e.g. user-posts:107955")
    listing.add_argument("--history", metavar="SCOPE", default=None, help="show the recorded values of one scope")
    reset = cursors_sub.add_parser("reset", help="reset one cursor and reopen its walk")
    reset.add_argument("scope", help="the cursor's scope, as `tiklive cursors list` prints it")
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--value", help='the cursor value to resume from ("0" restarts from the newest page)')
    target.add_argument("--back", type=int, help="go back N values in the scope's history (1 = the previous one)")
    forget = cursors_sub.add_parser(
        "forget-user",
        help="clear a handle's cached user id: the next run asks /userid/ again (1 credit)",
        description="The user id of each tracked handle is resolved once with /userid/ and cached in the state "
        "database. If the handle was renamed or given to someone else, clear it here; the next run resolves it again.",
    )
    forget.add_argument("handle", help="the TikTok handle, with or without its @")
    for parser_ in (listing, reset, forget):
        parser_.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")

    from tiklive_assets.cli import compliance as compliance_cli
    from tiklive_assets.cli import research as research_cli

    research_cli.add_parser(sub)
    compliance_cli.add_parsers(sub)
    from tiklive_assets.cli import status as status_cli

    status_cli.add_parser(sub)
    from tiklive_assets.cli import mirror as mirror_cli

    mirror_cli.add_parser(sub, EPILOG)
    from tiklive_assets.cli import sql as sql_cli

    sql_cli.add_parser(sub, EPILOG)
    from tiklive_assets.cli import ui as ui_cli

    ui_cli.add_parser(sub, EPILOG)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_framework_warnings()
    with _rate_waits_shown():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        return cmd_sandbox(args)
    if args.command == "check-key":
        return cmd_check_key(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "mirror":
        from tiklive_assets.cli import mirror as mirror_cli

        return mirror_cli.run(args)
    if args.command == "sql":
        from tiklive_assets.cli import sql as sql_cli

        return sql_cli.run(args)
    if args.command == "status":
        from tiklive_assets.cli import status as status_cli

        return status_cli.run(args)
    if args.command == "cursors":
        return cmd_cursors(args)
    if args.command == "ui":
        from tiklive_assets.cli import ui as ui_cli

        return ui_cli.run(args)
    if args.command == "research":
        from tiklive_assets.cli import research as research_cli

        return research_cli.run(args)
    if args.command in ("erase", "hold", "retention"):
        from tiklive_assets.cli import compliance as compliance_cli

        return compliance_cli.run(args)
    raise AssertionError(args.command)


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


def cmd_sandbox(args: argparse.Namespace) -> int:
    from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer

    config = SandboxConfig(
        api_key=args.api_key or DEFAULT_API_KEY,
        seed=args.seed,
        rate_limit=args.rate_limit,
        rate_window_seconds=args.rate_window,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        cdn_ttl_seconds=args.cdn_ttl,
        video_size=args.video_size,
        accounts=args.accounts,
        realism=args.realism,
        credit_balance=args.credit_balance,
    )
    server = SandboxServer(config, port=args.port)
    print(f"sandbox TikLiveAPI listening on {server.base_url}", flush=True)
    print(f"  export TIKLIVE_BASE_URL={server.base_url}")
    print("  export TIKLIVE_API_KEY=<the sandbox key: --api-key, default sandbox-key>")
    print("  accounts: " + ", ".join(a.handle for a in server.corpus.accounts))
    print("Ctrl-C stops it.", flush=True)
    with suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _check_handle(args: argparse.Namespace) -> tuple[str, str]:
    """The handle check-key looks up, and where it came from (" (...)" for the output; empty when given)."""
    if args.username:
        return args.username.lstrip("@"), ""
    from tiklive_assets.tracking import ConfigError, load_config

    path = args.config or settings.config_path()
    if not path.is_file():
        return DEFAULT_CHECK_HANDLE, f" (default; no tracking YAML at {path})"
    try:
        accounts = load_config(path).accounts
    except ConfigError as exc:
        print(
            f"(the tracking YAML could not be read, so the check uses @{DEFAULT_CHECK_HANDLE}: {exc})", file=sys.stderr
        )
        return DEFAULT_CHECK_HANDLE, " (default; tracking YAML unreadable)"
    if not accounts:
        return DEFAULT_CHECK_HANDLE, f" (default; {path} tracks no account)"
    return accounts[0].handle, f" (first tracked account in {path})"


def _is_json(body: bytes) -> bool:
    import json

    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def cmd_check_key(args: argparse.Namespace) -> int:
    from tiklive_assets.tikliveapi.client import TikLiveClient
    from tiklive_assets.tikliveapi.errors import AuthError, NotFound, TikLiveError
    from tiklive_assets.tolerant import as_id

    base_url = args.base_url or settings.base_url()
    handle, source = _check_handle(args)
    try:
        answers: list = []  # 200 and 404 responses as received, to tell the API's 404 from another host's page
        client = TikLiveClient(os.environ.get(settings.API_KEY), base_url, max_attempts=2, on_response=answers.append)
        user_id = as_id((client.userid(handle).json() or {}).get("id"))
        if user_id is None:
            print(
                f"check inconclusive against {base_url}: /userid/ answered HTTP 200 without a numeric id for "
                f"@{handle}; retry with --username <a handle you know exists>",
                file=sys.stderr,
            )
            return 2
        info = client.userinfo_by_id(user_id).json()
    except AuthError as exc:  # 401/403 (or no key at all): the message names TIKLIVE_API_KEY, never its value
        print(f"key rejected: {exc}", file=sys.stderr)
        return 1
    except NotFound as exc:
        # Only an accepted key gets as far as a lookup: an unknown handle is answered 404, a bad key 401/403.
        # The API answers in JSON; a 404 page that is not JSON comes from another host (a wrong TIKLIVE_BASE_URL).
        if not answers or not _is_json(answers[-1].body):
            print(
                f"check inconclusive against {base_url}: {exc.endpoint} answered HTTP 404 with a body that is not "
                "JSON, so the host is probably not TikLiveAPI. Check TIKLIVE_BASE_URL (or --base-url), then run "
                "`tiklive check-key` again",
                file=sys.stderr,
            )
            return 2
        print(
            f"key works against {base_url}: it was accepted, and @{handle}{source} is not found there "
            f"({exc.reason}; HTTP 404). Check the handle's spelling before a run "
            f"({client.credits.total} credit(s) spent)"
        )
        return 0
    except (TikLiveError, KeyError, TypeError, AttributeError) as exc:
        print(
            f"check inconclusive against {base_url}: {exc}. The key was neither accepted nor rejected: check "
            "TIKLIVE_BASE_URL and the network, then run `tiklive check-key` again",
            file=sys.stderr,
        )
        return 2
    if not isinstance(info, dict) or "user" not in info or "stats" not in info:
        keys = sorted(info) if isinstance(info, dict) else type(info).__name__
        print(
            f"check inconclusive: the key was accepted, but /userinfo-by-id/ did not return `user` and `stats` "
            f"(got {keys}); check TIKLIVE_BASE_URL points at TikLiveAPI",
            file=sys.stderr,
        )
        return 2
    followers = (info.get("stats") or {}).get("followerCount")
    print(
        f"key works against {base_url}: @{handle}{source} is user {user_id} with {followers} followers "
        f"({client.credits.total} credits spent)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tiklive_assets.cli.run import run_day

    with ExitStack() as stack:
        if args.home:
            os.environ[settings.HOME] = str(args.home.absolute())
        if args.config:
            os.environ[settings.CONFIG] = str(args.config)
        if args.sandbox:
            from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer

            server = stack.enter_context(SandboxServer(SandboxConfig(realism=args.realism)))
            os.environ[settings.BASE_URL] = server.base_url
            os.environ[settings.API_KEY] = DEFAULT_API_KEY
            shapes = ", serving the payload variants real responses show" if args.realism else ""
            print(f"sandbox TikLiveAPI started at {server.base_url} (synthetic data, no credits billed{shapes})")
        elif args.realism:
            print("--realism shapes the bundled sandbox's answers: add --sandbox.", file=sys.stderr)
            return 2
        elif not os.environ.get(settings.API_KEY):
            print(
                "TIKLIVE_API_KEY is not set: export your TikLiveAPI key, or add --sandbox to use the bundled "
                "sandbox API.",
                file=sys.stderr,
            )
            return 2
        day = args.date or datetime.now(UTC).date()
        started = time.monotonic()
        return run_day(day, started=started)
    return 0


def cmd_cursors(args: argparse.Namespace) -> int:
    from tiklive_assets.capture.cursors import cursor_statuses, reset_cursor
    from tiklive_assets.state import StateDB

    if args.home:
        os.environ[settings.HOME] = str(args.home.absolute())
    state = StateDB.from_url(settings.DataRoot.from_env().state_url)
    try:
        if args.cursors_command == "forget-user":
            old = state.forget_user_id(args.handle)
            print(
                f"@{args.handle.lstrip('@')}: cached user id {old} cleared; the next run asks /userid/ again"
                if old
                else f"@{args.handle.lstrip('@')} has no cached user id; nothing to clear"
            )
            return 0
        if args.cursors_command == "reset":
            try:
                value = reset_cursor(state, args.scope, args.value, back=args.back)
            except (KeyError, ValueError) as exc:
                print(str(exc).strip("'\""), file=sys.stderr)
                return 2
            print(f"{args.scope} reset to {value!r}; its walk reopens at the next run")
            return 0
        if args.history:
            for record in state.cursor_history(args.history, limit=50):
                print(f"{record.updated_at}  {record.value}  (pages {record.pages})")
            return 0
        statuses = cursor_statuses(state, args.prefix)
        if not statuses:
            print("no cursors yet (they appear after the first discovery run)")
        for status in statuses:
            flags = ("complete" if status.complete else "open") + (", STUCK" if status.stuck else "")
            flags += f", DRIFT: {status.drift}" if status.drift else ""
            print(f"{status.scope:<48} {status.value or '-':<16} pages {status.pages or 0:<4} {flags}")
        return 1 if any(s.drift or s.stuck for s in statuses) else 0
    finally:
        state.close()


def cmd_replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.warehouse import WarehouseError, default_url, describe_url, replay

    if args.end < args.start:
        print(f"--to {args.end} is before --from {args.start}", file=sys.stderr)
        return 2
    if args.home:
        os.environ[settings.HOME] = str(args.home.absolute())
    root = settings.DataRoot.from_env()
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
        print(exc, file=sys.stderr)
        return 2
    finally:
        for bar in bars:
            bar.close()
    if next(iter(store.list("research-raw/")), None) is not None:  # the Research API's tables, from its archive
        from tiklive_assets.research.warehouse import load_research_warehouse

        research = load_research_warehouse(store, target)
        print(f"research tables rebuilt from research-raw/: {research}")
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
        print(
            f"{len(report.errors)} object(s) quarantined: no parser could read them, the rest of each day loaded. "
            "They are listed in the `quarantine` table; replay the day again after a parser fix. For example:",
            file=sys.stderr,
        )
        for problem in report.errors[:5]:
            print(f"  {problem}", file=sys.stderr)
    for day, keys in report.refused.items():
        print(
            f"{day} left as it was: {len(keys)} of its archived object(s) are damaged (not gzip), and replacing "
            "the day would drop the rows they fed. Restore them from the secondary store or a backup and replay "
            "again, or pass --force to replace the day anyway.",
            file=sys.stderr,
        )
    if report.corrupt:
        print(
            f"{len(report.corrupt)} archived object(s) are damaged (not gzip): restore them from the secondary "
            "store or a backup, then replay. For example:",
            file=sys.stderr,
        )
        for problem in report.corrupt[:5]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

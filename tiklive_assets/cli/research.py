"""``tiklive research``: collect videos (and optionally user data) from the TikTok Research API, resumably.

Wired into ``tiklive_assets/cli/__init__.py`` through ``add_parser(subparsers)`` and ``run(args) -> int``. Exit
status: 0 when every window is collected, 3 when the run stopped cleanly on the quota (run it again, tomorrow for
the daily quota, and it resumes), 2 for a usage or configuration problem, 1 for an API error. Whatever a run
collected before an error is archived and loaded into the research tables before the error is reported.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from contextlib import ExitStack
from datetime import date
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_QUOTA = 0, 1, 2, 3
SANDBOX_PAUSE = 0.5
SANDBOX_BACKOFF = 0.05  # seconds before the first retry against the sandbox (2 s against the real API)

EPILOG = """environment:
  TIKTOK_RESEARCH_CLIENT_KEY     Research API client key (never printed or logged)
  TIKTOK_RESEARCH_CLIENT_SECRET  Research API client secret (never printed or logged)
  TIKTOK_RESEARCH_BASE_URL       API host (default https://open.tiktokapis.com)
  TIKLIVE_HOME                   data root: archive/research-raw/, state.sqlite (quota ledger), warehouse.duckdb
  TIKLIVE_CONFIG                 YAML whose `research:` section supplies defaults (usernames, dates, pause, quota)

exit status: 0 all windows collected; 3 stopped cleanly on the quota (rerun resumes); 2 usage; 1 API error
(what was collected before the error is archived and loaded all the same)
"""


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2024-01-01") from None


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "research",
        help="collect videos by create date from the official TikTok Research API (resumable, quota-aware)",
        description="Collect every video the query matches, created from --from to --to, in windows of at most "
        "30 days with cursor + search_id pagination, archive every response under research-raw/, load the "
        "research tables and print videos per user and requests spent. A rerun resumes where a run stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--users", type=_csv, default=None, help="usernames, comma-separated (default: config)")
    parser.add_argument("--hashtags", type=_csv, default=None, help="hashtag names to filter on, comma-separated")
    parser.add_argument("--keywords", type=_csv, default=None, help="keywords to filter on, comma-separated")
    parser.add_argument("--regions", type=_csv, default=None, help="region codes to filter on, comma-separated")
    parser.add_argument("--from", dest="start", type=_day, default=None, help="first create date YYYY-MM-DD")
    parser.add_argument("--to", dest="end", type=_day, default=None, help="last create date YYYY-MM-DD (inclusive)")
    parser.add_argument(
        "--per-user",
        action="store_true",
        help="one EQ search per user (simple to read) instead of one IN search for all (fewer requests)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=None,
        help=f"seconds between pages of one search (default: config or 10; {SANDBOX_PAUSE} with --sandbox)",
    )
    parser.add_argument("--max-requests", type=int, default=None, help="stop cleanly after this many requests")
    parser.add_argument("--daily-quota", type=int, default=None, help="requests a UTC day (default: config or 1000)")
    parser.add_argument("--refresh", action="store_true", help="collect windows already done again (fresh counters)")
    parser.add_argument(
        "--with-users",
        action="store_true",
        help="also collect user info, followers and following "
        "(a private or refused user is a warning, not the end of the run)",
    )
    parser.add_argument(
        "--with-comments",
        action="store_true",
        help="also collect the comments of the videos this run collected (one request or more a video)",
    )
    parser.add_argument("--sandbox", action="store_true", help="start the bundled sandbox Research API in-process")
    parser.add_argument(
        "--realism",
        action="store_true",
        help="with --sandbox: serve what the real API does (withheld videos, transient errors, "
        "NUL characters, missing fields, a private user), so the run is tested against the API",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="tracking YAML (default: $TIKLIVE_CONFIG or tiklive.yaml)"
    )
    parser.add_argument("--home", type=Path, default=None, help="data root (default: $TIKLIVE_HOME or ./data)")
    parser.add_argument(
        "--warehouse",
        default=None,
        help="DuckDB file or postgresql:// URL (default: $TIKLIVE_WAREHOUSE_URL or TIKLIVE_HOME/warehouse.duckdb)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _research_config(args: argparse.Namespace):
    from tiklive_assets import settings
    from tiklive_assets.tracking import ResearchConfig, load_config

    path = args.config or settings.config_path()
    if args.config is not None or Path(path).exists():
        research = load_config(path).research
        if research is not None:
            return research
    return ResearchConfig()


# one command, its steps in the order they run (collect, load, report); splitting it is a refactor for its own change
def run(args: argparse.Namespace) -> int:  # noqa: C901
    from tqdm import tqdm

    from tiklive_assets import settings
    from tiklive_assets.research.archive import ResearchArchive
    from tiklive_assets.research.client import VIDEO_QUERY, ResearchClient, build_query, query_hash
    from tiklive_assets.research.collect import CollectOptions, collect_comments, collect_users, collect_videos
    from tiklive_assets.research.errors import ResearchError
    from tiklive_assets.research.quota import QuotaLedger, ResearchState
    from tiklive_assets.research.warehouse import load_research_warehouse, videos_per_user
    from tiklive_assets.research.windows import split_range
    from tiklive_assets.state import StateDB
    from tiklive_assets.tracking import ConfigError

    if args.home:
        os.environ[settings.HOME] = str(args.home.absolute())
    try:
        cfg = _research_config(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    users = args.users if args.users is not None else cfg.usernames
    hashtags = args.hashtags if args.hashtags is not None else cfg.hashtags
    keywords = args.keywords if args.keywords is not None else cfg.keywords
    regions = args.regions if args.regions is not None else cfg.regions
    start, end = args.start or cfg.start_date, args.end or cfg.end_date
    if not (users or hashtags or keywords or regions):
        print(
            "nothing to query: pass --users a,b,c (or --hashtags/--keywords/--regions), or set research.usernames "
            "in TIKLIVE_CONFIG",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if start is None or end is None:
        print(
            "pass --from YYYY-MM-DD and --to YYYY-MM-DD (or research.start_date / end_date in TIKLIVE_CONFIG)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if end < start:
        print(f"--to {end} is before --from {start}", file=sys.stderr)
        return EXIT_USAGE
    pause = args.pause if args.pause is not None else (SANDBOX_PAUSE if args.sandbox else cfg.page_pause_seconds)

    with ExitStack() as stack:
        backoff = 2.0
        if args.realism and not args.sandbox:
            print("--realism configures the bundled sandbox: pass it with --sandbox", file=sys.stderr)
            return EXIT_USAGE
        if args.sandbox:
            from tiklive_assets.sandbox import SandboxConfig, SandboxServer
            from tiklive_assets.sandbox.research import DEFAULT_CLIENT_KEY, DEFAULT_CLIENT_SECRET, ResearchSandboxConfig

            research = ResearchSandboxConfig(page_interval=pause, realism=args.realism)
            server = stack.enter_context(SandboxServer(SandboxConfig(realism=args.realism, research=research)))
            base_url, key, secret = server.base_url, DEFAULT_CLIENT_KEY, DEFAULT_CLIENT_SECRET
            backoff = SANDBOX_BACKOFF
            print(
                f"sandbox Research API started at {server.base_url} (synthetic data, pages {pause:g} s apart"
                f"{', realistic faults' if args.realism else ''})"
            )
        else:
            from tiklive_assets.research.client import CLIENT_KEY_ENV, CLIENT_SECRET_ENV, base_url_from_env

            base_url, key, secret = (
                base_url_from_env(),
                os.environ.get(CLIENT_KEY_ENV),
                os.environ.get(CLIENT_SECRET_ENV),
            )
        root = settings.DataRoot.from_env()
        state = StateDB.from_url(root.state_url)
        stack.callback(state.close)
        rstate = ResearchState(state)
        ledger = QuotaLedger(rstate, args.daily_quota or cfg.daily_quota, args.max_requests or cfg.run_request_cap)
        from tiklive_assets.defs.resources import default_resources  # the one way the archive store is configured

        store = default_resources()["archive_store"].open()
        archive = ResearchArchive(store, ledger.today())
        try:
            client = ResearchClient(
                key,
                secret,
                base_url,
                quota=ledger,
                on_response=archive.write,
                max_attempts=cfg.max_retries + 1,
                backoff_initial=backoff,
            )
        except ResearchError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE
        stack.callback(client.close)

        windows = split_range(start, end)
        queries = (
            [build_query([u], hashtags=hashtags, keywords=keywords, regions=regions) for u in users]
            if args.per_user and users
            else [build_query(users, hashtags=hashtags, keywords=keywords, regions=regions)]
        )
        options = CollectOptions(pause=pause, max_count=cfg.max_count, refresh=args.refresh)
        bar = tqdm(
            total=len(windows) * len(queries), unit="window", disable=args.no_progress, file=sys.stderr, desc="research"
        )
        stopped, failed, retries, restarts, floor = None, None, 0, 0, 0
        video_ids: list[str] = []
        user_report = comment_report = None
        try:
            for query in queries:

                def on_page(window, page, _bar=bar):
                    _bar.set_postfix(window=window.key, requests=client.meter.total)
                    if not page.has_more:
                        _bar.update(1)

                report = collect_videos(client, archive, rstate, query, windows, options, on_page=on_page)
                bar.update(sum(1 for w in report.windows if w.status == "already done"))
                retries += report.retries
                restarts += report.restarts
                video_ids.extend(report.video_ids)
                for w in rstate.windows(query_hash(query, options.fields)):
                    if w.status == "done" and w.window_key in {x.key for x in windows}:
                        floor += max(1, math.ceil(w.videos / options.max_count))
                if report.stopped:
                    stopped = (
                        f"{report.stopped} (stopped at window {report.stopped_at[0]}, cursor {report.stopped_at[1]})"
                    )
                    break
            if args.with_users and users and not stopped:
                user_report = collect_users(
                    client,
                    users,
                    followers=cfg.followers,
                    following=cfg.following,
                    max_follow_pages=cfg.follow_max_pages,
                    options=options,
                )
                stopped = user_report.stopped
            if args.with_comments and video_ids and not stopped:
                comment_report = collect_comments(client, video_ids, options=options)
                stopped = comment_report.stopped
        except ResearchError as exc:
            failed = exc  # reported after what was archived is loaded: nothing collected is thrown away
        finally:
            bar.close()

        target = args.warehouse or settings.warehouse_url()
        loaded = load_research_warehouse(store, target)
        counts = videos_per_user(target, start, end, users or None)
        print(f"research {start}..{end}: {len(windows)} windows x {len(queries)} search(es)")
        width = max([len(u) for u in counts] + [8])
        for username, n in counts.items():
            print(f"  {username:<{width}} {n:>7} videos")
        video_requests = client.meter.by_endpoint.get(VIDEO_QUERY, 0)
        retried = ", ".join(f"{n} {code}" for code, n in sorted(client.meter.retries.items())) or "none"
        print(
            f"requests spent: {client.meter.total} this run ({video_requests} video query, "
            f"{client.meter.total - video_requests} user and comment endpoints); floor for the windows done: {floor} "
            f"(windows + extra pages); {client.meter.retried} retries ({retried}), {restarts} window restarts, "
            f"{client.meter.token_requests} token request(s); quota left today: {ledger.left_today()}"
        )
        if user_report is not None:
            print(
                f"users: {user_report.profiles} profiles, {sum(user_report.followers.values())} followers, "
                f"{sum(user_report.following.values())} following"
            )
            for who, why in {**user_report.unavailable, **user_report.warnings}.items():
                print(f"  warning: {who}: {why}")
        if comment_report is not None:
            print(
                f"comments: {comment_report.total} on {comment_report.videos} videos"
                f"{f', {len(comment_report.warnings)} videos with warnings' if comment_report.warnings else ''}"
            )
        print(
            f"archive: {store.describe()}/research-raw ({archive.written.get('created', 0)} objects written); "
            f"warehouse: {loaded.target} ({loaded.rows.get('research_videos', 0)} research_videos, "
            f"{loaded.rows.get('research_follows', 0)} research_follows, "
            f"{loaded.rows.get('research_comments', 0)} research_comments); "
            f"{loaded.nul_stripped} NUL characters stripped, {sum(loaded.nulled.values())} unreadable values nulled"
        )
        if failed is not None:
            print(
                f"research failed: {failed}. What was collected before it is archived and loaded; run the same "
                "command again to resume.",
                file=sys.stderr,
            )
            return EXIT_ERROR
        if stopped:
            print(f"stopped cleanly: {stopped}. Run the same command again (tomorrow for the daily quota) to resume.")
            return EXIT_QUOTA
        return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m tiklive_assets.cli.research ...`` (the same as ``tiklive research ...``)."""
    parser = argparse.ArgumentParser(prog="tiklive")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["research", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

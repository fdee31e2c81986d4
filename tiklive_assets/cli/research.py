"""``tiklive research``: collect videos (and optionally user data) from the TikTok Research API, resumably.

It materializes the research assets through Dagster, in-process, as ``tiklive run`` does for the capture: the
create-date partitions from ``--from`` to ``--to`` of ``research_video_archive`` through the ``research_videos``
job, then (``--with-users``) ``research_user_archive``, then ``research_tables``, each with this command's
options as its run config, recorded in the instance under ``DAGSTER_HOME`` (else ``TIKLIVE_HOME/dagster``).

Wired into ``tiklive_assets/cli/__init__.py`` through ``add_parser(subparsers)`` and ``run(args) -> int``. Exit
status: 0 when every window is collected, 3 when the run stopped cleanly on the quota (run it again, tomorrow for
the daily quota, and it resumes), 2 for a usage or configuration problem, 1 for an API error. Whatever a run
collected before an error is archived and loaded into the research tables before the error is reported.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from tiklive_assets.cli import common

if TYPE_CHECKING:
    import dagster as dg

    from tiklive_assets.tracking import ResearchConfig

EXIT_QUOTA = 3
SANDBOX_PAUSE = 0.5
SANDBOX_BACKOFF = 0.05  # seconds before the first retry against the sandbox (2 s against the real API)
VIDEOS, USERS, TABLES = "research_video_archive", "research_user_archive", "research_tables"
VIDEOS_JOB = "research_videos"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

EPILOG = """environment:
  TIKTOK_RESEARCH_CLIENT_KEY     Research API client key (never printed or logged)
  TIKTOK_RESEARCH_CLIENT_SECRET  Research API client secret (never printed or logged)
  TIKTOK_RESEARCH_BASE_URL       API host (default https://open.tiktokapis.com)
  TIKLIVE_HOME                   data root: archive/research-raw/, state.sqlite (quota ledger), warehouse.duckdb
  TIKLIVE_CONFIG                 YAML whose `research:` section supplies defaults (usernames, dates, pause, quota)

exit status: 0 all windows collected; 3 stopped cleanly on the quota (rerun resumes); 2 usage; 1 API error
(what was collected before the error is archived and loaded all the same)
"""

# the query's terms: option, what it lists, the tracking file's field
TERMS = (
    ("--users", "usernames", "usernames"),
    ("--hashtags", "hashtag names to filter on", "hashtags"),
    ("--keywords", "keywords to filter on", "keywords"),
    ("--regions", "region codes to filter on", "regions"),
)
FLAGS = (
    ("--per-user", "one EQ search per user (simple to read) instead of one IN search for all (fewer requests)"),
    ("--refresh", "collect windows already done again (fresh counters)"),
    ("--with-users", "also collect user info, followers and following (a private or refused user is a warning)"),
    ("--with-comments", "also collect the comments of the videos this run collected (one request or more a video)"),
    ("--sandbox", "start the bundled sandbox Research API in-process"),
    (
        "--realism",
        "with --sandbox: serve what the real API does (withheld videos, transient errors, NUL characters, missing "
        "fields, a private user), so the run is tested against the API",
    ),
    ("--no-progress", "no progress bar"),
)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = common.add_command(
        subparsers,
        "research",
        "collect videos by create date from the official TikTok Research API (resumable, quota-aware)",
        "Collect every video the query matches, created from --from to --to, in windows of at most 30 days with "
        "cursor + search_id pagination, archive every response under research-raw/, load the research tables and "
        "print videos per user and requests spent. A rerun resumes where a run stopped.",
        epilog=EPILOG,
    )
    for option, what, name in TERMS:
        parser.add_argument(
            option, dest=name, type=_csv, default=None, help=f"{what}, comma-separated (default: config)"
        )
    parser.add_argument(
        "--from", dest="start", type=common.parse_day, default=None, help="first create date YYYY-MM-DD"
    )
    parser.add_argument(
        "--to", dest="end", type=common.parse_day, default=None, help="last create date YYYY-MM-DD (inclusive)"
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=None,
        help=f"seconds between pages of one search (default: config or 10; {SANDBOX_PAUSE} with --sandbox)",
    )
    parser.add_argument("--max-requests", type=int, default=None, help="stop cleanly after this many requests")
    parser.add_argument("--daily-quota", type=int, default=None, help="requests a UTC day (default: config or 1000)")
    for option, text in FLAGS:
        parser.add_argument(option, action="store_true", help=text)
    common.add_config(parser)
    common.add_home(parser)
    parser.add_argument(
        "--warehouse",
        default=None,
        help="DuckDB file or postgresql:// URL (default: $TIKLIVE_WAREHOUSE_URL or TIKLIVE_HOME/warehouse.duckdb)",
    )
    parser.set_defaults(func=run)
    return parser


def _research_config(args: argparse.Namespace) -> ResearchConfig:
    """The tracking file's ``research:`` section; its defaults when there is no file (and no ``--config``)."""
    from tiklive_assets import settings
    from tiklive_assets.tracking import ResearchConfig, load_config

    path = settings.config_path()
    research = load_config(path).research if args.config is not None or path.exists() else None
    return research or ResearchConfig()


def _terms(args: argparse.Namespace, cfg: ResearchConfig) -> dict[str, list[str]]:
    """The query's terms: each option as given, else the tracking file's."""
    return {
        name: getattr(args, name) if getattr(args, name) is not None else getattr(cfg, name) for _, _, name in TERMS
    }


def _collect_config(args: argparse.Namespace, cfg: ResearchConfig, pause: float, target: str) -> dict[str, Any]:
    """The run config of the collecting assets: the query and this command's options."""
    given = {
        "daily_quota": args.daily_quota,
        "run_request_cap": args.max_requests,
        "users": True if args.with_users else None,
    }
    return {
        **_terms(args, cfg),
        **{name: value for name, value in given.items() if value is not None},
        "per_user": args.per_user,
        "pause_seconds": pause,
        "refresh": args.refresh,
        "with_comments": args.with_comments,
        "warehouse_url": target,
    }


@dataclass
class Step:
    """One asset's run: its metadata (materialized, or of its failure) and why it failed, if it did."""

    metadata: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None  # the quota stopped it cleanly, there
    error: str | None = None  # it failed

    def get(self, name: str, default: Any = 0) -> Any:
        return self.metadata.get(name, default)


def _step(job: dg.JobDefinition, run_config: dict, **execute: Any) -> Step:
    result = job.execute_in_process(run_config={**QUIET, **run_config}, raise_on_error=False, **execute)
    step = Step()
    for event in result.get_asset_materialization_events():
        step.metadata.update({k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()})
    for event in result.all_events:
        data = event.step_failure_data if event.is_step_failure else None
        if data is None:
            continue
        if data.user_failure_data is not None:
            step.metadata.update({k: getattr(v, "value", v) for k, v in data.user_failure_data.metadata.items()})
        error = (data.error.cause or data.error) if data.error else None
        step.error = step.metadata.get("error") or (error.message.strip() if error else "the step failed")
    if "stop" in step.metadata:
        step.stopped, step.error = str(step.metadata["stop"]), None
    return step


def _jobs() -> dict[str, dg.JobDefinition]:
    """Each step's job, from the code location: the videos through the job the resume schedule launches, the
    others as a subset of the code location's asset job."""
    import dagster as dg

    from tiklive_assets.definitions import defs

    definitions = defs()
    assets = definitions.resolve_implicit_global_asset_job_def()
    return {
        VIDEOS: definitions.resolve_job_def(VIDEOS_JOB),
        USERS: assets.get_subset(asset_selection={dg.AssetKey(USERS)}),
        TABLES: assets.get_subset(asset_selection={dg.AssetKey(TABLES)}),
    }


def _credentials(args: argparse.Namespace, stack: ExitStack, pause: float) -> dg.ConfigurableResource:
    """The Research API resource: the bundled sandbox's (started here), or the environment's credentials."""
    from tiklive_assets.defs.research.resources import TikTokResearchResource

    if not args.sandbox:
        from tiklive_assets import settings
        from tiklive_assets.research.client import ResearchClient

        key, secret = settings.research_credentials()
        ResearchClient(key, secret).close()  # raises, naming what is missing
        return TikTokResearchResource(client_key=key or "", client_secret=secret or "")
    from tiklive_assets.sandbox import SandboxConfig, SandboxServer
    from tiklive_assets.sandbox.research import DEFAULT_CLIENT_KEY, DEFAULT_CLIENT_SECRET, ResearchSandboxConfig

    research = ResearchSandboxConfig(page_interval=pause, realism=args.realism)
    server = stack.enter_context(SandboxServer(SandboxConfig(realism=args.realism, research=research)))
    print(
        f"sandbox Research API started at {server.base_url} (synthetic data, pages {pause:g} s apart"
        f"{', realistic faults' if args.realism else ''})"
    )
    return TikTokResearchResource(
        client_key=DEFAULT_CLIENT_KEY,
        client_secret=DEFAULT_CLIENT_SECRET,
        base_url=server.base_url,
        backoff_initial=SANDBOX_BACKOFF,
    )


def _usage(args: argparse.Namespace, cfg: ResearchConfig, start: date | None, end: date | None) -> str | None:
    """What is wrong with the command line, or None."""
    from tiklive_assets.defs.research.partitions import create_date

    if not any(_terms(args, cfg).values()):
        return (
            "nothing to query: pass --users a,b,c (or --hashtags/--keywords/--regions), or set research.usernames "
            "in TIKLIVE_CONFIG"
        )
    if start is None or end is None:
        return "pass --from YYYY-MM-DD and --to YYYY-MM-DD (or research.start_date / end_date in TIKLIVE_CONFIG)"
    first, last = create_date.get_first_partition_key() or "", create_date.get_last_partition_key() or ""
    if common.range_problem(start, end):
        return common.range_problem(start, end)
    if not first <= start.isoformat() <= end.isoformat() <= last:
        return f"--from and --to are create dates from {first} to {last} (UTC, the last full day)"
    if args.realism and not args.sandbox:
        return common.REALISM_NEEDS_SANDBOX
    return None


def run(args: argparse.Namespace) -> int:
    from tiklive_assets import settings
    from tiklive_assets.research.errors import ResearchError
    from tiklive_assets.tracking import ConfigError

    common.use_location(args)
    try:
        cfg = _research_config(args)
    except ConfigError as exc:
        return common.fail(exc)
    start, end = args.start or cfg.start_date, args.end or cfg.end_date
    problem = _usage(args, cfg, start, end)
    if problem or start is None or end is None:
        return common.fail(problem)
    pause = args.pause if args.pause is not None else (SANDBOX_PAUSE if args.sandbox else cfg.page_pause_seconds)
    target = args.warehouse or settings.warehouse_url()
    with ExitStack() as stack:
        try:
            research = _credentials(args, stack, pause)
        except ResearchError as exc:
            return common.fail(exc)
        return _materialize(args, start, end, _collect_config(args, cfg, pause, target), research, target)


def _materialize(
    args: argparse.Namespace, start: date, end: date, collect: dict, research: dg.ConfigurableResource, target: str
) -> int:
    from tiklive_assets import settings
    from tiklive_assets.cli.run import local_instance, step_progress
    from tiklive_assets.defs.resources import default_resources

    resources: dict[str, Any] = {**default_resources(), "tiktok_research": research}
    jobs, root = _jobs(), settings.DataRoot.from_env()
    tags = {"tiklive/launched_by": "cli"}
    execute = {"resources": resources, "instance": local_instance(root), "tags": tags}
    steps: dict[str, Step] = {}
    bar = not args.no_progress and sys.stderr.isatty()
    with nullcontext() if args.no_progress else step_progress(VIDEOS, "research", bar):
        steps[VIDEOS] = _step(
            jobs[VIDEOS],
            {"ops": {VIDEOS: {"config": collect}}},
            **{**execute, "tags": {**tags, **_range_tags(start, end)}},
        )
    if args.with_users and collect["usernames"] and not (steps[VIDEOS].stopped or steps[VIDEOS].error):
        steps[USERS] = _step(jobs[USERS], {"ops": {USERS: {"config": collect}}}, **execute)
    steps[TABLES] = _step(jobs[TABLES], {"ops": {TABLES: {"config": {"warehouse_url": target}}}}, **execute)
    _summary(start, end, steps, collect["usernames"], resources["archive_store"].open().describe(), target)
    failed = next((s.error for s in steps.values() if s.error), None)
    if failed is not None:
        return common.fail(
            f"research failed: {failed}. What was collected before it is archived and loaded; run the same "
            "command again to resume.",
            common.EXIT_ERROR,
        )
    stopped = next((s.stopped for s in steps.values() if s.stopped), None)
    if stopped:
        print(f"stopped cleanly: {stopped}. Run the same command again (tomorrow for the daily quota) to resume.")
        return EXIT_QUOTA
    return common.EXIT_OK


def _range_tags(start: date, end: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }


def _summary(start: date, end: date, steps: dict[str, Step], usernames: list[str], archive: str, target: str) -> None:
    """What the run collected, what it cost and where it went, from the steps' metadata and the warehouse."""
    from tiklive_assets.research.client import VIDEO_QUERY
    from tiklive_assets.research.warehouse import videos_per_user
    from tiklive_assets.research.windows import split_range
    from tiklive_assets.storage.keys import RESEARCH_PREFIX

    videos, users, tables = steps[VIDEOS], steps.get(USERS), steps[TABLES]
    collecting = [s for s in (videos, users) if s is not None]
    print(f"research {start}..{end}: {len(split_range(start, end))} windows x {videos.get('searches', 1)} search(es)")
    counts = {} if tables.error else videos_per_user(target, start, end, usernames or None)
    width = max([len(u) for u in counts] + [8])
    for username, n in counts.items():
        print(f"  {username:<{width}} {n:>7} videos")
    spent = sum(s.get("requests_spent") for s in collecting)
    video_requests = sum(s.get("requests_by_endpoint", {}).get(VIDEO_QUERY, 0) for s in collecting)
    by_code = sum((Counter(s.get("retries_by_code", {})) for s in collecting), Counter())
    retried = ", ".join(f"{n} {code}" for code, n in sorted(by_code.items())) or "none"
    print(
        f"requests spent: {spent} this run ({video_requests} video query, {spent - video_requests} user and comment "
        f"endpoints); floor for the windows done: {videos.get('request_floor')} (windows + extra pages); "
        f"{sum(s.get('retries') for s in collecting)} retries ({retried}), {videos.get('window_restarts')} window "
        f"restarts, {sum(s.get('token_requests') for s in collecting)} token request(s); quota left today: "
        f"{collecting[-1].get('quota_left_today', 'unknown')}"
    )
    if users is not None:
        print(
            f"users: {users.get('profiles')} profiles, {sum(users.get('followers', {}).values())} followers, "
            f"{sum(users.get('following', {}).values())} following"
        )
        for who, why in {**users.get("unavailable", {}), **users.get("warnings", {})}.items():
            print(f"  warning: {who}: {why}")
    if "comments" in videos.metadata:
        warned = len(videos.get("comment_warnings", {}))
        print(
            f"comments: {videos.get('comments')} on {videos.get('comment_videos')} videos"
            f"{f', {warned} videos with warnings' if warned else ''}"
        )
    rows = tables.get("rows", {})
    print(
        f"archive: {archive}/{RESEARCH_PREFIX} ({sum(s.get('objects_written') for s in collecting)} objects written); "
        f"warehouse: {tables.get('target', target)} ({rows.get('research_videos', 0)} research_videos, "
        f"{rows.get('research_follows', 0)} research_follows, {rows.get('research_comments', 0)} research_comments); "
        f"{tables.get('nul_stripped')} NUL characters stripped, {sum(tables.get('nulled', {}).values())} unreadable "
        "values nulled"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m tiklive_assets.cli.research ...`` (the same as ``tiklive research ...``)."""
    parser = argparse.ArgumentParser(prog="tiklive")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["research", *(sys.argv[1:] if argv is None else argv)])
    common.setup_logging()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""``tiklive run``: materialize one day's pipeline in-process, step by step with progress, then summarize it.

Each step runs through the job the schedules launch (capture steps through ``daily_capture``, warehouse steps
through ``daily_warehouse``), with the same resources and the checks those jobs carry, so the runs it records are
named like the scheduled ones; only the instance differs (a SQLite instance under ``TIKLIVE_HOME/dagster`` unless
``DAGSTER_HOME`` names one). Long steps show their progress on stderr: a bar on a terminal, else a line every
``TIKLIVE_PROGRESS_SECONDS`` (default 30) while they make progress.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg

from tiklive_assets import progress, settings
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.capture.checks import dead_letter_ratio, discovery_cursors_advancing, mirror_replicated
from tiklive_assets.defs.resources import DataRootResource, default_resources
from tiklive_assets.defs.verification.checks import posts_aweme_id_unique
from tiklive_assets.defs.warehouse.assets import WAREHOUSE_ASSETS
from tiklive_assets.defs.warehouse.resources import warehouse_resources
from tiklive_assets.preflight import PreflightError, redact_url, run_preflight
from tiklive_assets.tracking import ConfigError, load_config

STEPS = [*CAPTURE_ASSETS, *WAREHOUSE_ASSETS]
CAPTURE_JOB, WAREHOUSE_JOB = "daily_capture", "daily_warehouse"
# The cheap checks travel with their assets, as in the daily jobs (each step evaluates the checks its job holds on
# the step's assets); the heavy ones (restore verification, archive and media integrity) stay in the nightly job.
# Checks built into an asset (quarantine, drift) come with it.
CHEAP_CHECKS = [discovery_cursors_advancing, dead_letter_ratio, mirror_replicated, posts_aweme_id_unique]
RATE_WAITS = "tiklive_assets.tikliveapi.ratelimit"  # the logger that says "waiting N s for the plan's rate window"


def step_jobs() -> dict[str, dg.JobDefinition]:
    """The two daily jobs, resolved from the code location (loaded now: it reads the environment as it is)."""
    from tiklive_assets.definitions import defs

    definitions = defs()
    return {name: definitions.resolve_job_def(name) for name in (CAPTURE_JOB, WAREHOUSE_JOB)}


def step_job(jobs: dict[str, dg.JobDefinition], asset: dg.AssetsDefinition) -> dg.JobDefinition:
    """The job subset that materializes one step: its assets and the checks its job holds on them, nothing else.

    Selecting only the assets would also bring every check defined on them anywhere in the code location,
    the nightly verification included; the job's own checks are the ones its schedule evaluates. The cheap checks
    are named as well: were one dropped from its job, the subset would refuse it rather than skip it silently."""
    job = jobs[WAREHOUSE_JOB if asset in WAREHOUSE_ASSETS else CAPTURE_JOB]
    keys = set(asset.keys)
    checks = {key for key in job.asset_layer.asset_graph.asset_check_keys if key.asset_key in keys}
    checks |= {key for check in CHEAP_CHECKS for key in check.check_keys if key.asset_key in keys}
    return job.get_subset(asset_selection=keys, asset_check_selection=checks)


@contextmanager
def step_progress(name: str, label: str, bar: bool) -> Iterator[None]:
    """Report a step's progress on stderr while it runs: a bar labelled ``label`` (lines logged meanwhile, such as
    the rate-window waits, are written above it), or plain lines at most every ``TIKLIVE_PROGRESS_SECONDS``."""
    if not bar:
        with progress.installed(progress.LineProgress(name, sys.stderr, interval=settings.progress_seconds())):
            yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    sink = progress.BarProgress(label, sys.stderr)
    try:
        with logging_redirect_tqdm(loggers=[logging.root, logging.getLogger(RATE_WAITS)]), progress.installed(sink):
            yield
    finally:
        sink.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal behind it
        return False


def _failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed check of a step: its name, asset and what it said."""
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        said = evaluation.description or "; ".join(
            f"{key}: {str(getattr(value, 'value', value))[:120]}"
            for key, value in list(evaluation.metadata.items())[:3]
        )
        severity = getattr(evaluation.severity, "value", "ERROR")
        lines.append(f"{evaluation.check_name} on {evaluation.asset_key.to_user_string()} ({severity}): {said}")
    return lines


def local_instance(root: settings.DataRoot) -> dg.DagsterInstance:
    if settings.dagster_home():
        return dg.DagsterInstance.get()
    path = root.home / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    # no telemetry, as in the project's dagster.yaml (Dagster would otherwise announce it on a terminal mid-step)
    return dg.DagsterInstance.local_temp(tempdir=str(path), overrides={"telemetry": {"enabled": False}})


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    out: dict = {}
    rows = 0
    for event in result.get_asset_materialization_events():
        for key, value in event.materialization.metadata.items():
            out[key] = getattr(value, "value", value)
        rows += int(getattr(event.materialization.metadata.get("dagster/row_count"), "value", 0) or 0)
    out["rows"] = rows  # summed over the step's assets (a multi-asset step materializes several)
    return out


_CREDIT_STOPS = {
    "credit_balance": "the TikLiveAPI credit balance is exhausted (top up on your TikLiveAPI profile page)",
    "daily_budget": "the daily credit budget is spent (raise `daily_credit_budget` in tiklive.yaml, or wait for "
    "tomorrow, UTC)",
}


def _credit_stop(result: dg.ExecuteInProcessResult) -> str | None:
    """Why a failed capture step stopped, when it was the credits (the balance or the day's budget)."""
    for event in result.all_events:
        data = event.step_failure_data if event.is_step_failure else None
        stop = data.user_failure_data.metadata.get("stop") if data and data.user_failure_data else None
        if stop is not None:
            return _CREDIT_STOPS.get(str(stop.value))
    return None


def _step_name(asset: dg.AssetsDefinition) -> str:
    return asset.node_def.name if len(asset.keys) > 1 else asset.key.to_user_string()


def run_day(day: date, *, started: float | None = None, out=sys.stdout) -> int:
    started = started or time.monotonic()
    root = settings.DataRoot.from_env()
    try:
        config = load_config(settings.config_path())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        f"capturing {day} into {root.home}: {len(config.accounts)} accounts, {len(config.hashtags)} hashtags, "
        f"{len(config.keywords)} keywords, {len(config.music)} sounds",
        file=out,
    )
    capture = default_resources()
    resources = {**capture, **warehouse_resources()}
    try:  # before any request: the store takes writes, the state database is migrated, the key is set
        print(
            run_preflight(
                root,
                capture["archive_store"].open(),
                dagster_dir=None if settings.dagster_home() else root.home / "dagster",
            ),
            file=out,
        )
    except PreflightError as exc:
        print(exc, file=sys.stderr)
        return 2
    instance = local_instance(root)
    jobs = step_jobs()
    bar = _isatty(sys.stderr)
    on_one_screen = bar and _isatty(out)  # the bar then stands on the step's line until the step ends
    totals: dict[str, dict] = {}
    failed: list[str] = []
    failed_checks: list[str] = []
    credit_stop: str | None = None
    for number, asset in enumerate(STEPS, start=1):
        name = _step_name(asset)
        header = f"[{number}/{len(STEPS)}] {name} ..."
        step_start = time.monotonic()
        if credit_stop and asset not in WAREHOUSE_ASSETS:
            # Every further request would be answered "no credits": stop capturing, still load what was archived.
            failed.append(name)
            print(f"{header} skipped: {credit_stop}", file=out)
            continue
        if not on_one_screen:
            print(header, end="", flush=True, file=out)
        with step_progress(name, header, bar):
            result = step_job(jobs, asset).execute_in_process(
                partition_key=day.isoformat(),
                resources=resources,
                instance=instance,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                tags={"tiklive/launched_by": "cli"},
            )
        lead = header if on_one_screen else ""
        metadata = _metadata(result)
        totals[name] = metadata
        failed_checks += _failed_checks(result)
        took = time.monotonic() - step_start
        if result.success and asset in WAREHOUSE_ASSETS:
            print(f"{lead} done in {took:.1f}s: {metadata.get('rows', 0)} rows", file=out)
        elif result.success:
            print(
                f"{lead} done in {took:.1f}s: {metadata.get('credits_spent', 0)} credits, "
                f"{metadata.get('objects_written', 0)} objects written",
                file=out,
            )
        else:
            failed.append(name)
            print(f"{lead} FAILED in {took:.1f}s", file=out)
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                    error = event.step_failure_data.error
                    print(f"    {error.cause.message.strip() if error.cause else error.message.strip()}", file=out)
            credit_stop = credit_stop or _credit_stop(result)
    _summary(
        day, root, totals, failed, time.monotonic() - started, out, credit_stop=credit_stop, failed_checks=failed_checks
    )
    if credit_stop:
        print(
            f"\nSTOPPED: {credit_stop}. Nothing was marked done and no video was blamed: rerun once the cause is "
            "fixed and the run resumes where it stopped.",
            file=out,
        )
    return 1 if failed else 0


def _left(root: settings.DataRoot, videos: dict, credit_stop: str | None) -> dict:
    """What the queue still holds after this run, and why: the archived_videos step's own account when it finished,
    else read from the state database (a failed or skipped step reports nothing itself)."""
    left = videos.get("left_pending_or_claimed")
    if isinstance(left, dict) and "count" in left:
        return left
    try:
        with DataRootResource(home=str(root.home)).state() as state:
            total, items = state.left_behind(limit=10_000)
    except Exception as exc:  # noqa: BLE001 - the summary must print even when the state database is the problem
        why = f"unknown: state database unreadable ({type(exc).__name__})"
        return {"count": None, "by_reason": {why: 1}, "ids": []}
    by_reason: dict[str, int] = {}
    ids: list[dict] = []
    for item in items:
        if item.owner_alive:
            why = "held by a live run"
        elif credit_stop:
            why = "credit stop (budget or balance)"
        elif item.last_error:
            why = f"failed {item.attempts} time(s)"
        elif item.owner_id is not None:
            why = "claimed by a run that stopped (free for the next run)"
        else:
            why = "not reached by this run (a capture step failed or was skipped)"
        by_reason[why] = by_reason.get(why, 0) + 1
        if len(ids) < 50:
            ids.append({"id": item.aweme_id, "state": item.state, "attempts": item.attempts, "why": why})
    return {"count": total, "by_reason": by_reason, "ids": ids}


def _summary(
    day: date,
    root: settings.DataRoot,
    totals: dict,
    failed: list[str],
    took: float,
    out,
    credit_stop: str | None = None,
    failed_checks: list[str] | None = None,
) -> None:
    videos = totals.get("archived_videos", {})
    credits = sum(int(m.get("credits_spent", 0) or 0) for m in totals.values())
    dead = videos.get("dead_letters_by_reason") or {}
    print("", file=out)
    print(f"summary for {day} ({took:.1f}s):", file=out)
    print(
        f"  videos captured:   {videos.get('videos_downloaded', 0)} "
        f"({videos.get('video_bytes', 0) / 1e6:.1f} MB, {videos.get('re_resolved_expired_urls', 0)} expired URLs "
        "re-resolved)",
        file=out,
    )
    print(f"  new ids queued:    {totals.get('discovery_queue', {}).get('new_ids', 0)}", file=out)
    print(f"  credits spent:     {credits}", file=out)
    reasons = ", ".join(f"{r}: {n}" for r, n in dead.items())
    print(f"  dead letters:      {sum(dead.values())}" + (f" ({reasons})" if dead else ""), file=out)
    left = _left(root, videos, credit_stop)
    reasons = ", ".join(f"{why}: {n}" for why, n in (left.get("by_reason") or {}).items())
    print(f"  left in the queue: {left.get('count')}" + (f" ({reasons})" if reasons else ""), file=out)
    for item in (left.get("ids") or [])[:10]:
        print(f"    {item['id']} ({item['state']}, {item['attempts']} attempt(s)): {item['why']}", file=out)
    if left.get("count") and len(left.get("ids") or []) < left["count"]:
        print("    ... `tiklive status` lists them all", file=out)
    archive = next((m.get("archive") for m in totals.values() if m.get("archive")), str(root.archive))
    print(f"  raw archive:       {archive}/tiklive-raw/{day:%Y/%m/%d}/", file=out)
    print(f"  videos and covers: {archive}/videos/dt={day}/ and {archive}/covers/dt={day}/", file=out)
    print(f"  state database:    {redact_url(root.state_url)}", file=out)
    if failed:
        print(f"  FAILED steps:      {', '.join(failed)} (see the messages above; rerun to resume)", file=out)
    if failed_checks:
        print(
            f"  FAILED checks:     {len(failed_checks)} (the data landed; what the checks found needs a look)", file=out
        )
        for line in failed_checks:
            print(f"    {line}", file=out)
    elif totals:
        print("  checks:            all passed", file=out)
    if "marts" not in failed and "marts" in totals:
        _print_marts(day, root, totals.get("warehouse_tables", {}), out)


def _print_marts(day: date, root: settings.DataRoot, tables: dict, out) -> None:
    """A few lines from the marts, read from marts.duckdb the way an analyst would (read-only, over Parquet)."""
    from tiklive_assets.warehouse import default_marts_path, query_marts

    marts = default_marts_path(root.home)
    print(f"  warehouse:         {tables.get('warehouse', root.warehouse)}", file=out)
    print(f"  exports:           {root.exports}/<table>/dt={day}/ and {root.exports}/csv/", file=out)
    print(f"  marts:             {marts} (query it: tiklive sql --home {root.home})", file=out)
    print("", file=out)
    _, rows = query_marts(
        marts,
        "SELECT handle, followers, follower_delta FROM follower_growth WHERE day = $day ORDER BY handle",
        {"day": day},
    )
    print("follower growth:", file=out)
    for handle, followers, delta in rows:
        since = f" ({delta:+,} since the day before)" if delta is not None else ""
        print(f"  @{handle:<20} {followers:>12,} followers{since}", file=out)
    _, rows = query_marts(
        marts,
        "SELECT day, videos_archived, video_bytes, credits, dead_letters FROM daily_archive_summary WHERE day = $day",
        {"day": day},
    )
    for d, videos, size, credits, dead in rows:
        print(
            f"archive summary {d}: {videos} videos ({size / 1e6:.1f} MB), {credits} credits, {dead} dead letters",
            file=out,
        )
    _, rows = query_marts(
        marts,
        "SELECT author_handle, aweme_id, max(views_per_hour) AS peak FROM video_virality "
        "WHERE day = $day GROUP BY ALL ORDER BY peak DESC, aweme_id LIMIT 3",
        {"day": day},
    )
    print("most viral today (views per hour since posting):", file=out)
    for handle, aweme_id, peak in rows:
        print(f"  @{handle:<20} {aweme_id}  {peak:>12,.0f}/h", file=out)
    _, rows = query_marts(marts, "SELECT hashtag, posts FROM top_hashtags ORDER BY posts DESC, hashtag LIMIT 5")
    print("top hashtags: " + ", ".join(f"#{tag} ({n})" for tag, n in rows), file=out)

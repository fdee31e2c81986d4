"""Sensors that advance capture between daily runs: new posts within one tick, queued ids resolved in minutes.

The window between discovery and resolution is the riskiest (videos vanish), so it must be minutes, not
a day. The sensor cursor holds only the rotation over accounts and the newest post seen per account; the queue
and discovery cursors stay in the state database (authoritative), written before the tick returns, so an
exception in a tick loses no progress already made safe (the tick catches it and still returns its cursor).
"""

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from tiklive_assets.capture.accounts import resolve_user_id
from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.defs.capture.assets import archived_videos
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    CaptureResources,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
)
from tiklive_assets.defs.scheduling import asset_job
from tiklive_assets.defs.verification.checks import NIGHTLY_CHECKS
from tiklive_assets.tikliveapi.errors import TikLiveError

ACCOUNTS_PER_TICK = 10  # one credit each; bounded work, far inside the 60 s tick limit
TICK_BUDGET_SECONDS = 40.0  # and bounded in time: a slow API cannot push a tick past Dagster's 60 s
NEW_POSTS_INTERVAL = 60
QUEUE_INTERVAL = 60
FAILED_RUN_BACKOFF = 600  # seconds to wait after a failed capture run before launching another

capture_new_videos_job = asset_job(
    "capture_new_videos",
    dg.AssetSelection.assets(archived_videos),
    without_checks=NIGHTLY_CHECKS,
    description="Resolve and download whatever waits in the queue (launched by the sensors).",
)


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _run_key(prefix: str, ids: list[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:16]
    return f"{prefix}:{_today()}:{digest}"


def poll_new_posts(
    session: CaptureSession, handles: list[str], newest: dict[str, int], budget_seconds: float = TICK_BUDGET_SECONDS
) -> tuple[list[str], list[str]]:
    """Read each handle's first /user-posts/ page; queue ids newer than the newest seen. Returns (new ids, errors).

    ``newest[handle]`` moves forward only after that handle's new ids are safely in the queue, so a failure
    anywhere leaves those posts new for the next tick. Stops early when the tick's time budget is spent.
    """
    new_ids: list[str] = []
    errors: list[str] = []
    started = time.monotonic()
    for polled, handle in enumerate(handles):
        if time.monotonic() - started > budget_seconds:
            del handles[polled:]  # the caller's rotation resumes at the first handle not polled
            errors.append(f"time budget of {budget_seconds:.0f}s spent before {handle}; the next tick continues")
            break
        try:
            user_id = resolve_user_id(session, handle)
            page = session.client.user_posts(user_id, 0).json()
        except TikLiveError as exc:
            errors.append(f"{handle}: {exc}")
            continue
        videos = page.get("videos") or []
        last_seen = newest.get(handle, 0)
        fresh = [v for v in videos if int(v.get("create_time") or 0) > last_seen] if last_seen else []
        rows = [
            (str(v["aweme_id"]), f"sensor:{handle}", (v.get("author") or {}).get("unique_id") or handle) for v in fresh
        ]
        if rows:
            session.state.enqueue(rows)  # raises before `newest` moves: the posts stay new for the next tick
            new_ids.extend(row[0] for row in rows)
        if videos:
            newest[handle] = max(last_seen, max(int(v.get("create_time") or 0) for v in videos))
    return new_ids, errors


@dg.sensor(
    job=capture_new_videos_job,
    minimum_interval_seconds=NEW_POSTS_INTERVAL,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Polls the first page of each tracked account's posts (a few accounts per tick, 1 credit each) and "
    "captures new videos within minutes of posting.",
)
def new_posts_sensor(
    context: dg.SensorEvaluationContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.SensorResult:
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {"next": 0, "newest": {}}
    config = tracking.load()
    handles = [account.handle for account in config.accounts]
    if not handles:
        return dg.SensorResult(skip_reason="no accounts in the tracking config", cursor=json.dumps(cursor))
    start = cursor.get("next", 0) % len(handles)
    batch = (handles[start:] + handles[:start])[: min(ACCOUNTS_PER_TICK, len(handles))]
    # the same bounds as the plan's, but one request (with its waits) never outlives a share of the tick
    plan = config.plan.model_copy(
        update={
            "request_deadline_seconds": min(config.plan.request_deadline_seconds, 15.0),
            "max_retry_after_seconds": min(config.plan.max_retry_after_seconds, 10.0),
        }
    )
    newest: dict[str, int] = dict(cursor.get("newest", {}))
    capture = CaptureResources(tiklive_api, archive_store, data_root, tracking)
    # max_attempts: a tick must stay far inside its 60 s limit; the next tick tries again
    with capture.open(datetime.now(UTC).date(), config, max_attempts=2, plan=plan) as session:
        try:
            new_ids, errors = poll_new_posts(session, batch, newest)
        except Exception as exc:  # never lose the cursor (dagster#6807): progress so far is already in the state DB
            new_ids, errors = [], [f"tick failed: {type(exc).__name__}: {exc}"]
    cursor = {"next": (start + len(batch)) % len(handles), "newest": newest}
    if errors:
        context.log.warning("new-posts sensor: %s", "; ".join(errors))
    if not new_ids:
        reason = f"no new posts among {', '.join(batch)}" + (f" ({len(errors)} errors: {errors[0]})" if errors else "")
        return dg.SensorResult(skip_reason=reason, cursor=json.dumps(cursor))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=_run_key("new-posts", new_ids),
                partition_key=_today(),
                tags={"tiklive/new_ids": str(len(new_ids))},
            )
        ],
        cursor=json.dumps(cursor),
    )


@dg.sensor(
    job=capture_new_videos_job,
    minimum_interval_seconds=QUEUE_INTERVAL,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Starts a resolve-and-download run when ids wait in the queue, so discovery-to-capture is minutes.",
)
def pending_queue_sensor(context: dg.SensorEvaluationContext, data_root: DataRootResource) -> dg.SensorResult:
    in_flight = context.instance.get_runs(
        dg.RunsFilter(
            job_name=capture_new_videos_job.name,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        ),
        limit=1,
    )
    if in_flight:
        return dg.SensorResult(skip_reason=f"run {in_flight[0].run_id} is already resolving the queue")
    failed = context.instance.get_runs(
        dg.RunsFilter(
            job_name=capture_new_videos_job.name,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.now(UTC) - timedelta(seconds=FAILED_RUN_BACKOFF),
        ),
        limit=1,
    )
    if failed:  # an outage: do not hammer it once a minute; the run failure alert has already said why
        return dg.SensorResult(
            skip_reason=f"run {failed[0].run_id} failed less than {FAILED_RUN_BACKOFF // 60} "
            "minutes ago; waiting before the next attempt"
        )
    with data_root.state() as state:
        pending = state.pending(1000)
    if not pending:
        return dg.SensorResult(skip_reason="the queue is empty")
    # Same waiting ids, same attempt -> same run key: re-evaluating never requests a duplicate run; after a
    # failed run the ids' attempts have grown, so the retry gets a new key instead of being dropped.
    ids = [f"{item.aweme_id}@{item.attempts}" for item in pending]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=_run_key("queue", ids), partition_key=_today(), tags={"tiklive/pending": str(len(pending))}
            )
        ]
    )

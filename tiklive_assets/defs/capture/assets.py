"""Capture assets, partitioned by ingest date: the listing, detail and download workers as software-defined assets.

Every response is archived raw before it is parsed. The API only knows the present, so only today's partition
fetches: a past day that is already archived is reported as such and left unchanged; one that is not fails
with the reason (the warehouse can still be rebuilt from whatever the archive holds).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import dagster as dg

from tiklive_assets.capture.accounts import AccountsReport, capture_comments, capture_follow_graph, capture_profiles
from tiklive_assets.capture.discovery import discover
from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.capture.session import CaptureSession, StateCreditLedger
from tiklive_assets.capture.videos import archive_pending
from tiklive_assets.tracking import ConfigError
from tiklive_assets.defs.partitions import daily
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
)
from tiklive_assets.preflight import require_ready
from tiklive_assets.storage.base import StoreError
from tiklive_assets.storage.keys import RAW_PREFIX, InvalidKeyPart
from tiklive_assets.tikliveapi.errors import (
    AuthError,
    BadResponse,
    BalanceExhausted,
    CreditBudgetExhausted,
    CursorStuck,
    RateLimited,
)

# Errors a retry cannot fix: Dagster's retry policy never re-runs a step for them (see capture_session).
# RateLimited: a Retry-After beyond the plan's cap (the message says when to retry); CursorStuck: drift.
NEVER_RETRIED = (AuthError, BadResponse, InvalidKeyPart, ConfigError, StoreError, RateLimited, CursorStuck)
API_POOL = "tiklive_api"
GROUP = "capture"
CAPTURE_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@contextmanager
def capture_session(
    context: dg.AssetExecutionContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> Iterator[CaptureSession]:
    day = date.fromisoformat(context.partition_key)
    try:
        config = tracking.load()
        state = data_root.open_state()
    except NEVER_RETRIED as exc:
        raise _never_retried(exc, 0) from exc
    client = None
    try:
        store = archive_store.open()
        # Before the first credit: the store takes a write, the state database is migrated, the key is set.
        require_ready(
            store, data_root.state_url or data_root.root().state_url, api_key_present=bool(tiklive_api.api_key)
        )
        archive = RawArchive(store, day)
        client = tiklive_api.client(
            requests_per_minute=config.plan.requests_per_minute,
            credit_ledger=StateCreditLedger(state, config.plan.daily_credit_budget),
            on_response=archive.write,
            plan=config.plan,  # the bounded waits: longest Retry-After obeyed, request deadline, largest answer
        )
        session = CaptureSession(client, archive, state, store, config, day, data_root.scratch)  # flushes the spool
    except NEVER_RETRIED as exc:
        if client is not None:
            client.close()
        state.close()
        raise _never_retried(exc, 0) from exc
    try:
        yield session
    except NEVER_RETRIED as exc:
        raise _never_retried(exc, session.credits_spent) from exc
    finally:
        client.close()
        state.close()


def _never_retried(exc: Exception, credits_spent: int) -> dg.Failure:
    """Retrying these only spends credits again (a rejected key, an answer that stays unreadable, a value that
    cannot become an object key, a store or configuration problem): fail once and say what to fix."""
    return dg.Failure(
        description=f"{type(exc).__name__}: {exc}",
        allow_retries=False,
        metadata={"credits_spent": credits_spent, "error": type(exc).__name__},
    )


def guard_partition(
    context: dg.AssetExecutionContext, data_root: DataRootResource, asset: str
) -> dg.MaterializeResult | None:
    """Today fetches. A past day already captured changes nothing; one never captured cannot be fetched now."""
    day = date.fromisoformat(context.partition_key)
    today = datetime.now(UTC).date()
    if day == today:
        return None
    state = data_root.open_state()
    try:
        done = state.get_value(f"asset-complete:{asset}:{day.isoformat()}")
    finally:
        state.close()
    if day < today and done:
        context.log.info("%s for %s is already archived; nothing to fetch", asset, day)
        return dg.MaterializeResult(metadata={"status": "already archived, unchanged", "credits_spent": 0})
    raise dg.Failure(
        description=(
            f"{asset} cannot capture {day}: TikLiveAPI only serves the present ({today} UTC), so a day that was not "
            "captured on the day cannot be fetched later. Materialize today's partition instead; to rebuild the "
            "warehouse for past days from what the archive holds, run `tiklive replay`."
        ),
        allow_retries=False,
    )


# What each capture asset archives: raw response folders under tiklive-raw/YYYY/MM/DD/, and media folders per day
ASSET_OBJECTS = {
    "account_profiles": ["userid", "userinfo-by-id"],
    "discovery_queue": ["user-posts", "challenge-posts", "search-video", "music-posts"],
    "archived_videos": ["post-detail"],
    "follow_graph": ["user-followers", "user-following"],
    "post_comments": ["post-comments", "post-comment-replies"],
}
MEDIA_PREFIXES = {"archived_videos": ["videos/dt={day}/", "covers/dt={day}/"]}


def archived_today(session: CaptureSession, asset: str) -> int:
    """Objects the archive holds for ``asset`` on the session's day (listings only, no GETs)."""
    day = session.day
    prefixes = [f"{RAW_PREFIX}/{day:%Y/%m/%d}/{endpoint}/" for endpoint in ASSET_OBJECTS[asset]]
    prefixes += [p.format(day=day.isoformat()) for p in MEDIA_PREFIXES.get(asset, [])]
    return sum(1 for prefix in prefixes for _ in session.store.list(prefix))


def rerun_status(context: dg.AssetExecutionContext, session: CaptureSession, asset: str, metadata: dict) -> dict:
    """Say what a run did, above all a rerun of a day already captured: finished walks are never fetched again
    (credits are money), so a rerun fetches only what is new since, often nothing."""
    already = session.state.get_value(f"asset-complete:{asset}:{session.day.isoformat()}") is not None
    archived = archived_today(session, asset)
    walks = metadata.get("walks_already_complete", 0)
    new = session.archive.written.get("created", 0) + session.archive.written.get("conflict", 0)
    if not already:
        status = "captured"
        context.log.info(
            "%s captured %s: %d object(s) archived today, %d credit(s) spent",
            asset,
            session.day,
            archived,
            session.credits_spent,
        )
    else:
        status = (
            "already captured today; fetched only what is new"
            if new
            else "already captured today; nothing new to fetch"
        )
        context.log.info(
            "%s for %s was already captured today: %d object(s) archived, %d walk(s) already complete and not "
            "fetched again; this run fetched only what is new: %d new object(s), %d credit(s) spent",
            asset,
            session.day,
            archived,
            walks,
            new,
            session.credits_spent,
        )
    return {"status": status, "objects_archived_today": archived, "walks_already_complete": walks}


def _finish(
    context: dg.AssetExecutionContext, session: CaptureSession, data_root: DataRootResource, asset: str, metadata: dict
) -> dg.MaterializeResult:
    metadata = {**metadata, **rerun_status(context, session, asset, metadata)}
    session.state.set_value(f"asset-complete:{asset}:{session.day.isoformat()}", "1")
    depth = session.state.queue_depth()
    return dg.MaterializeResult(
        metadata={
            "credits_spent": session.credits_spent,
            "credits_by_endpoint": dg.MetadataValue.json(session.client.credits.snapshot()),
            "answers_not_data": dg.MetadataValue.json(dict(session.client.credits.not_data)),  # 200s that were errors
            "objects_written": session.archive.written.get("created", 0),
            "objects_unchanged": session.archive.written.get("identical", 0),
            "objects_kept_beside": session.archive.written.get("conflict", 0),  # same request, new bytes
            "responses_spooled": len(session.archive.spooled),  # paid for, kept on local disk: the store was down
            "spooled_responses_flushed": dg.MetadataValue.json(dict(session.archive.flushed)),
            "bytes_written": session.archive.bytes_written,
            "queue_depth": dg.MetadataValue.json(depth),
            "archive": session.store.describe(),
            "unreplicated_to_secondary": dg.MetadataValue.json(getattr(session.store, "unreplicated", [])[:100]),
            **metadata,
        }
    )


def _budget_failure(exc: CreditBudgetExhausted, session: CaptureSession) -> dg.Failure:
    """A credit stop (the day's budget, or the account's balance) fails the step without retries: retrying only
    spends more. Nothing was marked done, so the rerun after a top-up (or tomorrow) resumes where this stopped."""
    spent_today = sum(session.state.credits_spent(datetime.now(UTC).date()).values())
    stop = "credit_balance" if isinstance(exc, BalanceExhausted) else "daily_budget"
    return dg.Failure(
        description=f"{exc} ({spent_today} credits recorded today across all runs)",
        allow_retries=False,
        metadata={
            "stop": stop,
            "credits_spent_today": spent_today,
            "credits_spent_by_this_step": exc.spent,
            "budget": exc.budget if exc.budget is not None else "account balance",
        },
    )


@dg.asset(
    partitions_def=daily,
    group_name=GROUP,
    pool=API_POOL,
    retry_policy=CAPTURE_RETRY,
    kinds={"tikliveapi", "archive"},
    description="Each tracked account's profile, captured once a day and archived raw: the handle is resolved to its "
    "user id once (then cached, 1 credit saved per account and day), the profile's counters fetched every day.",
)
def account_profiles(
    context: dg.AssetExecutionContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    if (skipped := guard_partition(context, data_root, "account_profiles")) is not None:
        return skipped
    with capture_session(context, tiklive_api, archive_store, data_root, tracking) as session:
        report = AccountsReport()
        try:
            capture_profiles(session, report)
        except CreditBudgetExhausted as exc:
            raise _budget_failure(exc, session) from None
        return _finish(
            context,
            session,
            data_root,
            "account_profiles",
            {
                "profiles": report.profiles,
                "walks_already_complete": sum(report.skipped_complete.values()),
                "unavailable": dg.MetadataValue.json(report.unavailable),
                "left_for_next_run": dg.MetadataValue.json(report.failed),
            },
        )


@dg.asset(
    partitions_def=daily,
    group_name=GROUP,
    pool=API_POOL,
    retry_policy=CAPTURE_RETRY,
    kinds={"tikliveapi", "archive"},
    deps=[account_profiles],
    description="Finds new videos: the posts of tracked accounts, hashtags, searches and sounds, "
    "every page archived raw and its cursor saved after each page, so a rerun resumes. "
    "Each id is queued once, whatever lists it.",
)
def discovery_queue(
    context: dg.AssetExecutionContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    if (skipped := guard_partition(context, data_root, "discovery_queue")) is not None:
        return skipped
    with capture_session(context, tiklive_api, archive_store, data_root, tracking) as session:
        try:
            report = discover(session)
        except CreditBudgetExhausted as exc:
            raise _budget_failure(exc, session) from None
        for problem in report.drift:
            context.log.warning("paginator drift: %s", problem)
        return _finish(
            context,
            session,
            data_root,
            "discovery_queue",
            {
                "pages": report.pages,
                "ids_listed": report.listed,
                "items_without_id": report.items_without_id,
                "new_ids": report.total_new,
                "new_ids_by_source": dg.MetadataValue.json(dict(report.new_ids)),
                "walks_already_complete": report.skipped_complete,
                "drift": dg.MetadataValue.json(report.drift),
                "unavailable": dg.MetadataValue.json(report.unavailable),
                "left_for_next_run": dg.MetadataValue.json(report.failed),
            },
        )


@dg.asset(
    partitions_def=daily,
    group_name=GROUP,
    pool=API_POOL,
    retry_policy=CAPTURE_RETRY,
    kinds={"tikliveapi", "archive"},
    deps=[discovery_queue],
    description="Every queued video resolved once (its detail, 1 credit) and its MP4 and cover downloaded at once, "
    "before the signed media links expire; a photo post's images and sound instead of an MP4. A video that is gone "
    "is dead-lettered after one answer: never paid for twice.",
)
def archived_videos(
    context: dg.AssetExecutionContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    if (skipped := guard_partition(context, data_root, "archived_videos")) is not None:
        return skipped
    with capture_session(context, tiklive_api, archive_store, data_root, tracking) as session:
        report = archive_pending(session, run_id=context.run.run_id)
        if report.systemic_error:
            spooled = session.archive.spooled
            kept = (
                f" {len(spooled)} paid response(s) the store could not take are kept in the spool "
                f"({session.archive.spool.describe()}) and go to the store first at the next run."
                if spooled and session.archive.spool is not None
                else ""
            )
            raise dg.Failure(
                description=f"capture stopped: {report.systemic_error}. No id was blamed; the queue is intact and the "
                "next run resumes once the cause is fixed (a revoked TIKLIVE_API_KEY, the store, the disk, the "
                f"network).{kept}",
                allow_retries=False,
                metadata={
                    "videos_downloaded": report.downloaded,
                    "credits_spent": session.credits_spent,
                    "responses_spooled": len(spooled),
                    "left_pending_or_claimed": dg.MetadataValue.json(report.left),
                },  # ids left, and why
            )
        if report.budget_stop:
            failure = _budget_failure(report.budget_stop, session)
            failure.metadata["videos_downloaded"] = dg.MetadataValue.int(report.downloaded)
            failure.metadata["left_pending_or_claimed"] = dg.MetadataValue.json(report.left)  # ids left, and why
            raise failure
        return _finish(
            context,
            session,
            data_root,
            "archived_videos",
            {
                "videos_resolved": report.resolved,
                "videos_downloaded": report.downloaded,
                "photo_posts_downloaded": report.photo_posts,
                "re_resolved_expired_urls": report.re_resolved,
                "video_bytes": report.bytes,
                "dead_letters_by_reason": dg.MetadataValue.json(dict(report.dead)),
                "failed_left_in_queue": dg.MetadataValue.json(report.failed[:50]),
                "left_pending_or_claimed": dg.MetadataValue.json(report.left),  # ids still queued or claimed, and why
            },
        )


@dg.asset(
    partitions_def=daily,
    group_name=GROUP,
    pool=API_POOL,
    retry_policy=CAPTURE_RETRY,
    kinds={"tikliveapi", "archive"},
    deps=[account_profiles],
    description="Followers and following of each tracked account, paged by time and archived raw per day; the "
    "warehouse turns them into follow edges.",
)
def follow_graph(
    context: dg.AssetExecutionContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    if (skipped := guard_partition(context, data_root, "follow_graph")) is not None:
        return skipped
    with capture_session(context, tiklive_api, archive_store, data_root, tracking) as session:
        report = AccountsReport()
        try:
            capture_follow_graph(session, report)
        except CreditBudgetExhausted as exc:
            raise _budget_failure(exc, session) from None
        return _finish(
            context,
            session,
            data_root,
            "follow_graph",
            {
                "pages": report.follow_pages,
                "walks_already_complete": sum(report.skipped_complete.values()),
                "edges": report.follow_edges,
                "drift": dg.MetadataValue.json(report.drift),
                "unavailable": dg.MetadataValue.json(report.unavailable),
                "left_for_next_run": dg.MetadataValue.json(report.failed),
            },
        )


@dg.asset(
    partitions_def=daily,
    group_name=GROUP,
    pool=API_POOL,
    retry_policy=CAPTURE_RETRY,
    kinds={"tikliveapi", "archive"},
    deps=[discovery_queue],
    description="Comments and replies on each tracked account's newest videos, archived raw per day with a saved "
    "cursor per video.",
)
def post_comments(
    context: dg.AssetExecutionContext,
    tiklive_api: TikLiveApiResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    if (skipped := guard_partition(context, data_root, "post_comments")) is not None:
        return skipped
    with capture_session(context, tiklive_api, archive_store, data_root, tracking) as session:
        report = AccountsReport()
        try:
            capture_comments(session, report)
        except CreditBudgetExhausted as exc:
            raise _budget_failure(exc, session) from None
        return _finish(
            context,
            session,
            data_root,
            "post_comments",
            {
                "pages": report.comment_pages,
                "walks_already_complete": sum(report.skipped_complete.values()),
                "comments": report.comments,
                "drift": dg.MetadataValue.json(report.drift),
                "unavailable": dg.MetadataValue.json(report.unavailable),
                "left_for_next_run": dg.MetadataValue.json(report.failed),
            },
        )


CAPTURE_ASSETS = [account_profiles, discovery_queue, archived_videos, follow_graph, post_comments]

"""Capture assets, partitioned by ingest date: the listing, detail and download workers as software-defined assets.

Every response is archived raw before it is parsed. The API only knows the present, so only today's partition
fetches: a past day that is already archived is reported as such and left unchanged; one that is not fails
with the reason (the warehouse can still be rebuilt from whatever the archive holds).

Each asset is declared by ``capture_asset``: its name, what it archives, its description and the work it does in
a capture session; the guard of past days, the session (``CaptureResources.session``: preflight, errors a retry
cannot fix, credit stops) and the account of the run in the metadata are the same for all five.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import dagster as dg

from tiklive_assets.capture.accounts import AccountsReport, capture_comments, capture_follow_graph, capture_profiles
from tiklive_assets.capture.discovery import DiscoveryReport, discover
from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.capture.videos import archive_pending
from tiklive_assets.defs.partitions import daily
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    CaptureResources,
    DataRootResource,
    TikLiveApiResource,
    TrackingConfigResource,
    budget_failure,
)
from tiklive_assets.storage.keys import RAW_PREFIX
from tiklive_assets.tikliveapi import endpoints as api
from tiklive_assets.tikliveapi.endpoints import Endpoint

API_POOL = "tiklive_api"
GROUP = "capture"
CAPTURE_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
Metadata = dict[str, Any]


def guard_partition(
    context: dg.AssetExecutionContext, data_root: DataRootResource, asset: str
) -> dg.MaterializeResult | None:
    """Today fetches. A past day already captured changes nothing; one never captured cannot be fetched now."""
    day = date.fromisoformat(context.partition_key)
    today = datetime.now(UTC).date()
    if day == today:
        return None
    with data_root.state() as state:
        done = state.get_value(f"asset-complete:{asset}:{day.isoformat()}")
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


def archived_today(session: CaptureSession, endpoints: Sequence[Endpoint], media: Sequence[str] = ()) -> int:
    """Objects the archive holds on the session's day under the raw folders of ``endpoints`` and the ``media``
    folders (``videos/dt={day}/``): listings only, no GETs."""
    day = session.day
    prefixes = [f"{RAW_PREFIX}/{day:%Y/%m/%d}/{endpoint.name}/" for endpoint in endpoints]
    prefixes += [p.format(day=day.isoformat()) for p in media]
    return sum(1 for prefix in prefixes for _ in session.store.list(prefix))


def rerun_status(
    context: dg.AssetExecutionContext, session: CaptureSession, asset: str, archived: int, metadata: Metadata
) -> Metadata:
    """Say what a run did, above all a rerun of a day already captured: finished walks are never fetched again
    (credits are money), so a rerun fetches only what is new since, often nothing."""
    already = session.state.get_value(f"asset-complete:{asset}:{session.day.isoformat()}") is not None
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


def finish(session: CaptureSession, asset: str, metadata: Metadata) -> dg.MaterializeResult:
    """Mark the asset's day captured and say what the run spent, wrote, spooled and left in the queue."""
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


Capture = Callable[[dg.AssetExecutionContext, CaptureSession], Metadata]


def capture_asset(
    *,
    archives: Sequence[Endpoint],
    description: str,
    deps: Sequence[dg.AssetsDefinition] = (),
    media: Sequence[str] = (),
) -> Callable[[Capture], dg.AssetsDefinition]:
    """Declare a capture asset named after the decorated function, which does the asset's own work in a session
    and returns what to report. Today's partition only; the report adds what the run spent and wrote and what the
    archive holds today under ``archives`` (the endpoints' raw folders) and ``media`` (folders of the day)."""
    return partial(_capture_asset, archives=archives, description=description, deps=deps, media=media)


def _capture_asset(
    capture: Capture,
    *,
    archives: Sequence[Endpoint],
    description: str,
    deps: Sequence[dg.AssetsDefinition],
    media: Sequence[str],
) -> dg.AssetsDefinition:
    name = capture.__name__

    @dg.asset(
        name=name,
        partitions_def=daily,
        group_name=GROUP,
        pool=API_POOL,
        retry_policy=CAPTURE_RETRY,
        kinds={"tikliveapi", "archive"},
        deps=list(deps),
        description=description,
    )
    def _capture(
        context: dg.AssetExecutionContext,
        tiklive_api: TikLiveApiResource,
        archive_store: ArchiveStoreResource,
        data_root: DataRootResource,
        tracking: TrackingConfigResource,
    ) -> dg.MaterializeResult:
        if (skipped := guard_partition(context, data_root, name)) is not None:
            return skipped
        with CaptureResources(tiklive_api, archive_store, data_root, tracking).session(context) as session:
            metadata = capture(context, session)
            archived = archived_today(session, archives, media)
            return finish(session, name, {**metadata, **rerun_status(context, session, name, archived, metadata)})

    return _capture


def _walks(report: AccountsReport | DiscoveryReport, counts: Metadata, drifts: bool = True) -> Metadata:
    """What every walk reports beside its own ``counts``: the walks already complete (not fetched again), the
    paginator drift, what was unavailable and what is left for the next run."""
    return {
        **counts,
        "walks_already_complete": report.walks_complete,
        **({"drift": dg.MetadataValue.json(report.drift)} if drifts else {}),  # a profile is one answer: no drift
        "unavailable": dg.MetadataValue.json(report.unavailable),
        "left_for_next_run": dg.MetadataValue.json(report.failed),
    }


def _accounts(
    context: dg.AssetExecutionContext,
    session: CaptureSession,
    capture: Callable[[CaptureSession, AccountsReport, str | None], None],
    counts: Callable[[AccountsReport], Metadata],
    drifts: bool = True,
) -> Metadata:
    """Run one of the tracked accounts' captures (profiles, follow graph, comments) and report its ``counts``; its
    claims are held under the Dagster run's id, so `tiklive status` names the run that holds a walk."""
    report = AccountsReport()
    capture(session, report, context.run.run_id)
    return _walks(report, counts(report), drifts)


@capture_asset(
    archives=[api.USERID, api.USERINFO_BY_ID],
    description="Each tracked account's profile, captured once a day and archived raw: the handle is resolved to its "
    "user id once (then cached, 1 credit saved per account and day), the profile's counters fetched every day.",
)
def account_profiles(context: dg.AssetExecutionContext, session: CaptureSession) -> Metadata:
    return _accounts(context, session, capture_profiles, lambda r: {"profiles": r.profiles}, drifts=False)


@capture_asset(
    archives=[api.USER_POSTS, api.CHALLENGE_POSTS, api.SEARCH_VIDEO, api.MUSIC_POSTS],
    deps=[account_profiles],
    description="Finds new videos: the posts of tracked accounts, hashtags, searches and sounds, "
    "every page archived raw and its cursor saved after each page, so a rerun resumes. "
    "Each id is queued once, whatever lists it.",
)
def discovery_queue(context: dg.AssetExecutionContext, session: CaptureSession) -> Metadata:
    report = discover(session, run_id=context.run.run_id)
    for problem in report.drift:
        context.log.warning("paginator drift: %s", problem)
    counts = {
        "pages": report.pages,
        "ids_listed": report.listed,
        "items_without_id": report.items_without_id,
        "new_ids": report.total_new,
        "new_ids_by_source": dg.MetadataValue.json(dict(report.new_ids)),
    }
    return _walks(report, counts)


@capture_asset(
    archives=[api.POST_DETAIL],
    media=["videos/dt={day}/", "covers/dt={day}/"],
    deps=[discovery_queue],
    description="Every queued video resolved once (its detail, 1 credit) and its MP4 and cover downloaded at once, "
    "before the signed media links expire; a photo post's images and sound instead of an MP4. A video that is gone "
    "is dead-lettered after one answer: never paid for twice.",
)
def archived_videos(context: dg.AssetExecutionContext, session: CaptureSession) -> Metadata:
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
        raise budget_failure(
            report.budget_stop,
            session,
            {
                "videos_downloaded": dg.MetadataValue.int(report.downloaded),
                "left_pending_or_claimed": dg.MetadataValue.json(report.left),  # ids left, and why
            },
        )
    return {
        "videos_resolved": report.resolved,
        "videos_downloaded": report.downloaded,
        "photo_posts_downloaded": report.photo_posts,
        "re_resolved_expired_urls": report.re_resolved,
        "video_bytes": report.bytes,
        "dead_letters_by_reason": dg.MetadataValue.json(dict(report.dead)),
        "failed_left_in_queue": dg.MetadataValue.json(report.failed[:50]),
        "left_pending_or_claimed": dg.MetadataValue.json(report.left),  # ids still queued or claimed, and why
    }


@capture_asset(
    archives=[api.USER_FOLLOWERS, api.USER_FOLLOWING],
    deps=[account_profiles],
    description="Followers and following of each tracked account, paged by time and archived raw per day; the "
    "warehouse turns them into follow edges.",
)
def follow_graph(context: dg.AssetExecutionContext, session: CaptureSession) -> Metadata:
    return _accounts(
        context, session, capture_follow_graph, lambda r: {"pages": r.follow_pages, "edges": r.follow_edges}
    )


@capture_asset(
    archives=[api.POST_COMMENTS, api.POST_COMMENT_REPLIES],
    deps=[discovery_queue],
    description="Comments and replies on each tracked account's newest videos, archived raw per day with a saved "
    "cursor per video.",
)
def post_comments(context: dg.AssetExecutionContext, session: CaptureSession) -> Metadata:
    return _accounts(context, session, capture_comments, lambda r: {"pages": r.comment_pages, "comments": r.comments})


CAPTURE_ASSETS = [account_profiles, discovery_queue, archived_videos, follow_graph, post_comments]

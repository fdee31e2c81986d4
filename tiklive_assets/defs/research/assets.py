"""Research API assets: videos by CREATE date (windows of ≤30 days), user data, and the research tables.

``research_video_archive`` is partitioned by create date with a backfill policy of at most 30 partitions a
run, so a backfill launched from the asset page over a year runs 13 windows, one search each, not 365. Inside
a run the selected partitions are packed into as few windows as the 30-day limit allows. Every response is
archived raw; progress per window lives in the state database, so a rerun after a quota stop, an expired
``search_id`` or a crash resumes instead of starting over. The quota left today is in the metadata.

When collection fails (credentials, retries running out), what the run archived before the failure is loaded into
the research tables before the failure is reported: nothing collected is thrown away.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.defs.research.partitions import create_date, window_backfill
from tiklive_assets.defs.research.resources import TikTokResearchResource
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import ResearchClient, build_query
from tiklive_assets.research.collect import CollectOptions, collect_comments, collect_users, collect_videos
from tiklive_assets.research.errors import ResearchError
from tiklive_assets.research.quota import QuotaLedger, ResearchState
from tiklive_assets.research.warehouse import load_research_warehouse
from tiklive_assets.research.windows import pack_days
from tiklive_assets.storage import ObjectStore
from tiklive_assets.tracking import ResearchConfig

RESEARCH_POOL = "tiktok_research"
DUCKDB_POOL = "duckdb_writer"
GROUP = "research"


class ResearchRunConfig(dg.Config):
    refresh: bool = False  # collect windows already done again (a new generation: fresh counters)
    pause_seconds: float | None = None  # override research.page_pause_seconds for this run
    with_comments: bool = False  # also collect the comments of the videos this run collected


@dataclass
class _Session:
    client: ResearchClient
    archive: ResearchArchive
    state: ResearchState
    ledger: QuotaLedger
    store: ObjectStore
    config: ResearchConfig


def _research_config(tracking: TrackingConfigResource) -> ResearchConfig:
    research = tracking.load().research
    if research is None or not (research.usernames or research.hashtags or research.keywords or research.regions):
        raise dg.Failure(
            description="no `research` section with usernames (or hashtags/keywords/regions) in TIKLIVE_CONFIG: add "
            "`research: {usernames: [tagesschau, 20minuten]}` to collect from the TikTok Research API",
            allow_retries=False,
        )
    return research


@contextmanager
def research_session(
    tiktok_research: TikTokResearchResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> Iterator[_Session]:
    config = _research_config(tracking)
    db = data_root.open_state()
    state = ResearchState(db)
    ledger = QuotaLedger(state, config.daily_quota, config.run_request_cap)
    store = archive_store.open()
    archive = ResearchArchive(store, ledger.today())
    client = tiktok_research.client(quota=ledger, on_response=archive.write, max_attempts=config.max_retries + 1)
    try:
        yield _Session(client, archive, state, ledger, store, config)
    finally:
        client.close()
        db.close()


def _options(config: ResearchConfig, run: ResearchRunConfig) -> CollectOptions:
    pause = run.pause_seconds if run.pause_seconds is not None else config.page_pause_seconds
    return CollectOptions(pause=pause, max_count=config.max_count, refresh=run.refresh)


def _common_metadata(session: _Session) -> dict:
    return {
        "requests_spent": session.client.meter.total,
        "requests_by_code": dg.MetadataValue.json(dict(session.client.meter.by_code)),
        "retries": session.client.meter.retried,
        "retries_by_code": dg.MetadataValue.json(dict(session.client.meter.retries)),
        "quota_left_today": session.ledger.left_today(),
        "objects_written": session.archive.written.get("created", 0),
        "bytes_written": session.archive.bytes_written,
        "archive": session.store.describe(),
    }


@dg.asset(
    partitions_def=create_date,
    backfill_policy=window_backfill,
    pool=RESEARCH_POOL,
    group_name=GROUP,
    kinds={"tiktok", "archive"},
    description="Videos of the configured query by CREATE date from the TikTok Research API, archived raw under "
    "research-raw/ (≤30-day windows, cursor + search_id pages, quota ledger, resumable).",
)
def research_video_archive(
    context: dg.AssetExecutionContext,
    config: ResearchRunConfig,
    tiktok_research: TikTokResearchResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    windows = pack_days(context.partition_keys)
    with research_session(tiktok_research, archive_store, data_root, tracking) as session:
        rc = session.config
        query = build_query(rc.usernames, hashtags=rc.hashtags, keywords=rc.keywords, regions=rc.regions)
        options = _options(rc, config)

        def collect():
            report = collect_videos(session.client, session.archive, session.state, query, windows, options)
            comments = (
                collect_comments(session.client, report.video_ids, options=options)
                if config.with_comments and report.video_ids and not report.stopped
                else None
            )
            return {"report": report, "comments": comments}

        done = _collect_or_load(context, session, collect)
        report, comments = done["report"], done["comments"]
        metadata = {
            **_common_metadata(session),
            "windows": dg.MetadataValue.json([str(w) for w in windows]),
            "windows_already_done": sum(1 for w in report.windows if w.status == "already done"),
            "pages": report.pages,
            "videos_by_user": dg.MetadataValue.json(dict(report.videos_by_user)),
            "dagster/row_count": sum(report.videos_by_user.values()),
            "transient_retries": report.retries,
            "window_restarts": report.restarts,
            "query_hash": report.scope,
        }
        if comments is not None:
            metadata["comments"] = comments.total
            metadata["comment_warnings"] = dg.MetadataValue.json(comments.warnings)
            report.stopped = report.stopped or comments.stopped
        if report.stopped:
            context.log.warning("stopped cleanly: %s", report.stopped)
            raise dg.Failure(
                description=f"{report.stopped}; stopped at "
                + (f"window {report.stopped_at[0]} cursor {report.stopped_at[1]}" if report.stopped_at else "comments")
                + ". "
                "Materialize the same partitions again after 00:00 UTC: the run resumes where this one stopped.",
                allow_retries=False,
                metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    pool=RESEARCH_POOL,
    group_name=GROUP,
    kinds={"tiktok", "archive"},
    description="User info, followers and following of the configured usernames from the Research API, archived raw.",
)
def research_user_archive(
    context: dg.AssetExecutionContext,
    config: ResearchRunConfig,
    tiktok_research: TikTokResearchResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    with research_session(tiktok_research, archive_store, data_root, tracking) as session:
        rc = session.config
        report = _collect_or_load(
            context,
            session,
            lambda: collect_users(
                session.client,
                rc.usernames if rc.users else [],
                followers=rc.followers,
                following=rc.following,
                max_follow_pages=rc.follow_max_pages,
                options=_options(rc, config),
            ),
        )
        metadata = {
            **_common_metadata(session),
            "profiles": report.profiles,
            "followers": dg.MetadataValue.json(dict(report.followers)),
            "following": dg.MetadataValue.json(dict(report.following)),
            "unavailable": dg.MetadataValue.json(report.unavailable),
            "warnings": dg.MetadataValue.json(report.warnings),
            "transient_retries": report.retries,
        }
        for who, why in report.warnings.items():
            context.log.warning("%s: %s", who, why)
        if report.stopped:
            raise dg.Failure(description=report.stopped, allow_retries=False, metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[research_video_archive, research_user_archive],
    pool=DUCKDB_POOL,
    group_name=GROUP,
    kinds={"warehouse"},
    description="research_videos (keyed on id), research_video_counters (per capture day), research_users, "
    "research_follows and research_comments, rebuilt from the research-raw/ archive alone into the main warehouse "
    "(ids as text, since a float loses their digits; NUL characters stripped, since Postgres rejects them).",
)
def research_tables(context: dg.AssetExecutionContext, archive_store: ArchiveStoreResource) -> dg.MaterializeResult:
    report = load_research_warehouse(archive_store.open(), settings.warehouse_url())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.rows.get("research_videos", 0),
            "rows": dg.MetadataValue.json(report.rows),
            "objects_read": report.objects_read,
            "objects_skipped": report.objects_skipped,
            "pages_superseded": report.pages_superseded,
            "nul_stripped": report.nul_stripped,
            "nulled": dg.MetadataValue.json(report.nulled),
            "target": report.target,
        }
    )


def _collect_or_load(context: dg.AssetExecutionContext, session: _Session, collect: Callable[[], dict]) -> dict:
    """Run ``collect``; if it raises, load what the run archived before it into the research tables, then fail
    with the error and the figures (the archive is written first, so the pages are there to load)."""
    try:
        return collect()
    except ResearchError as exc:
        metadata = _common_metadata(session)
        try:
            loaded = load_research_warehouse(session.store, settings.warehouse_url())
            metadata["loaded_rows"] = dg.MetadataValue.json(loaded.rows)
            metadata["nul_stripped"] = loaded.nul_stripped
        except Exception as load_exc:  # never hide the collection error behind a load error
            logging.getLogger(__name__).warning("loading what was archived failed too: %s", load_exc)
            metadata["load_error"] = str(load_exc)
        raise dg.Failure(
            description=f"{exc}. What this run archived before the error is loaded into the research tables; "
            "materialize again to resume.",
            metadata=metadata,
        ) from exc


RESEARCH_ASSETS = [research_video_archive, research_user_archive, research_tables]

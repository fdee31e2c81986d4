"""Research API assets: videos by CREATE date (windows of ≤30 days), user data, and the research tables.

``research_video_archive`` is partitioned by create date with a backfill policy of at most 30 partitions a
run, so a backfill launched from the asset page over a year runs 13 windows, one search each, not 365. Inside
a run the selected partitions are packed into as few windows as the 30-day limit allows. Every response is
archived raw; progress per window lives in the state database, so a rerun after a quota stop, an expired
``search_id`` or a crash resumes instead of starting over. The quota left today is in the metadata.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from tiklive_assets.config import ResearchConfig
from tiklive_assets.defs.research.partitions import create_date, window_backfill
from tiklive_assets.defs.research.resources import TikTokResearchResource
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import ResearchClient, build_query
from tiklive_assets.research.collect import CollectOptions, collect_users, collect_videos
from tiklive_assets.research.quota import QuotaLedger, ResearchState
from tiklive_assets.research.warehouse import default_target, load_research_warehouse
from tiklive_assets.research.windows import pack_days
from tiklive_assets.storage import ObjectStore

RESEARCH_POOL = "tiktok_research"
DUCKDB_POOL = "duckdb_writer"
GROUP = "research"


class ResearchRunConfig(dg.Config):
    refresh: bool = False  # collect windows already done again (a new generation: fresh counters)
    pause_seconds: float | None = None  # override research.page_pause_seconds for this run


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
def research_session(tiktok_research: TikTokResearchResource, archive_store: ArchiveStoreResource,
                     data_root: DataRootResource, tracking: TrackingConfigResource) -> Iterator[_Session]:
    config = _research_config(tracking)
    db = data_root.open_state()
    state = ResearchState(db)
    ledger = QuotaLedger(state, config.daily_quota, config.run_request_cap)
    store = archive_store.open()
    archive = ResearchArchive(store, ledger.today())
    client = tiktok_research.client(quota=ledger, on_response=archive.write)
    try:
        yield _Session(client, archive, state, ledger, store, config)
    finally:
        client.close()
        db.close()


def _options(config: ResearchConfig, run: ResearchRunConfig) -> CollectOptions:
    pause = run.pause_seconds if run.pause_seconds is not None else config.page_pause_seconds
    return CollectOptions(pause=pause, max_count=config.max_count, max_retries=config.max_retries, refresh=run.refresh)


def _common_metadata(session: _Session) -> dict:
    return {
        "requests_spent": session.client.meter.total,
        "requests_by_code": dg.MetadataValue.json(dict(session.client.meter.by_code)),
        "quota_left_today": session.ledger.left_today(),
        "objects_written": session.archive.written.get("created", 0),
        "bytes_written": session.archive.bytes_written,
        "archive": session.store.describe(),
    }


@dg.asset(
    partitions_def=create_date, backfill_policy=window_backfill, pool=RESEARCH_POOL, group_name=GROUP,
    kinds={"tiktok"},
    description="Videos of the configured query by CREATE date from the TikTok Research API, archived raw under "
    "research-raw/ (≤30-day windows, cursor + search_id pages, quota ledger, resumable).",
)
def research_video_archive(context: dg.AssetExecutionContext, config: ResearchRunConfig,
                           tiktok_research: TikTokResearchResource, archive_store: ArchiveStoreResource,
                           data_root: DataRootResource, tracking: TrackingConfigResource) -> dg.MaterializeResult:
    windows = pack_days(context.partition_keys)
    with research_session(tiktok_research, archive_store, data_root, tracking) as session:
        rc = session.config
        query = build_query(rc.usernames, hashtags=rc.hashtags, keywords=rc.keywords, regions=rc.regions)
        report = collect_videos(session.client, session.archive, session.state, query, windows, _options(rc, config))
        metadata = {
            **_common_metadata(session),
            "windows": dg.MetadataValue.json([str(w) for w in windows]),
            "windows_already_done": sum(1 for w in report.windows if w.status == "already done"),
            "pages": report.pages,
            "videos_by_user": dg.MetadataValue.json(dict(report.videos_by_user)),
            "dagster/row_count": sum(report.videos_by_user.values()),
            "internal_error_retries": report.retries,
            "window_restarts": report.restarts,
            "query_hash": report.scope,
        }
        if report.stopped:
            context.log.warning("stopped cleanly: %s", report.stopped)
            raise dg.Failure(
                description=f"{report.stopped}; stopped at window {report.stopped_at[0]} cursor {report.stopped_at[1]}. "
                "Materialize the same partitions again after 00:00 UTC: the run resumes where this one stopped.",
                allow_retries=False, metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    pool=RESEARCH_POOL, group_name=GROUP, kinds={"tiktok"},
    description="User info, followers and following of the configured usernames from the Research API, archived raw.",
)
def research_user_archive(context: dg.AssetExecutionContext, config: ResearchRunConfig,
                          tiktok_research: TikTokResearchResource, archive_store: ArchiveStoreResource,
                          data_root: DataRootResource, tracking: TrackingConfigResource) -> dg.MaterializeResult:
    with research_session(tiktok_research, archive_store, data_root, tracking) as session:
        rc = session.config
        report = collect_users(session.client, rc.usernames if rc.users else [], followers=rc.followers,
                               following=rc.following, max_follow_pages=rc.follow_max_pages, options=_options(rc, config))
        metadata = {
            **_common_metadata(session),
            "profiles": report.profiles,
            "followers": dg.MetadataValue.json(dict(report.followers)),
            "following": dg.MetadataValue.json(dict(report.following)),
            "unavailable": dg.MetadataValue.json(report.unavailable),
        }
        if report.stopped:
            raise dg.Failure(description=report.stopped, allow_retries=False, metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[research_video_archive, research_user_archive], pool=DUCKDB_POOL, group_name=GROUP, kinds={"duckdb"},
    description="research_videos (keyed on id), research_video_counters (per capture day), research_users and "
    "research_follows, rebuilt from the research-raw/ archive alone into the main warehouse.",
)
def research_tables(context: dg.AssetExecutionContext, archive_store: ArchiveStoreResource) -> dg.MaterializeResult:
    report = load_research_warehouse(archive_store.open(), default_target())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": report.rows.get("research_videos", 0),
        "rows": dg.MetadataValue.json(report.rows),
        "objects_read": report.objects_read,
        "objects_skipped": report.objects_skipped,
        "pages_superseded": report.pages_superseded,
        "target": report.target,
    })


RESEARCH_ASSETS = [research_video_archive, research_user_archive, research_tables]

"""Research API assets: videos by CREATE date (windows of ≤30 days), user data, and the research tables.

``research_video_archive`` is partitioned by create date with a backfill policy of at most 30 partitions a
run, so a backfill launched from the asset page over a year runs 13 windows, one search each, not 365. Inside
a run the selected partitions are packed into as few windows as the 30-day limit allows. Every response is
archived raw; progress per window lives in the state database, so a rerun after a quota stop, an expired
``search_id`` or a crash resumes instead of starting over. The quota left today is in the metadata.

What to collect is the tracking file's ``research:`` section; a run's config may name its own query and limits
instead (``tiklive research`` passes its options so), and then needs no tracking file.

When collection fails (credentials, retries running out), what the run archived before the failure is loaded into
the research tables before the failure is reported: nothing collected is thrown away. A quota stop fails the run
without retries, its metadata's ``stop`` saying where it stopped; the next run resumes there.
"""

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from tiklive_assets import progress, settings
from tiklive_assets.defs.research.partitions import create_date, window_backfill
from tiklive_assets.defs.research.resources import TikTokResearchResource
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import ResearchClient, build_query, query_hash
from tiklive_assets.research.collect import (
    CollectOptions,
    CollectReport,
    collect_comments,
    collect_users,
    collect_videos,
)
from tiklive_assets.research.errors import ResearchError
from tiklive_assets.research.quota import QuotaLedger, ResearchState
from tiklive_assets.research.warehouse import load_research_warehouse
from tiklive_assets.research.windows import Window, pack_days
from tiklive_assets.storage import ObjectStore
from tiklive_assets.tracking import ResearchConfig

RESEARCH_POOL = "tiktok_research"
DUCKDB_POOL = "duckdb_writer"
GROUP = "research"
Metadata = dict[str, Any]
QUERY_TERMS = ("usernames", "hashtags", "keywords", "regions")
OVERRIDES = (*QUERY_TERMS, "users", "daily_quota", "run_request_cap")  # run config fields named as in the file


class ResearchTablesConfig(dg.Config):
    warehouse_url: str | None = Field(
        None,
        description="load the research tables into this DuckDB file or postgresql:// URL (default: "
        "TIKLIVE_WAREHOUSE_URL, else TIKLIVE_HOME/warehouse.duckdb)",
    )

    def target(self) -> str:
        return self.warehouse_url or settings.warehouse_url()


class ResearchRunConfig(ResearchTablesConfig):
    refresh: bool = Field(False, description="collect windows already done again (a new generation: fresh counters)")
    pause_seconds: float | None = Field(None, description="instead of research.page_pause_seconds, this run")
    with_comments: bool = Field(False, description="also collect the comments of the videos this run collected")
    per_user: bool = Field(False, description="one EQ search per username instead of one IN search for all")
    usernames: list[str] | None = Field(None, description="instead of research.usernames, this run")
    hashtags: list[str] | None = Field(None, description="instead of research.hashtags, this run")
    keywords: list[str] | None = Field(None, description="instead of research.keywords, this run")
    regions: list[str] | None = Field(None, description="instead of research.regions, this run")
    users: bool | None = Field(None, description="instead of research.users: collect user info and follows")
    daily_quota: int | None = Field(None, description="instead of research.daily_quota, this run")
    run_request_cap: int | None = Field(None, description="instead of research.run_request_cap, this run")

    def research(self, tracking: TrackingConfigResource) -> ResearchConfig:
        """The tracking file's ``research:`` section with this run's values in place of its own; without a tracking
        file, a run that names its query uses the defaults for the rest."""
        overrides = {name: getattr(self, name) for name in OVERRIDES if getattr(self, name) is not None}
        names_query = any(overrides.get(term) for term in QUERY_TERMS)
        if names_query and not Path(tracking.path or settings.config_path()).exists():
            base = ResearchConfig()
        else:
            base = tracking.load().research or ResearchConfig()
        research = ResearchConfig.model_validate({**base.model_dump(), **overrides})
        if not any(getattr(research, term) for term in QUERY_TERMS):
            raise dg.Failure(
                description="no `research` section with usernames (or hashtags/keywords/regions) in TIKLIVE_CONFIG: "
                "add `research: {usernames: [tagesschau, 20minuten]}` to collect from the TikTok Research API",
                allow_retries=False,
            )
        return research

    def options(self, research: ResearchConfig) -> CollectOptions:
        pause = self.pause_seconds if self.pause_seconds is not None else research.page_pause_seconds
        return CollectOptions(pause=pause, max_count=research.max_count, refresh=self.refresh)

    def queries(self, rc: ResearchConfig) -> list[dict[str, Any]]:
        """One search for every username, or one a username (``per_user``), with the same filters."""
        groups = [[u] for u in rc.usernames] if self.per_user and rc.usernames else [rc.usernames]
        return [build_query(g, hashtags=rc.hashtags, keywords=rc.keywords, regions=rc.regions) for g in groups]


@dataclass
class _Session:
    client: ResearchClient
    archive: ResearchArchive
    state: ResearchState
    ledger: QuotaLedger
    store: ObjectStore
    config: ResearchConfig
    run: ResearchRunConfig


@dataclass
class _Outcome:
    """What a collection did (its metadata) and, when the quota stopped it, where."""

    metadata: Metadata
    stopped: str | None = None


@contextmanager
def research_session(
    run: ResearchRunConfig,
    tiktok_research: TikTokResearchResource,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> Iterator[_Session]:
    config = run.research(tracking)
    store = archive_store.open()
    with data_root.state() as db:
        state = ResearchState(db)
        ledger = QuotaLedger(state, config.daily_quota, config.run_request_cap)
        archive = ResearchArchive(store, ledger.today())
        client = tiktok_research.client(quota=ledger, on_response=archive.write, max_attempts=config.max_retries + 1)
        try:
            yield _Session(client, archive, state, ledger, store, config, run)
        finally:
            client.close()


def _common_metadata(session: _Session) -> Metadata:
    meter = session.client.meter
    return {
        "requests_spent": meter.total,
        "requests_by_code": dg.MetadataValue.json(dict(meter.by_code)),
        "requests_by_endpoint": dg.MetadataValue.json(dict(meter.by_endpoint)),
        "token_requests": meter.token_requests,
        "retries": meter.retried,
        "retries_by_code": dg.MetadataValue.json(dict(meter.retries)),
        "quota_left_today": session.ledger.left_today(),
        "objects_written": session.archive.written.get("created", 0),
        "bytes_written": session.archive.bytes_written,
        "archive": session.store.describe(),
    }


def _collect_or_load(
    context: dg.AssetExecutionContext, session: _Session, collect: Callable[[], _Outcome]
) -> dg.MaterializeResult:
    """Run ``collect``. If it raises, load what the run archived before it into the research tables, then fail with
    the error and the figures (the archive is written first, so the pages are there to load); if the quota stopped
    it, fail without retries, saying where (the next run resumes there)."""
    try:
        outcome = collect()
    except ResearchError as exc:
        metadata = {**_common_metadata(session), "error": str(exc)}
        try:
            loaded = load_research_warehouse(session.store, session.run.target())
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
    metadata = {**_common_metadata(session), **outcome.metadata}
    if outcome.stopped:
        context.log.warning("stopped cleanly: %s", outcome.stopped)
        raise dg.Failure(
            description=f"{outcome.stopped}. Materialize again after 00:00 UTC (the daily quota) or in a new run "
            "(the per-run cap): it resumes where this run stopped.",
            allow_retries=False,
            metadata={**metadata, "stop": outcome.stopped},
        )
    return dg.MaterializeResult(metadata=metadata)


def _request_floor(session: _Session, query: dict[str, Any], windows: list[Window]) -> int:
    """Requests the done windows of ``query`` need at least: one each, and one per further page of results."""
    keys = {w.key for w in windows}
    scope = query_hash(query, session.run.options(session.config).fields)
    per_page = session.config.max_count
    return sum(
        max(1, math.ceil(w.videos / per_page))
        for w in session.state.windows(scope)
        if w.status == "done" and w.window_key in keys
    )


def _videos(context: dg.AssetExecutionContext, session: _Session) -> _Outcome:
    run, windows = session.run, pack_days(context.partition_keys)
    options, queries = run.options(session.config), run.queries(session.config)
    reports: list[CollectReport] = []
    with progress.task("windows", total=len(windows) * len(queries)) as done:
        for query in queries:
            report = collect_videos(
                session.client,
                session.archive,
                session.state,
                query,
                windows,
                options,
                on_page=lambda _window, page: None if page.has_more else done.advance(),
            )
            done.advance(sum(1 for w in report.windows if w.status == "already done"))
            reports.append(report)
            if report.stopped:
                break
    stopped = next((r for r in reports if r.stopped), None)
    by_user = sum((r.videos_by_user for r in reports), Counter())
    metadata: Metadata = {
        "windows": dg.MetadataValue.json([str(w) for w in windows]),
        "searches": len(queries),
        "windows_already_done": sum(1 for r in reports for w in r.windows if w.status == "already done"),
        "pages": sum(r.pages for r in reports),
        "videos_by_user": dg.MetadataValue.json(dict(by_user)),
        "dagster/row_count": sum(by_user.values()),
        "transient_retries": sum(r.retries for r in reports),
        "window_restarts": sum(r.restarts for r in reports),
        "query_hash": ", ".join(r.scope for r in reports),
        "request_floor": sum(_request_floor(session, q, windows) for q in queries),
    }
    if stopped is not None:
        at = stopped.stopped_at
        return _Outcome(
            metadata, f"{stopped.stopped}" + (f" (stopped at window {at[0]}, cursor {at[1]})" if at else "")
        )
    video_ids = [vid for r in reports for vid in r.video_ids]
    if not (run.with_comments and video_ids):
        return _Outcome(metadata)
    comments = collect_comments(session.client, video_ids, options=options)
    metadata["comments"] = comments.total
    metadata["comment_videos"] = comments.videos
    metadata["comment_warnings"] = dg.MetadataValue.json(comments.warnings)
    return _Outcome(metadata, comments.stopped)


def _users(context: dg.AssetExecutionContext, session: _Session) -> _Outcome:
    rc = session.config
    report = collect_users(
        session.client,
        rc.usernames if rc.users else [],
        followers=rc.followers,
        following=rc.following,
        max_follow_pages=rc.follow_max_pages,
        options=session.run.options(rc),
    )
    for who, why in report.warnings.items():
        context.log.warning("%s: %s", who, why)
    metadata: Metadata = {
        "profiles": report.profiles,
        "followers": dg.MetadataValue.json(dict(report.followers)),
        "following": dg.MetadataValue.json(dict(report.following)),
        "unavailable": dg.MetadataValue.json(report.unavailable),
        "warnings": dg.MetadataValue.json(report.warnings),
        "transient_retries": report.retries,
    }
    return _Outcome(metadata, report.stopped)


def _collecting_asset(
    name: str, description: str, collect: Callable[[dg.AssetExecutionContext, _Session], _Outcome], **extra: Any
) -> dg.AssetsDefinition:
    """A Research API asset: a session (client, quota ledger, archive, state), ``collect`` in it, and the account
    of the run (requests, retries, quota left, what was archived) in its metadata."""

    @dg.asset(
        name=name, pool=RESEARCH_POOL, group_name=GROUP, kinds={"tiktok", "archive"}, description=description, **extra
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: ResearchRunConfig,
        tiktok_research: TikTokResearchResource,
        archive_store: ArchiveStoreResource,
        data_root: DataRootResource,
        tracking: TrackingConfigResource,
    ) -> dg.MaterializeResult:
        with research_session(config, tiktok_research, archive_store, data_root, tracking) as session:
            return _collect_or_load(context, session, lambda: collect(context, session))

    return _asset


research_video_archive = _collecting_asset(
    "research_video_archive",
    "Videos of the configured query by CREATE date from the TikTok Research API, archived raw under "
    "research-raw/ (≤30-day windows, cursor + search_id pages, quota ledger, resumable).",
    _videos,
    partitions_def=create_date,
    backfill_policy=window_backfill,
)
research_user_archive = _collecting_asset(
    "research_user_archive",
    "User info, followers and following of the configured usernames from the Research API, archived raw.",
    _users,
)


@dg.asset(
    deps=[research_video_archive, research_user_archive],
    pool=DUCKDB_POOL,
    group_name=GROUP,
    kinds={"warehouse"},
    description="research_videos (keyed on id), research_video_counters (per capture day), research_users, "
    "research_follows and research_comments, rebuilt from the research-raw/ archive alone into the main warehouse "
    "(ids as text, since a float loses their digits; NUL characters stripped, since Postgres rejects them).",
)
def research_tables(config: ResearchTablesConfig, archive_store: ArchiveStoreResource) -> dg.MaterializeResult:
    report = load_research_warehouse(archive_store.open(), config.target())
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


RESEARCH_ASSETS = [research_video_archive, research_user_archive, research_tables]

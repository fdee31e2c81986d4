"""The compaction asset, its job and its daily schedule.

A raw response is a 2-5 KB gzip object; the cold storage classes bill every object as at least 128 KiB (or add
40 KiB of index to each) and charge a request per object for each lifecycle transition. Once a day is past the
hot period (``compaction.hot_days`` in tiklive.yaml, default 30 days), its raw objects are packed into one bundle
per endpoint, verified byte for byte, and only then deleted, so the day enters the warm and cold tiers as a few
large objects. Replay, erasure and legal holds read bundles as they read loose objects.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.partitions import DAILY_START, daily
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.defs.scheduling import asset_job, utc_schedule

GROUP = "compaction"
BACKFILL = dg.BackfillPolicy.single_run()
SHOWN_KEYS = 20  # held keys named in the metadata (the count is always complete)


@dg.asset(
    deps=[asset.key for asset in CAPTURE_ASSETS],
    partitions_def=daily,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"archive"},
)
def compact_archive(
    context: dg.AssetExecutionContext,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    """The day's raw archive (TikLiveAPI and Research API responses) packed into one bundle per endpoint, once
    the day is past the hot period (compaction.hot_days, default 30): cold storage classes bill each object as at
    least 128 KiB and each lifecycle transition per object, so thousands of 3 KB responses become a few large
    objects first. Each bundle is read back and checked byte for byte against the loose objects before they are
    deleted; keys under a legal hold stay loose, since deleting them is what a hold forbids. Rerunning a day packs
    only what is still loose. Metadata: objects and bytes before and after, and the monthly bill before and after
    in the warm and cold tiers of compaction.provider, with the one-time transition requests."""
    from tiklive_assets.compliance.compaction import compact_day, storage_costs
    from tiklive_assets.compliance.legal_hold import LegalHolds
    from tiklive_assets.storage.keys import RAW_PREFIX, RESEARCH_PREFIX

    config = tracking.load()
    days = [date.fromisoformat(key) for key in context.partition_keys]
    store = archive_store.open()
    with data_root.state() as state:
        holds = LegalHolds(state).snapshot()
    prices = config.storage_prices.provider(config.compaction.provider)
    newest = datetime.now(UTC).date() - timedelta(days=config.compaction.hot_days)
    totals: dict[str, Any] = {"objects_before": 0, "objects_after": 0, "objects_packed": 0, "held_left_loose": 0}
    for day in days:
        if not config.compaction.enabled or day > newest:
            reason = (
                "compaction.enabled is false in tiklive.yaml"
                if not config.compaction.enabled
                else f"still in the hot period: compacted from {day + timedelta(days=config.compaction.hot_days)}"
            )
            context.log.info("%s left as it is: %s", day, reason)
            context.add_asset_metadata({"status": f"not compacted: {reason}"}, partition_key=day.isoformat())
            continue
        results = [compact_day(store, day, holds=holds, archive_prefix=p) for p in (RAW_PREFIX, RESEARCH_PREFIX)]
        before = [s for r in results for s in r.sizes_before]
        after = [s for r in results for s in r.sizes_after]
        cost_before, cost_after = storage_costs(before, prices), storage_costs(after, prices)
        held = sorted(k for r in results for k in r.held_left_loose)
        for result in results:
            if result.objects_before:
                context.log.info(result.summary())
        figures: dict[str, Any] = {
            "status": "compacted",
            "objects_before": len(before),
            "objects_after": len(after),
            "bytes_before": sum(before),
            "bytes_after": sum(after),
            "objects_packed": sum(r.objects_packed for r in results),
            "bundles_written": dg.MetadataValue.json([k for r in results for k in r.bundles_written]),
            "loose_deleted": sum(r.loose_deleted for r in results),
            "held_left_loose": len(held),
            "held_keys": dg.MetadataValue.json(held[:SHOWN_KEYS]),
            "provider": config.compaction.provider,
            "warm_usd_month_before": round(cost_before.monthly["warm"], 6),
            "warm_usd_month_after": round(cost_after.monthly["warm"], 6),
            "cold_usd_month_before": round(cost_before.monthly["cold"], 6),
            "cold_usd_month_after": round(cost_after.monthly["cold"], 6),
            "transitions_usd_before": round(cost_before.transitions, 6),
            "transitions_usd_after": round(cost_after.transitions, 6),
        }
        context.add_asset_metadata(figures, partition_key=day.isoformat())
        for name in ("objects_before", "objects_after", "objects_packed"):
            totals[name] += figures[name]
        totals["held_left_loose"] += len(held)
    return dg.MaterializeResult(metadata={"run_days": f"{days[0]}..{days[-1]}", **totals})


compact_archive_job = asset_job(
    "compact_archive_job",
    dg.AssetSelection.assets(compact_archive),
    description="Pack one archive day (past the hot period) into one verified bundle per endpoint, then delete the "
    "loose objects it holds; legal holds keep their keys loose.",
)


@utc_schedule(
    compact_archive_job,
    "15 2 * * *",
    name="daily_compaction_schedule",
    description="Every day at 02:15 UTC, after the warehouse load: compacts the day that just left the hot period "
    "(compaction.hot_days in tiklive.yaml, default 30 days ago), before the lifecycle rules move it to the warm "
    "tier, so it is tiered as a few bundles instead of thousands of small objects.",
)
def daily_compaction_schedule(
    context: dg.ScheduleEvaluationContext, tracking: TrackingConfigResource
) -> dg.RunRequest | dg.SkipReason:
    from tiklive_assets.tracking import ConfigError

    try:
        config = tracking.load()
    except (ConfigError, OSError) as exc:
        return dg.SkipReason(f"tiklive.yaml cannot be read, so the hot period is unknown: {exc}")
    if not config.compaction.enabled:
        return dg.SkipReason("compaction.enabled is false in tiklive.yaml")
    day = context.scheduled_execution_time.astimezone(UTC).date() - timedelta(days=config.compaction.hot_days)
    if day < date.fromisoformat(DAILY_START):
        return dg.SkipReason(f"{day} is before the first archive day {DAILY_START}: nothing to compact yet")
    return dg.RunRequest(run_key=f"compact-archive-{day}", partition_key=day.isoformat())

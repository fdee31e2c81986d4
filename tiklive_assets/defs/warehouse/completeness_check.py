"""The daily completeness check: a day's sources against their own baseline, so a silent day is known that day.

Users of archives like this one rank silent zero-result days as their worst surprise: nothing fails, the API just
brings nothing, and the day is lost (the API only serves the present). This check reads the day's Parquet exports
(derived from the raw archive alone, so a replay gives the same verdict) and fails, naming each source, when a
tracked source that usually brings new ids brought none, a walk that usually goes further ended on its first page,
or a tracked account has no profile snapshot (``tiklive_assets.warehouse.completeness`` states the rule). Only the
sources ``tiklive.yaml`` tracks now are judged: a source taken out of it never fails. A failed check reaches the
alert sensor like every other.
"""

from datetime import date

import dagster as dg

from tiklive_assets.capture.raw_archive import entity_for, keyword_entity
from tiklive_assets.defs.partitions import daily
from tiklive_assets.defs.resources import DataRootResource, TrackingConfigResource
from tiklive_assets.defs.warehouse.assets import parquet_exports
from tiklive_assets.tikliveapi.endpoints import CHALLENGE_POSTS, MUSIC_POSTS
from tiklive_assets.tracking import TrackingConfig
from tiklive_assets.warehouse import completeness
from tiklive_assets.warehouse.exports import exported_days

SHOWN = 50  # sources listed in the metadata


def tracked(config: TrackingConfig) -> dict[str, set[str]]:
    """kind -> the names ``source_days`` gives the sources ``config`` tracks (handles for accounts and profiles,
    the listing's slug entity for hashtags, searches and sounds)."""
    handles = {account.handle.lower() for account in config.accounts}
    return {
        "account": handles,
        completeness.PROFILE: handles,
        "hashtag": {entity_for(CHALLENGE_POSTS, {"challenge_id": h.id, "region": h.region}) for h in config.hashtags},
        "keyword": {keyword_entity(k.keyword, k.publish_time, k.sort_by, k.region) for k in config.keywords},
        "music": {entity_for(MUSIC_POSTS, {"music_id": m.id}) for m in config.music},
    }


def judged(found: list[completeness.SourceDay], config: TrackingConfig) -> list[completeness.SourceDay]:
    """The rows of the sources ``config`` tracks now."""
    names = tracked(config)
    return [row for row in found if row.name.lower() in names.get(row.kind, set())]


@dg.asset_check(
    asset=parquet_exports,
    partitions_def=daily,
    blocking=False,
    description="Each day's tracked sources against their own baseline of the previous "
    f"{completeness.BASELINE_DAYS} days: fails, naming the source, when an account, hashtag, search or sound that "
    "brought new ids on more than half of the days it listed something (at least "
    f"{completeness.MIN_BASELINE_DAYS}) brought none, when a walk that usually goes past its first page stopped "
    "there, or when a tracked account with a recent profile snapshot has none that day. A brand-new source has no "
    "baseline and never fails. The day's expected against captured counts are in the metadata.",
)
def daily_completeness(
    context: dg.AssetCheckExecutionContext, data_root: DataRootResource, tracking: TrackingConfigResource
) -> dg.AssetCheckResult:
    exports = data_root.root().exports
    config = tracking.load()
    days = [date.fromisoformat(key) for key in context.partition_keys]
    exported = set(exported_days(exports, "post_metrics_history"))
    judged_rows: list[completeness.SourceDay] = []
    totals: dict[str, dict] = {}
    for day in days:
        if day not in exported:
            continue
        judged_rows += judged(completeness.source_days(exports, day), config)
        totals[str(day)] = {k: v for k, v in completeness.day_totals(exports, day).items() if k not in ("day",)}
    failed = [row for row in judged_rows if row.failed]
    if not totals:
        what = f"nothing checked: {', '.join(map(str, days))} not exported yet"
    elif failed:
        what = "; ".join(row.why() for row in failed[:10]) + (f"; and {len(failed) - 10} more" if failed[10:] else "")
    else:
        what = f"complete: {len(judged_rows)} tracked source(s) judged against their baseline, none fell silent"
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=what,
        metadata={
            "failed_sources": dg.MetadataValue.json([row.label() for row in failed]),
            "days": dg.MetadataValue.json(totals),
            "sources": dg.MetadataValue.json([row.as_json() for row in judged_rows[:SHOWN]]),
            "baseline_days": completeness.BASELINE_DAYS,
        },
    )

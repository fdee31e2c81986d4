"""Cheap checks that travel with the capture assets: paginator drift, the dead-letter ratio, the mirror's lag."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from tiklive_assets.capture.cursors import cursor_statuses
from tiklive_assets.defs.capture.assets import archived_videos, discovery_queue
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource

DEAD_LETTER_RATIO_LIMIT = 0.2
MIRROR_LAG_LIMIT = timedelta(days=1)


@dg.asset_check(
    asset=discovery_queue, description="No discovery cursor drifted (stuck value, repeated page, hasMore loop)."
)
def discovery_cursors_advancing(data_root: DataRootResource) -> dg.AssetCheckResult:
    with data_root.state() as state:
        statuses = cursor_statuses(state)
    bad = [s for s in statuses if s.drift or s.stuck]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "cursors": len(statuses),
            "drifting": dg.MetadataValue.json(
                [
                    {
                        "scope": s.scope,
                        "cursor": s.value,
                        "why": s.drift or f"same value {s.value!r} written repeatedly",
                    }
                    for s in bad
                ]
            ),
            "what_to_do": "inspect the archived pages, then `tiklive cursors reset <scope> --back N`"
            if bad
            else "nothing",
        },
    )


@dg.asset_check(asset=archived_videos, description="Dead letters stay under a ratio of everything resolved.")
def dead_letter_ratio(data_root: DataRootResource) -> dg.AssetCheckResult:
    with data_root.state() as state:
        depth = state.queue_depth()
    finished = depth.get("downloaded", 0) + depth.get("dead", 0)
    ratio = depth.get("dead", 0) / finished if finished else 0.0
    return dg.AssetCheckResult(
        passed=ratio <= DEAD_LETTER_RATIO_LIMIT,
        metadata={
            "dead_letter_ratio": round(ratio, 4),
            "limit": DEAD_LETTER_RATIO_LIMIT,
            "queue_depth": dg.MetadataValue.json(depth),
        },
    )


@dg.asset_check(
    asset=archived_videos,
    description="No archive key (raw response, video, cover, sidecar) has been "
    "missing from the secondary store for more than a day: the mirror is a backup only while it is complete.",
)
def mirror_replicated(archive_store: ArchiveStoreResource) -> dg.AssetCheckResult:
    from tiklive_assets.storage.mirror import oldest_unreplicated

    store = archive_store.open()
    count, age, entries = oldest_unreplicated(store)
    now = datetime.now(UTC)
    late = [e for e in entries if now - e.since > MIRROR_LAG_LIMIT]
    return dg.AssetCheckResult(
        passed=not late,
        metadata={
            "unreplicated": count,
            "older_than_a_day": len(late),
            "oldest_age_hours": round(age.total_seconds() / 3600, 2) if age is not None else 0,
            "oldest": dg.MetadataValue.json([e.key for e in entries[:20]]),
            "what_to_do": "the hourly mirror_repair job copies them once the secondary is back; check "
            "TIKLIVE_ARCHIVE_SECONDARY_BUCKET / TIKLIVE_SECONDARY_S3_ENDPOINT_URL, then "
            "`tiklive mirror repair`"
            if late
            else "nothing",
        },
    )

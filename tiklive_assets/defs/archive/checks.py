"""Cheap checks that travel with the capture assets: paginator drift and the dead-letter ratio."""

import dagster as dg

from tiklive_assets.capture.cursors import cursor_statuses
from tiklive_assets.defs.archive.assets import archived_videos, discovery_queue
from tiklive_assets.defs.resources import DataRootResource

DEAD_LETTER_RATIO_LIMIT = 0.2


@dg.asset_check(asset=discovery_queue, description="No discovery cursor drifted (stuck value, repeated page, hasMore loop).")
def discovery_cursors_advancing(data_root: DataRootResource) -> dg.AssetCheckResult:
    state = data_root.open_state()
    try:
        statuses = cursor_statuses(state)
    finally:
        state.close()
    bad = [s for s in statuses if s.drift or s.stuck]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "cursors": len(statuses),
            "drifting": dg.MetadataValue.json([
                {"scope": s.scope, "cursor": s.value, "why": s.drift or f"same value {s.value!r} written repeatedly"} for s in bad
            ]),
            "what_to_do": "inspect the archived pages, then `tiklive cursors reset <scope> --back N`" if bad else "nothing",
        },
    )


@dg.asset_check(asset=archived_videos, description="Dead letters stay under a ratio of everything resolved.")
def dead_letter_ratio(data_root: DataRootResource) -> dg.AssetCheckResult:
    state = data_root.open_state()
    try:
        depth = state.queue_depth()
    finally:
        state.close()
    finished = depth.get("downloaded", 0) + depth.get("dead", 0)
    ratio = depth.get("dead", 0) / finished if finished else 0.0
    return dg.AssetCheckResult(
        passed=ratio <= DEAD_LETTER_RATIO_LIMIT,
        metadata={"dead_letter_ratio": round(ratio, 4), "limit": DEAD_LETTER_RATIO_LIMIT, "queue_depth": dg.MetadataValue.json(depth)},
    )

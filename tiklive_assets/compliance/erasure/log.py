"""The erasure log (state DB kv ``erasure-log:<utc time>-<request id>``): who ran an erasure, when, how many objects
and rows, and the keys with the user's id and handles masked as ``<subject>``: never the personal data itself."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..legal_hold import kv_items

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB

    from .execute import ErasureReport
    from .matcher import UserMatcher

ERASURE_LOG_PREFIX = "erasure-log:"


def write_log(
    state: StateDB,
    log_key: str,
    report: ErasureReport,
    matcher: UserMatcher,
    status: str,
    aweme_ids: Iterable[str] = (),
) -> None:
    entry = {
        "request_id": report.request_id,
        "status": status,
        "operator": report.operator,
        "started_at": report.started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds") if status != "started" else None,
        "subject_ref": report.subject_ref,
        "deleted_objects": len(report.deleted),
        "redacted_objects": len(report.redacted),
        "redacted_items": sum(report.redacted.values()),
        "warehouse_rows": report.warehouse_rows,
        "warehouse_checked": report.warehouse_checked,
        "affected_days": [d.isoformat() for d in report.affected_days],
        "deleted_keys": sorted({matcher.mask(k, aweme_ids) for k in report.deleted}),
        "redacted_keys": sorted({matcher.mask(k, aweme_ids) for k in report.redacted}),
        "rewrite_conflicts": [matcher.mask(k, aweme_ids) for k in report.rewrite_conflicts],
    }
    state.set_value(log_key, json.dumps(entry, sort_keys=True))


def erasure_log(state: StateDB) -> list[dict[str, Any]]:
    """Every erasure log entry, oldest first."""
    out = []
    for _key, value in kv_items(state, ERASURE_LOG_PREFIX):
        if value:
            out.append(json.loads(value))
    return out

"""The weekly archive index check: a sampled day's index against a scan of that day, as an erasure would scan it.

Erasure reads only what the archive index names, so an object the index misses would survive an erasure. Once a
week a random day of the last 30 with an index part is chosen (the seed and the day are in the metadata) and, for a
few of its users, the day is scanned whole and compared with the index; the check fails when the scan finds an
object the index does not name, or when a loaded day has no index part.
"""

import random
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.compliance.erasure.index_check import check_day
from tiklive_assets.defs.resources import ArchiveStoreResource
from tiklive_assets.defs.scheduling import asset_job, tick_schedule
from tiklive_assets.defs.warehouse.assets import TABLE_KEYS
from tiklive_assets.warehouse.archive_index_store import archive_days

WINDOW_DAYS = 30
SAMPLED_USERS = 3


@dg.asset_check(
    asset=TABLE_KEYS["archive_index"],
    blocking=False,
    description="Weekly: for a few users of a random archived day of the last 30, the day scanned whole (as an "
    "erasure's full scan reads it) finds no object the archive index does not name; a loaded day without an index "
    "part fails too. The day, the seed and each sampled user's figures (as sha256 references) are in the metadata.",
)
def archive_index_complete(archive_store: ArchiveStoreResource) -> dg.AssetCheckResult:
    seed = settings.restore_seed()
    if seed is None:
        seed = time.time_ns() % 2**31
    store = archive_store.open()
    today = datetime.now(UTC).date()
    days = [d for d in archive_days(store, today) if today - timedelta(days=WINDOW_DAYS) <= d < today]
    if not days:
        return dg.AssetCheckResult(
            passed=True, description=f"nothing checked: no day of the last {WINDOW_DAYS} is archived"
        )
    day = random.Random(seed).choice(days)
    started = time.monotonic()
    report = check_day(store, day, seed, users=SAMPLED_USERS)
    missed = sum(len(u.missed) for u in report.users)
    if not report.indexed:
        what = f"{day} has no archive index part: rematerialize the day's warehouse_tables (or `tiklive replay`)"
    elif missed:
        what = f"{day}: the scan found {missed} object(s) the index does not name; erasure would leave them"
    else:
        what = f"{day}: the index names every object the scan finds for {len(report.users)} sampled user(s)"
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=what,
        metadata={
            "day": str(day),
            "seed": seed,
            "indexed": report.indexed,
            "seconds": round(time.monotonic() - started, 2),
            "users": dg.MetadataValue.json(
                [{"ref": u.ref, "scanned": u.scanned, "named": u.named, "missed": u.missed[:20]} for u in report.users]
            ),
        },
    )


weekly_index_check_job = asset_job(
    "weekly_index_check",
    dg.AssetSelection.checks(archive_index_complete),
    description="Check-only job, weekly: the archive index against a scan of a sampled day; a failure reaches "
    "the alert sensor.",
)

weekly_index_check_schedule = tick_schedule(
    weekly_index_check_job,
    "0 5 * * 0",
    name="weekly_index_check_schedule",
    run_key="weekly-index-check",
    description="Sundays at 05:00 UTC, after the nightly verification: compares the archive index with a scan of "
    "a sampled day, so an object an erasure would miss is found before an erasure needs it.",
)

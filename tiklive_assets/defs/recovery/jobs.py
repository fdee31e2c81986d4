"""The daily warehouse snapshot and the quarterly recovery drills, as jobs with their schedules.

The snapshot runs after the day's warehouse load, in the warehouse writers' pool (a DuckDB file has one writer at a
time, and the export must not read a half-loaded day). The drills stage each disaster on a scratch copy with the
bundled sandbox, never on this deployment's data; a failing drill is alerted with what failed and what to do.
"""

import dagster as dg

from tiklive_assets.alerts import notify
from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource
from tiklive_assets.defs.scheduling import tick_schedule
from tiklive_assets.defs.warehouse.assets import DUCKDB_POOL
from tiklive_assets.defs.warehouse.resources import WarehouseResource


@dg.op(
    pool=DUCKDB_POOL,
    description="Export the whole warehouse as Parquet (one file per table) to warehouse-snapshots/<UTC time>/ in "
    "the archive's store, mirrored to the secondary store when one is configured, the manifest (row counts, sha256 "
    "of every file, the last day held) written last; then prune snapshots older than 30 days, never the newest nor "
    "one a legal hold covers.",
)
def snapshot_warehouse(
    context: dg.OpExecutionContext,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    warehouse: WarehouseResource,
) -> dg.Output:
    from tiklive_assets.recovery.snapshots import held_by, prune_snapshots, take_snapshot, unreplicated

    store = archive_store.open()
    home = data_root.root().home
    manifest = take_snapshot(store, warehouse.resolved_url(home), scratch=data_root.scratch)
    with data_root.state() as state:
        pruned = prune_snapshots(store, held=held_by(state))
    missed = unreplicated(store, manifest)
    context.log.info(
        "warehouse snapshot %s: %d rows in %d tables, %.1f MB; %d older snapshot(s) pruned",
        manifest.snapshot_id,
        manifest.rows,
        len(manifest.tables),
        manifest.size / 1e6,
        len(pruned),
    )
    return dg.Output(
        None,
        metadata={
            "snapshot": manifest.prefix,
            "rows": manifest.rows,
            "rows_by_table": dg.MetadataValue.json(manifest.tables),
            "bytes": manifest.size,
            "last_day": str(manifest.last_day),
            "seconds": manifest.seconds,
            "pruned": dg.MetadataValue.json(pruned),
            "files_missing_from_secondary": len(missed),
        },
    )


@dg.job(
    description="Daily backup of the warehouse into the archive's store (and its secondary): "
    "`tiklive dr restore-warehouse` restores the newest one and replays only the days after it."
)
def warehouse_snapshot() -> None:
    snapshot_warehouse()


daily_warehouse_snapshot_schedule = tick_schedule(
    warehouse_snapshot,
    "30 1 * * *",
    name="daily_warehouse_snapshot_schedule",
    run_key="warehouse-snapshot",
    description="Every day at 01:30 UTC, after yesterday's warehouse load: snapshots the warehouse and prunes "
    "snapshots older than 30 days, so a lost warehouse is restored in minutes instead of replayed from the first day.",
)


@dg.op(
    description="Run the four recovery drills (warehouse-lost, state-lost, key-revoked, pipeline-drift), each on a "
    "scratch data root with the bundled sandbox; log each one's steps and recovery time, and alert and fail when one "
    "fails."
)
def run_recovery_drills(context: dg.OpExecutionContext) -> dg.Output:
    from tiklive_assets.recovery.drills import SCENARIOS, run_drill

    results = [run_drill(name, say=context.log.info) for name in SCENARIOS]
    metadata = {
        r.name: dg.MetadataValue.json(
            {"passed": r.passed, "recovery_seconds": r.recovery_seconds, "problems": r.problems[:5], "steps": r.steps}
        )
        for r in results
    }
    failed = [r for r in results if not r.passed]
    if failed:
        notify(
            f"tiklive recovery drill failed: {', '.join(r.name for r in failed)}",
            [f"{r.name}: {r.headline}; what to do: {SCENARIOS[r.name][2]}" for r in failed],
        )
        raise dg.Failure(
            description=f"{len(failed)} of {len(results)} recovery drills failed: "
            + "; ".join(f"{r.name}: {r.headline}" for r in failed),
            metadata=metadata,
            allow_retries=False,
        )
    return dg.Output(None, metadata=metadata)


@dg.job(
    description="The disaster-recovery drills on a scratch copy: a lost warehouse, a lost state database, a revoked "
    "API key and drifted payloads, each recovered, checked and timed (`tiklive dr drill all` runs the same)."
)
def recovery_drills() -> None:
    run_recovery_drills()


quarterly_recovery_drills_schedule = tick_schedule(
    recovery_drills,
    "0 6 1 1,4,7,10 *",
    name="quarterly_recovery_drills_schedule",
    run_key="recovery-drills",
    description="On the first day of each quarter at 06:00 UTC: runs the four recovery drills and alerts when one "
    "fails, so a runbook that stopped working is found before the disaster.",
)

"""The hourly state snapshot: every table of the state database copied to the archive's store, 30 days kept.

The state database records what capture has done (queue, cursors, dead letters, credit ledger, cached user ids,
legal holds, Research API windows). The archive stays the truth for content and `tiklive state rebuild` can derive
the videos' states from it, but cursors, ledgers and holds exist only here: the snapshots are their backup.
"""

from datetime import timedelta

import dagster as dg

from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource
from tiklive_assets.defs.scheduling import HOUR, tick_schedule

KEEP_DAYS = 30


@dg.op(
    description="Copy every table of the state database, read in one consistent transaction, to "
    "state-snapshots/<UTC time>/ in the archive's store (a gzip JSON Lines file per table, then the manifest with "
    "row counts and the schema version), then prune snapshots older than 30 days: never the newest, nor one a "
    "legal hold covers."
)
def snapshot_state_database(
    context: dg.OpExecutionContext, archive_store: ArchiveStoreResource, data_root: DataRootResource
) -> dg.Output:
    from tiklive_assets.compliance.legal_hold import LegalHolds
    from tiklive_assets.state.snapshots import prune_snapshots, take_snapshot

    store = archive_store.open()
    with data_root.state() as state:
        manifest = take_snapshot(state, store, scratch=data_root.scratch, progress=context.log.info)
        holds = LegalHolds(state).snapshot()
        pruned = prune_snapshots(store, keep=timedelta(days=KEEP_DAYS), held=lambda key: holds.covers(key) is not None)
    rows = {table: entry["rows"] for table, entry in manifest["tables"].items()}
    context.log.info(
        "state snapshot %s: %d rows in %d tables; %d older snapshot(s) pruned",
        manifest["name"],
        sum(rows.values()),
        len(rows),
        len(pruned.deleted),
    )
    metadata: dict[str, dg.MetadataValue | int | str] = {
        "snapshot": f"state-snapshots/{manifest['name']}/",
        "rows": sum(rows.values()),
        "rows_by_table": dg.MetadataValue.json(rows),
        "schema_version": manifest["schema_version"],
        "pruned": len(pruned.deleted),
        "kept": pruned.kept,
        "held": dg.MetadataValue.json(pruned.held),
    }
    if pruned.failed:
        raise dg.Failure(
            description=f"the snapshot {manifest['name']} was taken, but {len(pruned.failed)} old snapshot(s) could "
            f"not be pruned (first: {pruned.failed[0]}); the next hourly run tries again",
            metadata=metadata,
            allow_retries=False,
        )
    return dg.Output(None, metadata=metadata)


@dg.job(
    description="Hourly backup of the state database (queue, cursors, dead letters, credit ledger, user-id cache, "
    "legal holds, Research API windows) into the archive's store; `tiklive state restore` brings one back."
)
def state_snapshot() -> None:
    snapshot_state_database()


hourly_state_snapshot_schedule = tick_schedule(
    state_snapshot,
    "45 * * * *",
    name="hourly_state_snapshot_schedule",
    run_key="state-snapshot",
    stamp=HOUR,
    description="Every hour at :45: snapshots the state database into the archive's store and prunes snapshots "
    "older than 30 days, so a lost state database costs at most an hour of operations to restore.",
)

"""Disaster recovery: warehouse snapshots, restoring the warehouse, and the drills that prove both work.

* :mod:`.snapshots` the warehouse as Parquet files under ``warehouse-snapshots/<UTC time>/`` of the archive's store
  (mirrored with it), a manifest written last, 30 days kept
* :mod:`.restore`   the latest snapshot (or one at a time) into the warehouse, then only the days after it replayed
* :mod:`.scratch`   a throwaway data root with the bundled sandbox API, where a drill stages its disaster
* :mod:`.drills`    ``warehouse-lost``, ``state-lost``, ``key-revoked``, ``pipeline-drift``: stage, recover, check
"""

from .restore import RestoreReport, restore_snapshot, restore_warehouse
from .snapshots import (
    KEEP_DAYS,
    SNAPSHOT_PREFIX,
    Manifest,
    SnapshotError,
    choose_snapshot,
    list_snapshots,
    prune_snapshots,
    take_snapshot,
)

__all__ = [
    "KEEP_DAYS",
    "SNAPSHOT_PREFIX",
    "Manifest",
    "RestoreReport",
    "SnapshotError",
    "choose_snapshot",
    "list_snapshots",
    "prune_snapshots",
    "restore_snapshot",
    "restore_warehouse",
    "take_snapshot",
]

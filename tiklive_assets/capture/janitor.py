"""Janitor: sweeps what crashed workers leave behind (.part files, incomplete multipart uploads, the hidden temporary
files of an interrupted Parquet, CSV or marts swap), ages out dead letters."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tiklive_assets.state import StateDB
from tiklive_assets.storage import ObjectStore


@dataclass
class JanitorReport:
    parts_removed: int
    uploads_aborted: int
    dead_letters_aged_out: int
    cursor_history_pruned: int = 0
    temp_files_removed: int = 0


def _remove_older(paths: Iterable[Path], cutoff: float) -> int:
    removed = 0
    for path in paths:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def sweep(
    store: ObjectStore,
    state: StateDB,
    scratch: Path,
    *,
    older_than: timedelta = timedelta(hours=1),
    dead_letter_retention: timedelta = timedelta(days=90),
    temp_dirs: Iterable[Path] = (),
) -> JanitorReport:
    """Remove what a killed process left: ``.part`` downloads under ``scratch``, the store's incomplete writes, and in
    ``temp_dirs`` (the exports directory, the data root; two levels deep) the hidden ``.<name>.*.tmp`` files of an
    atomic swap that never happened. Only files older than ``older_than``: a live writer's files are younger."""
    cutoff = time.time() - older_than.total_seconds()
    removed = _remove_older(scratch.rglob("*.part"), cutoff) if scratch.exists() else 0
    temps = 0
    for directory in temp_dirs:
        if Path(directory).exists():
            # two levels down at most: exports/<table>/dt=DAY/, exports/csv/dt=DAY/, the data root's marts file
            temps += _remove_older(
                (p for pattern in (".*.tmp*", "*/.*.tmp*", "*/*/.*.tmp*") for p in Path(directory).glob(pattern)),
                cutoff,
            )
    in_store = store.sweep_incomplete(older_than)
    aged = state.age_out_dead_letters(dead_letter_retention)
    pruned = state.prune_cursor_history(keep=200)  # enough known-good values to reset to; the rest is noise
    return JanitorReport(
        parts_removed=removed,
        uploads_aborted=in_store,
        dead_letters_aged_out=aged,
        cursor_history_pruned=pruned,
        temp_files_removed=temps,
    )

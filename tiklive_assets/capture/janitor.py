"""Janitor: sweeps what crashed workers leave behind (.part files, incomplete multipart uploads), ages out dead letters."""

from __future__ import annotations

import time
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


def sweep(
    store: ObjectStore,
    state: StateDB,
    scratch: Path,
    *,
    older_than: timedelta = timedelta(hours=1),
    dead_letter_retention: timedelta = timedelta(days=90),
) -> JanitorReport:
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    if scratch.exists():
        for part in scratch.rglob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
    in_store = store.sweep_incomplete(older_than)
    aged = state.age_out_dead_letters(dead_letter_retention)
    pruned = state.prune_cursor_history(keep=200)  # enough known-good values to reset to; the rest is noise
    return JanitorReport(parts_removed=removed, uploads_aborted=in_store, dead_letters_aged_out=aged,
                         cursor_history_pruned=pruned)

"""Operator view of discovery cursors: list them with drift signals, reset one to a known-good value.

This is the pipeline-drift runbook's tool."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import date

from tiklive_assets.capture.discovery import complete_key
from tiklive_assets.state import StateDB

STUCK_AFTER = 3  # the same value written this many times in a row means the cursor is not advancing


@dataclass(frozen=True)
class CursorStatus:
    scope: str
    value: str | None
    pages: int | None
    updated_at: object
    complete: bool
    drift: str | None
    stuck: bool


def cursor_statuses(state: StateDB, prefix: str = "", stuck_after: int = STUCK_AFTER) -> list[CursorStatus]:
    out = []
    for record in state.list_cursors(prefix):
        history = [h.value for h in state.cursor_history(record.scope, limit=stuck_after)]
        stuck = len(history) >= stuck_after and len(set(history)) == 1
        out.append(
            CursorStatus(
                scope=record.scope,
                value=record.value,
                pages=record.pages,
                updated_at=record.updated_at,
                complete=bool(state.get_value(complete_key(record.scope))),
                drift=state.get_value(f"drift:{record.scope}"),
                stuck=stuck,
            )
        )
    return out


def reset_cursor(state: StateDB, scope: str, value: str | None = None, *, back: int | None = None) -> str | None:
    """Reset ``scope`` to ``value``, or to the value ``back`` writes ago in its history; reopen the walk."""
    if (value is None) == (back is None):
        raise ValueError("give exactly one of a value or --back N")
    if state.get_cursor(scope) is None and not state.cursor_history(scope, limit=1):
        raise KeyError(f"no cursor named {scope!r}; `tiklive cursors list` shows them")
    if back is not None:
        history = state.cursor_history(scope, limit=back + 1)
        if len(history) <= back:
            raise ValueError(f"{scope} has only {len(history)} recorded values; choose --back below {len(history)}")
        value = history[back].value
    current = state.get_cursor(scope)
    state.set_cursor(scope, value, current.pages if current else 0)
    state.delete_value(complete_key(scope))
    state.delete_value(f"drift:{scope}")
    unit, _, day = scope.rpartition(":")  # the walk's claim for its day: open again, so the next run walks it
    with suppress(ValueError):
        state.reopen_unit(unit, date.fromisoformat(day))
    return value

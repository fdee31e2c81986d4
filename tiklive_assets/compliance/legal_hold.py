"""Legal holds (litigation, subpoena, a regulator): a flag per key prefix that suspends deletion, kept in the state DB.

A hold is the kv row ``legal-hold:<prefix>`` whose value is JSON ``{"prefix", "reason", "placed_by",
"placed_at"}``. Retention (:mod:`.retention`) skips every key a hold covers and leaves held prefixes out of the
S3 Lifecycle expiration rules it emits; erasure (:mod:`.erasure`) refuses to run when a hold covers any object
it would delete or rewrite. A hold on ``""`` covers the whole store.

Holds are prefix strings over store keys, matched with ``key.startswith(prefix)`` exactly as S3 prefixes are
(``tiklive-raw/2025/03/`` holds March 2025, ``tiklive-raw/2025/03`` also holds ``2025/030…`` which cannot exist).

Alternative on AWS S3: Object Lock legal holds (``put_object_legal_hold(..., LegalHold={"Status": "ON"})``) on
a bucket created with Object Lock enabled make held object versions undeletable by anyone, lifecycle included.
They are per object (not per prefix) and need versioning; these prefix holds work on every store, local disk
included, and are what the jobs here honour.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tiklive_assets import settings
from tiklive_assets.storage.base import check_list_prefix

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB

HOLD_KV_PREFIX = "legal-hold:"


class LegalHoldError(RuntimeError):
    """An operation would delete or rewrite objects under a legal hold; nothing was changed."""

    def __init__(self, action: str, blocked: dict[str, int], holds: list[Hold]) -> None:
        self.action = action
        self.blocked = dict(blocked)
        self.holds = list(holds)
        lines = [
            f"  {h.prefix!r}: {blocked.get(h.prefix, 0)} object(s), reason {h.reason!r}, placed by {h.placed_by} "
            f"at {h.placed_at}"
            for h in holds
        ]
        super().__init__(
            f"refusing to {action}: legal hold(s) cover objects it would delete or rewrite; nothing was changed.\n"
            + "\n".join(lines)
            + "\nRelease the hold (`tiklive hold release <prefix>`) once counsel allows, then run it again."
        )


def current_operator(who: str | None = None) -> str:
    """``who``, else ``TIKLIVE_OPERATOR``, else the login name (``$USER``, else the account's), else "unknown"."""
    if who:
        return who
    name = settings.operator()
    if name != "unknown":
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, OSError):  # no login name (containers without an /etc/passwd entry)
        return "unknown"


@dataclass(frozen=True)
class Hold:
    prefix: str
    reason: str
    placed_by: str
    placed_at: str  # ISO 8601 UTC

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def overlaps(self, prefix: str) -> bool:
        """True when some key could be under both this hold and ``prefix``."""
        return prefix.startswith(self.prefix) or self.prefix.startswith(prefix)


def kv_items(state: StateDB, prefix: str) -> list[tuple[str, str | None]]:
    """Every (key, value) of the state DB's kv table whose key starts with ``prefix``, in key order.

    StateDB has no public prefix scan of kv yet, so this uses its transaction helper (one SELECT, both dialects).
    """
    with state._tx() as tx:
        rows = tx.fetchall("SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", [len(prefix), prefix])
    return [(str(k), v) for k, v in rows]


class LegalHolds:
    """The legal holds in one state DB. Cheap to construct; every read goes to the database, except
    :meth:`snapshot`, which returns a frozen in-memory view for scanning many keys."""

    def __init__(self, state: StateDB) -> None:
        self.state = state

    @staticmethod
    def _kv_key(prefix: str) -> str:
        return HOLD_KV_PREFIX + prefix

    def place(self, prefix: str, reason: str, *, who: str | None = None) -> Hold:
        """Hold every key starting with ``prefix``; placing it again updates reason, author and time."""
        check_list_prefix(prefix)
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a legal hold needs a reason (case number, regulator reference, ...)")
        hold = Hold(
            prefix=prefix,
            reason=reason.strip(),
            placed_by=current_operator(who),
            placed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.state.set_value(self._kv_key(prefix), json.dumps(asdict(hold), sort_keys=True))
        return hold

    def release(self, prefix: str) -> bool:
        """Remove the hold on exactly ``prefix``; False when there was none."""
        return self.state.delete_value(self._kv_key(prefix))

    def get(self, prefix: str) -> Hold | None:
        value = self.state.get_value(self._kv_key(prefix))
        return None if value is None else _decode(prefix, value)

    def list(self) -> list[Hold]:
        return [
            _decode(key[len(HOLD_KV_PREFIX) :], value)
            for key, value in kv_items(self.state, HOLD_KV_PREFIX)
            if value is not None
        ]

    def snapshot(self) -> HoldSet:
        return HoldSet(self.list())

    def covers(self, key: str) -> Hold | None:
        """The hold covering ``key`` (the longest matching prefix), or None."""
        return self.snapshot().covers(key)


class HoldSet:
    """An in-memory set of holds (what :meth:`LegalHolds.snapshot` returns); also usable on its own in tests."""

    def __init__(self, holds: Iterable[Hold] = ()) -> None:
        self.holds = sorted(holds, key=lambda h: (-len(h.prefix), h.prefix))

    def __bool__(self) -> bool:
        return bool(self.holds)

    def __iter__(self):
        return iter(self.holds)

    def covers(self, key: str) -> Hold | None:
        for hold in self.holds:  # longest prefix first
            if key.startswith(hold.prefix):
                return hold
        return None

    def overlapping(self, prefix: str) -> list[Hold]:
        return [h for h in self.holds if h.overlaps(prefix)]


def as_holdset(holds: LegalHolds | HoldSet | Iterable[Hold] | None) -> HoldSet:
    if holds is None:
        return HoldSet()
    if isinstance(holds, HoldSet):
        return holds
    if isinstance(holds, LegalHolds):
        return holds.snapshot()
    return HoldSet(holds)


def _decode(prefix: str, value: str) -> Hold:
    try:
        data = json.loads(value)
        return Hold(
            prefix=prefix,
            reason=str(data.get("reason", "")),
            placed_by=str(data.get("placed_by", "")),
            placed_at=str(data.get("placed_at", "")),
        )
    except (ValueError, AttributeError):  # a hand-written value: still a hold
        return Hold(prefix=prefix, reason=str(value), placed_by="", placed_at="")

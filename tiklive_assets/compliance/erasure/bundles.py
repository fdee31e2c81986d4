"""Erasure in bundled days: the planned members of each bundle are removed (or replaced by their redacted copy) by
writing the bundle's next generation without them, verified byte for byte, then deleting the old generation, the
way a loose object is deleted or rewritten at its key. The other members keep their exact bytes.

A bundle holding a key under a legal hold is held as a whole (rewriting it deletes the stored copy of that key), so
an erasure that would rewrite it refuses, as it does for a held loose key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.bundles import Member

from ..bundled import Rewrite, bundle_hold, bundles_of_keys, rewrite_bundle, settle_generations
from ..legal_hold import Hold, HoldSet
from .plan import RAW_PREFIXES, ErasurePlan

logger = logging.getLogger(__name__)

CRASH_POINT = "erasure.bundle.written"  # the new generation written and verified, the old one not yet deleted


def planned_bundles(plan: ErasurePlan) -> dict[str, list[str]]:
    """Each live bundle holding planned keys, with those keys."""
    out: dict[str, list[str]] = {}
    for key, bundle in sorted(plan.bundled.items()):
        if key in plan.objects:
            out.setdefault(bundle, []).append(key)
    return out


def also_bundled(store: ObjectStore, plan: ErasurePlan) -> None:
    """Record the bundle of planned raw keys that were found loose but are bundled too (a day compacted while the
    plan ran, or before compaction deleted its loose copies), so the bundled copy goes as well."""
    loose = [k for k in plan.objects if k not in plan.bundled and k.startswith(RAW_PREFIXES)]
    for bundle, keys in bundles_of_keys(store, loose).items():
        for key in keys:
            plan.bundled[key] = bundle


def held_bundles(store: ObjectStore, plan: ErasurePlan, holds: HoldSet) -> dict[str, tuple[Hold, int]]:
    """Bundles the erasure would rewrite that a hold keeps as they are: bundle -> (the hold, planned keys in it that
    no hold covers themselves, which the refusal counts under that hold)."""
    out = {}
    for bundle, keys in planned_bundles(plan).items():
        hold = bundle_hold(holds, store, bundle)
        if hold is not None:
            out[bundle] = (hold, sum(1 for k in keys if holds.covers(k) is None))
    return out


def rewrite_bundles(
    store: ObjectStore, plan: ErasurePlan, redact: Callable[[Member, bytes], bytes | None]
) -> list[Rewrite]:
    """Rewrite every bundle holding planned keys: deleted members left out, redacted ones replaced by
    ``redact(member, body)`` (None: it goes whole)."""

    def transform(member: Member, body: bytes) -> bytes | None:
        obj = plan.objects.get(member.key)
        if obj is None:
            return body
        return None if obj.action == "delete" else redact(member, body)

    done = []
    for bundle in planned_bundles(plan):
        result = rewrite_bundle(store, bundle, transform, crash_name=CRASH_POINT)
        if result.conflict:
            logger.warning("%s: its next generation was written concurrently; run the erasure again", bundle)
        done.append(result)
    return done


def finish_bundle_rewrites(store: ObjectStore, holds: HoldSet | None = None) -> list[str]:
    """Delete the old generations an interrupted rewrite left (the new one reads back intact): they may still
    hold an erased user's objects. A generation a legal hold covers is kept. Returns the keys deleted."""
    return settle_generations(store, holds=holds)

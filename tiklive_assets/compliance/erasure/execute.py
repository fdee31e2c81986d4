"""Running an erasure: the plan, the legal holds, the archive (deletes and crash-safe redacted rewrites), the
warehouse, and the erasure log, in that order."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.storage import NotFound, ObjectStore
from tiklive_assets.storage.keys import day_of_key
from tiklive_assets.warehouse.archive_index_store import prune_part, read_part_bytes, refs_of, write_part

from ..legal_hold import Hold, HoldSet, LegalHoldError, LegalHolds, as_holdset, current_operator
from .bundles import also_bundled, finish_bundle_rewrites, held_bundles, rewrite_bundles
from .index_plan import IndexUse, plan_with_index
from .log import ERASURE_LOG_PREFIX, write_log
from .matcher import ErasureError, UserMatcher
from .plan import ErasurePlan, PlannedObject, load_json, plan_erasure
from .warehouse import Statement, resolve_user, warehouse_statements

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB

logger = logging.getLogger(__name__)

PENDING_REWRITES = "_erasure/pending/"  # redacted copies staged before an object is replaced (crash safety)


@dataclass
class ErasureReport:
    request_id: str
    dry_run: bool
    subject_ref: str  # sha256 of "tiklive-erasure:<user id or handle>": lets the log prove an erasure, not who
    operator: str
    started_at: str
    user_id: str | None = None
    handles: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    redacted: dict[str, int] = field(default_factory=dict)  # key -> items removed
    reasons: dict[str, int] = field(default_factory=dict)  # why objects were picked, counted
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    warehouse_checked: bool = False
    held: dict[str, int] = field(default_factory=dict)  # hold prefix -> objects it covers (dry run reports them)
    affected_days: list[date] = field(default_factory=list)  # re-export / re-mart these days afterwards
    aweme_ids: int = 0
    scanned_objects: int = 0
    scanned_bytes: int = 0
    unreadable: list[str] = field(default_factory=list)
    rewrite_conflicts: list[str] = field(default_factory=list)  # redacted keys rewritten concurrently: run again
    seconds: float = 0.0
    # the archive index: days it covered, days scanned whole (no index part yet), objects it named and read
    index_days: int = 0
    scanned_days: list[date] = field(default_factory=list)
    index_parts_read: int = 0
    objects_named: int = 0
    bodies_read: int = 0
    verify_scanned: int | None = None  # --verify-scan: bodies the full scan read
    index_missed: list[str] = field(default_factory=list)  # --verify-scan: found by the scan, not by the index
    index_parts_pruned: int = 0

    @property
    def keys(self) -> list[str]:
        return sorted([*self.deleted, *self.redacted])

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        rverb = "would redact" if self.dry_run else "redacted"
        rows = sum(self.warehouse_rows.values())
        text = (
            f"erasure {self.request_id}: {verb} {len(self.deleted)} object(s), {rverb} {len(self.redacted)} "
            f"({sum(self.redacted.values())} item(s)), {verb} {rows} warehouse row(s) in "
            f"{sum(1 for n in self.warehouse_rows.values() if n)} table(s); scanned {self.scanned_objects} "
            f"object bodies in {self.seconds:.1f}s"
        )
        if self.index_days:
            text += (
                f"; through the archive index ({self.index_days} day(s)): {self.objects_named} object(s) named, "
                f"{self.bodies_read} read"
            )
        if self.scanned_days:
            text += (
                f"; {len(self.scanned_days)} day(s) without an index part scanned whole "
                f"({self.scanned_days[0]}..{self.scanned_days[-1]}): replay them to index them"
            )
        elif not self.index_days:
            text += "; the whole archive was scanned (no archive index part was used)"
        if self.verify_scanned is not None:
            text += (
                f"; verify scan read {self.verify_scanned} bodies: the index missed {len(self.index_missed)} "
                "object(s) the scan found" + (" (erased too)" if self.index_missed else "")
            )
        if self.held:
            text += f"; BLOCKED by legal hold(s) on {sorted(self.held)}"
        return text


def subject_ref(user_id: str | None, handles: Iterable[str]) -> str:
    ident = user_id if user_id else min(handles)
    return hashlib.sha256(f"tiklive-erasure:{ident}".encode()).hexdigest()


def erase_user(
    store: ObjectStore,
    warehouse: Any | None,
    user_id: str | int | None = None,
    handle: str | None = None,
    *,
    dry_run: bool = True,
    holds: LegalHolds | HoldSet | None = None,
    state: StateDB | None = None,
    operator: str | None = None,
    workers: int = 8,
    use_index: bool = True,
    verify_scan: bool = False,
) -> ErasureReport:
    """Erase one user from the archive (``store``) and the warehouse (an open Warehouse, or None to skip it).

    ``dry_run`` (the default) only reports what would go, and reports covering legal holds instead of refusing.
    A real run needs the state DB (``state``, or the one behind ``holds``) for the holds and the erasure log; it
    raises :class:`LegalHoldError` before changing anything when a hold covers an object it would touch, and is
    idempotent: running it again after an interruption finishes the job.

    The plan reads only the objects the archive index names (``use_index``; days without an index part are
    scanned whole); ``verify_scan`` also runs the full scan and reports what the index missed (erasing it too).

    The steps run in their safe order: plan, holds, archive, warehouse, log.
    """
    started = time.monotonic()
    if state is None and isinstance(holds, LegalHolds):
        state = holds.state
    if holds is None and state is not None:
        holds = LegalHolds(state)
    if not dry_run and state is None:
        raise ErasureError("a real erasure needs the state DB (for legal holds and the erasure log): pass state=")
    uid, handles, aweme = resolve_user(
        warehouse, None if user_id is None else str(user_id), [handle] if handle else [], state
    )
    matcher = UserMatcher(uid, handles)
    report = ErasureReport(
        request_id=uuid.uuid4().hex[:12],
        dry_run=dry_run,
        subject_ref=subject_ref(matcher.user_id, matcher.handles),
        operator=current_operator(operator),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        user_id=matcher.user_id,
        handles=sorted(matcher.handles),
    )
    if not dry_run:  # first put back what an interrupted erasure left half rewritten, so this plan sees it
        _finish_interrupted(store, report.request_id, as_holdset(holds))
    found = (
        plan_with_index(store, matcher, aweme_ids=aweme, workers=workers, verify_scan=verify_scan)
        if use_index
        else None
    )
    if found is None:
        plan, use = plan_erasure(store, matcher, aweme_ids=aweme, workers=workers), None
        if verify_scan:
            report.verify_scanned = plan.scanned_objects
    else:
        plan, use = found
        _report_index(report, use, verify_scan)
    also_bundled(store, plan)
    _report_plan(report, plan)
    held_by = _covering_holds(report, plan, as_holdset(holds), store)

    statements: list[Statement] = []
    if warehouse is not None:
        statements = warehouse_statements(warehouse, matcher.user_id, sorted(matcher.handles), sorted(plan.aweme_ids))
        report.warehouse_checked = True

    if state is None or dry_run:
        _count_rows(warehouse, statements, report, delete=False)
        report.seconds = time.monotonic() - started
        return report

    if report.held:
        raise LegalHoldError(f"erase a user ({len(plan.objects)} object(s))", report.held, held_by)

    log_key = f"{ERASURE_LOG_PREFIX}{report.started_at}-{report.request_id}"
    write_log(state, log_key, report, matcher, "started", plan.aweme_ids)
    _erase_archive(
        store,
        plan,
        matcher,
        report,
        as_holdset(holds),
        lambda outcome: write_log(state, log_key, report, matcher, outcome, plan.aweme_ids),
    )
    if use is not None:
        report.index_parts_pruned = _prune_index(store, use.indexed_days, matcher, plan)
    _count_rows(warehouse, statements, report, delete=True)
    report.seconds = time.monotonic() - started
    write_log(
        state, log_key, report, matcher, "completed" if not report.rewrite_conflicts else "incomplete", plan.aweme_ids
    )
    logger.info(report.summary())
    return report


def _erase_archive(
    store: ObjectStore,
    plan: ErasurePlan,
    matcher: UserMatcher,
    report: ErasureReport,
    holdset: HoldSet,
    log: Callable[[str], None],
) -> None:
    """The archive's part: planned loose objects deleted or rewritten redacted, then the bundles holding planned
    keys rewritten without them (a bundle found only now, and under a hold, stops the erasure as incomplete)."""
    for key in sorted(plan.objects):
        obj = plan.objects[key]
        if obj.action == "delete":
            store.delete(key)
        else:
            _rewrite_redacted(store, obj, matcher, report)
        crashpoint("erasure.object.done")
    # A day compacted while this erasure ran may have packed planned keys after the plan looked for their bundles:
    # looked for again now that the loose copies are gone (compaction checks its packed keys are still there after
    # writing a bundle, so one of the two always sees the other), and those bundles are rewritten too.
    also_bundled(store, plan)
    late_holds = _covering_holds(report, plan, holdset, store)
    if report.held:  # a bundle found only now is under a hold: leave it whole, and say the erasure is not complete
        log("incomplete")
        raise LegalHoldError(f"erase a user ({len(plan.objects)} object(s))", report.held, late_holds)
    for rewrite in rewrite_bundles(store, plan, lambda member, body: _redact_member(member.key, body, matcher, report)):
        if rewrite.conflict:
            report.rewrite_conflicts.append(rewrite.old)


def _finish_interrupted(store: ObjectStore, request_id: str, holdset: HoldSet) -> None:
    """Redacted rewrites an interrupted erasure left half done are finished; bundle generations it replaced (the
    new one written and verified, the old one, which may still hold the user's objects, not yet deleted) go, except
    those a legal hold covers."""
    for key in finish_pending_rewrites(store):
        logger.warning(
            "erasure %s: finished the redacted rewrite of %s that an interrupted erasure left half done",
            request_id,
            key,
        )
    for key in finish_bundle_rewrites(store, holdset):
        logger.warning("erasure %s: deleted %s, a bundle generation already replaced", request_id, key)


def _report_plan(report: ErasureReport, plan: ErasurePlan) -> None:
    """What the plan found, into the report: objects deleted and redacted, why, and the days they belong to."""
    report.scanned_objects, report.scanned_bytes = plan.scanned_objects, plan.scanned_bytes
    report.unreadable = plan.unreadable
    report.aweme_ids = len(plan.aweme_ids)
    for obj in plan.objects.values():
        report.reasons[obj.reason] = report.reasons.get(obj.reason, 0) + 1
        if obj.action == "delete":
            report.deleted.append(obj.key)
        else:
            report.redacted[obj.key] = obj.removed_items
    report.deleted.sort()
    report.affected_days = sorted({d for d in map(day_of_key, plan.objects) if d is not None})


def _report_index(report: ErasureReport, use: IndexUse, verify_scan: bool) -> None:
    report.index_days, report.scanned_days = len(use.indexed_days), list(use.scanned_days)
    report.index_parts_read, report.objects_named, report.bodies_read = (
        use.parts_read,
        use.objects_named,
        use.bodies_read,
    )
    if verify_scan:
        report.verify_scanned, report.index_missed = use.verify_scanned, list(use.missed)
    for key in use.missed:
        logger.warning("erasure %s: the archive index missed %s (the full scan found it)", report.request_id, key)


def _prune_index(store: ObjectStore, days: list[date], matcher: UserMatcher, plan: ErasurePlan) -> int:
    """The erased user's rows (and the deleted objects' rows) out of the index parts: the index must not keep
    what the erasure removed. Returns how many parts were rewritten."""
    refs = refs_of(matcher.user_id, matcher.handles, plan.aweme_ids)
    deleted = [key for key, obj in plan.objects.items() if obj.action == "delete"]
    rewritten = 0
    for day in days:
        data = read_part_bytes(store, day)
        pruned = prune_part(data, refs, deleted) if data is not None else None
        if pruned is not None:
            write_part(store, day, pruned)
            rewritten += 1
    return rewritten


def _covering_holds(report: ErasureReport, plan: ErasurePlan, holdset: HoldSet, store: ObjectStore) -> list[Hold]:
    """The holds covering planned objects, or a bundle the erasure would rewrite (one per prefix), counted per
    prefix into ``report.held``."""
    held_by: dict[str, Hold] = {}
    for key in plan.objects:
        hold = holdset.covers(key)
        if hold is not None:
            report.held[hold.prefix] = report.held.get(hold.prefix, 0) + 1
            held_by[hold.prefix] = hold
    for hold, count in held_bundles(store, plan, holdset).values():
        report.held[hold.prefix] = report.held.get(hold.prefix, 0) + count
        held_by[hold.prefix] = hold
    return list(held_by.values())


def _redact_member(key: str, body: bytes, matcher: UserMatcher, report: ErasureReport) -> bytes | None:
    """A bundled object's redacted bytes (None: it goes whole), counted into the report as a loose one is."""
    redacted, removed = redact_bytes(body, matcher)
    if redacted is not None:
        report.redacted[key] = removed
    return redacted


def _count_rows(warehouse: Any | None, statements: list[Statement], report: ErasureReport, *, delete: bool) -> None:
    """The rows each statement matches, into ``report.warehouse_rows``; deleted when ``delete``."""
    if warehouse is None:
        return
    for table, where, params in statements:
        n = int(warehouse.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0])
        if delete and n:
            warehouse.query(f"DELETE FROM {table} WHERE {where}", params)
        report.warehouse_rows[table] = report.warehouse_rows.get(table, 0) + n


def redact_bytes(data: bytes, matcher: UserMatcher) -> tuple[bytes | None, int]:
    """(the object's bytes without the user, items removed): None when it must go whole (it is about the user, or
    still refers to them after redaction); ``data`` itself when nothing was removed (already redacted). The gzip
    header keeps the capture time, so replays still see when it was captured."""
    body = load_json(data)
    if isinstance(body, dict) and matcher.belongs(body):
        return None, 0
    redacted, removed = matcher.scrub(body)
    if matcher.references(redacted):  # changed since planning: it goes whole
        return None, 0
    if removed == 0:
        return data, 0
    payload = json.dumps(redacted, ensure_ascii=False).encode()
    fetched = int.from_bytes(data[4:8], "little") if data[:2] == b"\x1f\x8b" else 0  # keep the capture time
    return gzip.compress(payload, compresslevel=6, mtime=fetched), removed


def _rewrite_redacted(store: ObjectStore, obj: PlannedObject, matcher: UserMatcher, report: ErasureReport) -> None:
    try:
        data = store.get_bytes(obj.key)
    except NotFound:
        return  # gone, or stored in a bundle (rewritten by rewrite_bundles)
    compressed, removed = redact_bytes(data, matcher)
    if compressed is None:
        store.delete(obj.key)
        return
    report.redacted[obj.key] = removed
    if removed == 0:
        return  # already redacted (a re-run)
    # The redacted copy is staged first: a process killed between the delete and the put below loses nothing (the
    # other users' data in this object); the next erasure run finishes the rewrite from the staged copy.
    staged = f"{PENDING_REWRITES}{obj.key}"
    store.delete(staged)
    store.put_bytes(staged, compressed, content_type="application/json", content_encoding="gzip")
    store.delete(obj.key)
    crashpoint("erasure.rewrite.deleted")
    result = store.put_bytes(obj.key, compressed, content_type="application/json", content_encoding="gzip")
    store.delete(staged)
    if result.status == "conflict":  # something wrote the key between our delete and put
        report.rewrite_conflicts.append(obj.key)
        logger.warning(
            "erasure %s: %s was written concurrently; the redacted copy is at %s: run the erasure again",
            report.request_id,
            obj.key,
            result.conflict_key,
        )


def finish_pending_rewrites(store: ObjectStore) -> list[str]:
    """Complete redacted rewrites a killed erasure left half done: the staged copy goes where the object was
    deleted (unless something is there again), then the staged copy is removed. Returns the keys restored."""
    restored = []
    for info in list(store.list(PENDING_REWRITES)):
        key = info.key[len(PENDING_REWRITES) :]
        if not store.exists(key):
            store.put_bytes(key, store.get_bytes(info.key), content_type="application/json", content_encoding="gzip")
            restored.append(key)
        store.delete(info.key)
    return restored

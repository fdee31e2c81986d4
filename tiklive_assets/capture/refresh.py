"""The refresh: tracked videos re-resolved with /post-detail/ at set ages after posting, for engagement curves.

A video's counters are otherwise captured only while it sits on the first listing pages, so its curve stops a day
or two after posting and a later deletion goes unnoticed. The refresh follows every downloaded video (its
publication time read once from its archived sidecar, no credit) and asks for its detail again once at each age of
``refresh.ages_hours`` (default 1 h, 6 h, 24 h, 3 d, 7 d, 30 d), until ``refresh.max_age_days``.

- **Once per age per video.** Each (video, age) point is recorded in the state database before the request, so no
  run pays for it twice. A video first seen after some of its ages passed takes only the latest passed age; the
  earlier ones are recorded as skipped, never asked late (a late answer would be a point at the wrong age).
- **Within a daily allotment, most valuable first.** ``refresh.daily_credits`` credits a UTC day, checked in the
  transaction that records the point; the videos of tracked accounts go first, then the most viewed.
- **Archived first, under its own key.** The answer goes to the raw archive before anything reads it, under
  ``post-detail/<aweme_id>-refresh<hours>h`` (the day's first detail of a post keeps ``post-detail/<aweme_id>``),
  so the warehouse parses it into ``post_metrics_history`` like any detail and a replay of the day rebuilds it.
- **A 404 is a tombstone, never retried.** "Not found" or "private" marks the video gone (its answer archived as
  ``…-http404`` is what the warehouse's ``tombstones`` read); it is never asked again.
- **Purging gone content** (``tombstones.purge_raw_after_days``, off by default): a gone video's raw detail
  answers, comment pages and media are deleted that many days after it was first seen missing, except what a
  legal hold covers; the 404 answers stay (they are the record of the deletion and hold no content). By then its
  day is often compacted: its raw objects are then removed from their bundle by writing the bundle's verified next
  generation without them (the other members keep their bytes), and a held bundle is left whole. A video is marked
  purged only when none of its content is left anywhere; until then each run tries again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.capture.videos import SYSTEMIC
from tiklive_assets.compliance.legal_hold import HoldSet
from tiklive_assets.state.refresh import Followed, RefreshState
from tiklive_assets.storage import NotFound
from tiklive_assets.storage.bundles import Member
from tiklive_assets.storage.keys import RAW_PREFIX, raw_key, refresh_slug, split_raw_key
from tiklive_assets.tikliveapi.client import ApiResponse, aweme_id_from_url
from tiklive_assets.tikliveapi.endpoints import POST_COMMENT_REPLIES, POST_COMMENTS, POST_DETAIL
from tiklive_assets.tikliveapi.errors import CreditBudgetExhausted, VideoGone
from tiklive_assets.tolerant import as_int, as_text, epoch_seconds, unwrap

log = logging.getLogger(__name__)


class RefreshArchive(RawArchive):
    """The raw archive of a refresh session: a /post-detail/ answer asked for at an age goes under that age's slug
    (``<aweme_id>-refresh<hours>h``, with ``-http404`` or ``-error-<reason>`` as usual); anything else as usual."""

    def __init__(self, archive: RawArchive) -> None:
        super().__init__(archive.store, archive.day, archive.prefix, archive.spool)
        self._age = threading.local()

    @contextmanager
    def at_age(self, age_hours: float) -> Iterator[None]:
        self._age.value = age_hours
        try:
            yield
        finally:
            self._age.value = None

    def key_for(self, response: ApiResponse) -> str:
        age = getattr(self._age, "value", None)
        aweme_id = aweme_id_from_url(str(response.params.get("url", "")))
        if age is None or response.endpoint != POST_DETAIL.path or aweme_id is None:
            return super().key_for(response)
        slug = refresh_slug(aweme_id, age)
        if response.status != 200:
            slug += f"-http{response.status}"
        elif response.error_kind:
            slug += f"-error-{response.error_kind}"
        return raw_key(self.day, response.endpoint, slug, prefix=self.prefix)


@dataclass
class RefreshReport:
    enrolled: int = 0  # videos followed from this run on
    due: int = 0  # (video, age) points due now
    refreshed: int = 0
    gone: dict[str, int] = field(default_factory=dict)  # tombstones by reason
    failed: list[str] = field(default_factory=list)  # answered but unreadable: the point is spent
    skipped_late: int = 0  # ages that passed before the video was followed: never asked late
    left_by_allotment: int = 0  # points due that the day's allotment did not reach (taken while still due)
    credits: int = 0
    allotment: int = 0
    spent_today: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)  # refreshed: 'tracked account' / 'most viewed'
    order: list[tuple[str, float]] = field(default_factory=list)  # (aweme_id, age) in the order they were asked
    claims_recovered: int = 0  # claims of a killed run settled from what the archive holds
    purged_objects: int = 0
    purge_held: int = 0  # objects a legal hold kept (loose, or members of a held bundle)
    purge_left: list[str] = field(default_factory=list)  # gone videos with content left: not purged, retried
    budget_stop: CreditBudgetExhausted | None = None
    systemic_error: str | None = None


@dataclass(frozen=True)
class Due:
    video: Followed
    age: float
    tracked: bool


def _sidecar_facts(session: CaptureSession, key: str | None) -> tuple[int | None, int | None, str | None]:
    """(create_time, play_count, author handle) of a post from its archived first detail (its sidecar)."""
    if key is None:
        return None, None, None
    try:
        detail = unwrap(json.loads(session.store.get_bytes(key)))
    except (NotFound, OSError, ValueError) as exc:
        log.warning("sidecar %s unreadable (%s): the video is not refreshed", key, type(exc).__name__)
        return None, None, None
    if not isinstance(detail, dict):
        return None, None, None
    author = detail.get("author")
    handle = as_text(author.get("unique_id") or author.get("uniqueId")) if isinstance(author, dict) else None
    created = epoch_seconds(detail.get("create_time", detail.get("createTime")))
    return created, as_int(detail.get("play_count")), handle


def enroll_new(session: CaptureSession, refresh: RefreshState) -> int:
    """Follow every downloaded video not followed yet (one sidecar read each, no credit)."""
    rows = [
        Followed(item.aweme_id, handle or item.author_handle, created, views)
        for item in refresh.unenrolled()
        for created, views, handle in [_sidecar_facts(session, item.sidecar_key)]
    ]
    return refresh.enroll(rows)


def due_points(
    refresh: RefreshState, ages: list[float], tracked: set[str], now: datetime, max_age_days: int, day: date
) -> tuple[list[Due], int]:
    """The (video, age) points due at ``now``, most valuable first, and how many earlier ages were skipped.

    Per video, only the latest age that has passed is due; earlier passed ages not taken are recorded as skipped."""
    stamp = now.timestamp()
    videos = refresh.followed(int(stamp - max_age_days * 86_400))
    done = refresh.done(v.aweme_id for v in videos)
    due: list[Due] = []
    skipped = 0
    for video in videos:
        assert video.create_time is not None  # followed() returns only videos with a publication time
        age_now = (stamp - video.create_time) / 3600
        passed = [age for age in ages if age <= age_now]
        if not passed:
            continue
        taken = done.get(video.aweme_id, set())
        late = [age for age in passed[:-1] if age not in taken]
        if late:
            refresh.skip(video.aweme_id, late, day)
            skipped += len(late)
        if passed[-1] not in taken:
            handle = (video.author_handle or "").lower()
            due.append(Due(video, passed[-1], handle in tracked))
    due.sort(key=lambda d: (not d.tracked, -(d.video.play_count or 0), d.video.aweme_id))
    return due, skipped


def _recover_claims(session: CaptureSession, refresh: RefreshState, report: RefreshReport, now: datetime) -> None:
    """Settle the claims a killed run left: the archive says whether its request was answered (the point is done,
    its credit spent) or, for a claim of an earlier day, never made (the claim is dropped). Today's claims without
    an answer are left alone: a live run may be waiting for it."""
    for aweme_id, age, day, key in refresh.claimed():
        if key is None or day is None:
            continue
        base = key.removesuffix(".json.gz")
        gone = next(
            (k for k in (f"{base}-http404.json.gz", f"{base}-error-gone.json.gz") if session.store.exists(k)), None
        )
        if session.store.exists(key):
            refresh.finish(aweme_id, age, "ok", 1, key)
        elif gone is not None:
            refresh.finish(aweme_id, age, "gone", 1, gone)
            refresh.mark_gone(aweme_id, "not found", now)
        elif day < session.day:
            refresh.release(aweme_id, age)
        else:
            continue
        report.claims_recovered += 1


def _ask(session: CaptureSession, archive: RefreshArchive, point: Due) -> tuple[str, str | None, dict | None]:
    """One re-resolution: ('ok', None, detail) or ('gone', reason, None); the answer is archived before it is read."""
    video = point.video
    with archive.at_age(point.age):
        try:
            response = session.client.post_detail(video.aweme_id, video.author_handle or "_")
        except VideoGone as exc:
            return "gone", exc.reason, None
    detail = response.json()
    return "ok", None, detail if isinstance(detail, dict) else None


def _last_key(archive: RefreshArchive, fallback: str) -> str:
    """The key this run's last answer went to (the 404 or the 'gone inside a 200' slug of a tombstone)."""
    return archive.keys[-1] if archive.keys else fallback


def refresh_videos(session: CaptureSession, *, now: datetime | None = None) -> RefreshReport:
    """Follow new downloads, then re-resolve the points due at ``now`` (default: the present) within today's
    allotment, most valuable first; then purge what ``tombstones.purge_raw_after_days`` says is due."""
    now = now or datetime.now(UTC)
    config = session.config.refresh
    report = RefreshReport(allotment=config.daily_credits)
    refresh = RefreshState(session.state)
    archive = session.archive if isinstance(session.archive, RefreshArchive) else RefreshArchive(session.archive)
    session.archive = archive
    session.client.on_response = archive.write
    _recover_claims(session, refresh, report, now)
    report.enrolled = enroll_new(session, refresh)
    tracked = {account.handle.lower() for account in session.config.accounts}
    points, report.skipped_late = due_points(
        refresh, list(config.ages_hours), tracked, now, config.max_age_days, session.day
    )
    report.due = len(points)
    for n, point in enumerate(points):
        aweme_id, age = point.video.aweme_id, point.age
        key = raw_key(session.day, POST_DETAIL.path, refresh_slug(aweme_id, age), prefix=archive.prefix)
        if not refresh.claim(aweme_id, age, session.day, config.daily_credits, key):
            if refresh.spent(session.day) >= config.daily_credits:
                report.left_by_allotment = len(points) - n
                break
            continue  # another run took this point meanwhile
        before = session.client.credits.total
        try:
            status, reason, detail = _ask(session, archive, point)
        except CreditBudgetExhausted as exc:
            refresh.release(aweme_id, age)
            report.budget_stop = exc
            break
        except SYSTEMIC as exc:  # the store, the network, the key: not this video's fault, the point stays open
            refresh.release(aweme_id, age)
            report.systemic_error = f"{type(exc).__name__}: {exc}"
            break
        except Exception as exc:  # noqa: BLE001 - an unreadable answer: paid for, archived, not asked again
            refresh.finish(aweme_id, age, "failed", session.client.credits.total - before, key)
            report.failed.append(f"{aweme_id} at {age:g} h: {type(exc).__name__}: {exc}"[:300])
            continue
        spent = session.client.credits.total - before
        report.credits += spent
        report.order.append((aweme_id, age))
        if status == "gone":
            gone_key = _last_key(archive, key.removesuffix(".json.gz") + "-http404.json.gz")
            refresh.finish(aweme_id, age, "gone", spent, gone_key)
            refresh.mark_gone(aweme_id, reason or "not found", now)
            report.gone[reason or "not found"] = report.gone.get(reason or "not found", 0) + 1
            continue
        refresh.finish(aweme_id, age, "ok", spent, key)
        author = (detail or {}).get("author")
        handle = as_text(author.get("unique_id") or author.get("uniqueId")) if isinstance(author, dict) else None
        refresh.note_views(aweme_id, as_int((detail or {}).get("play_count")), handle)
        report.refreshed += 1
        label = "tracked account" if point.tracked else "most viewed"
        report.by_priority[label] = report.by_priority.get(label, 0) + 1
    report.spent_today = refresh.spent(session.day)
    days = session.config.tombstones.purge_raw_after_days
    if days is not None and report.systemic_error is None:
        purge_gone(session, refresh, now - timedelta(days=days), report)
    return report


def _content_keys(session: CaptureSession, aweme_id: str) -> tuple[list[str], dict[str, set[str]]]:
    """The raw objects about one post that hold its content (details and comment pages, not its 404 answers) and
    its media, found through the state database's record of its files and the days it was asked about: the loose
    keys, and the live bundles holding the rest (bundle key -> the post's member keys). A compacted day's objects
    are bundle members, not loose objects."""
    from tiklive_assets.compliance.bundled import bundles_of_keys, iter_members

    files = session.state.files_for(aweme_id)
    loose = [record.storage_key for record in files]
    bundled: dict[str, set[str]] = {}
    for bundle, found in bundles_of_keys(session.store, loose).items():
        bundled.setdefault(bundle, set()).update(found)
    days = {record.ingest_date for record in files if record.ingest_date}
    days |= {day for _, _, day, _, _, _ in RefreshState(session.state).points(aweme_id=aweme_id) if day}
    prefix = session.archive.prefix or RAW_PREFIX

    def content(key: str) -> bool:
        parts = split_raw_key(key, prefix)
        return (
            parts is not None
            and parts.entity == aweme_id
            and "-http404" not in parts.slug
            and ("-error-" not in parts.slug)
        )

    for day in sorted(days):
        for endpoint in (POST_DETAIL, POST_COMMENTS, POST_COMMENT_REPLIES):
            folder = f"{prefix}/{day:%Y/%m/%d}/{endpoint.name}/{aweme_id}"
            loose.extend(info.key for info in session.store.list(folder) if content(info.key))
            for live, member in iter_members(session.store, folder):
                if content(member.key):
                    bundled.setdefault(live.key, set()).add(member.key)
    return list(dict.fromkeys(loose)), bundled


def _unless(member: Member, body: bytes, gone: set[str]) -> bytes | None:
    return None if member.key in gone else body


def _purge_bundled(session: CaptureSession, holds: HoldSet, bundled: dict[str, set[str]], report: RefreshReport) -> int:
    """Remove the members ``bundled`` names from their bundles by writing each bundle's verified next generation
    (the other members keep their exact bytes), as an erasure does; a bundle a legal hold keeps (a hold on it or on
    any member) is left as it is. Returns how many of the members are left (held, or the rewrite did not
    complete)."""
    from tiklive_assets.compliance.bundled import RewriteFailed, bundle_hold, rewrite_bundle

    left = 0
    for bundle, keys in sorted(bundled.items()):
        if bundle_hold(holds, session.store, bundle) is not None:
            report.purge_held += len(keys)
            left += len(keys)
            continue
        try:
            result = rewrite_bundle(session.store, bundle, partial(_unless, gone=keys))
        except (RewriteFailed, NotFound) as exc:  # the old generation is kept; the next run tries again
            log.warning("purge: %s not rewritten (%s); retried next run", bundle, exc)
            left += len(keys)
            continue
        if result.conflict:
            log.warning("purge: %s got a new generation concurrently; retried next run", bundle)
            left += len(keys)
            continue
        report.purged_objects += len(result.removed)
    return left


def purge_gone(session: CaptureSession, refresh: RefreshState, gone_before: datetime, report: RefreshReport) -> None:
    """Delete the content of videos gone since before ``gone_before`` (loose objects, and bundle members by a
    rewrite of their bundle), except what a legal hold covers. A video is marked purged only once none of its
    content is left, loose or bundled; until then it stays due and is tried again by the next run."""
    from tiklive_assets.compliance.legal_hold import LegalHolds

    holds = LegalHolds(session.state).snapshot()
    for gone in refresh.gone(before=gone_before):
        left = 0
        loose, bundled = _content_keys(session, gone.aweme_id)
        for key in loose:
            if holds.covers(key) is not None:
                if session.store.exists(key):
                    report.purge_held += 1
                    left += 1
                continue
            if session.store.exists(key):
                session.store.delete(key)
                report.purged_objects += 1
        left += _purge_bundled(session, holds, bundled, report)
        if not left:  # what was loose may have been packed meanwhile: purged only when nothing is left anywhere
            again_loose, again_bundled = _content_keys(session, gone.aweme_id)
            left = sum(session.store.exists(key) for key in again_loose) + sum(map(len, again_bundled.values()))
        if left:
            report.purge_left.append(gone.aweme_id)
            log.warning("purge: %s keeps %d content object(s) (held or not rewritten): retried next run",
                        gone.aweme_id, left)  # fmt: skip
        else:
            refresh.mark_purged(gone.aweme_id)

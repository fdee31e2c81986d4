"""Detail and download workers: resolve each queued id once with /post-detail/, then download the MP4 and cover at once.

CDN URLs expire within minutes, so they are used immediately and never stored: a 403 from the CDN re-resolves
the id (one more credit) and retries once. Files stream in chunks to a ``.part`` file (memory stays bounded
whatever the size) and only then enter the store, atomically. A 404 from /post-detail/ is a dead letter: the
credit is spent, and the id is never tried again.

Crash-only: every claim names its owner (this process: run id, host, pid), renewed by a heartbeat thread, so a
killed run's ids go to the next run at once while a live run's are never taken (on this host, however late its
heartbeat). Each paid /post-detail/ request, retries included, is preceded by a renewal and re-check of the claim
in one transaction (``confirm_claim``), so an id taken over meanwhile is never bought twice. A detail already
archived today (the kill came after the answer was paid for and stored) is read back from the archive, never
bought again; every write reaches the store before the state database records it.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tiklive_assets import progress
from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.capture.units import heartbeat_seconds
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.state import ClaimOwner, QueueItem, StateUnavailable
from tiklive_assets.storage.base import StoreError
from tiklive_assets.storage.keys import (
    RAW_PREFIX,
    InvalidKeyPart,
    check_id,
    cover_key,
    image_key,
    raw_key,
    sidecar_key,
    sound_key,
    video_key,
)
from tiklive_assets.tikliveapi.endpoints import POST_DETAIL
from tiklive_assets.tikliveapi.errors import (
    AuthError,
    BadResponse,
    CreditBudgetExhausted,
    RateLimited,
    TransientError,
    VideoGone,
)
from tiklive_assets.tolerant import as_text, image_list, unwrap

log = logging.getLogger(__name__)
CHUNK = 1 << 16


# Failures that say nothing about the id being processed. They stop the run and never count toward dead-lettering
# an id, so an outage cannot turn the whole queue into dead letters.
SYSTEMIC = (AuthError, TransientError, RateLimited, StoreError, StateUnavailable, OSError, ConnectionError)


class CdnExpired(Exception):
    """The signed CDN URL answered 403: it expired before we used it."""


class DownloadFailed(Exception):
    pass


@dataclass
class VideosReport:
    resolved: int = 0
    downloaded: int = 0
    photo_posts: int = 0  # of the downloaded: slideshows (images + sound), not videos
    re_resolved: int = 0
    bytes: int = 0
    dead: Counter = field(default_factory=Counter)  # by reason
    failed: list[str] = field(default_factory=list)
    budget_stop: CreditBudgetExhausted | None = None  # the day's budget or the account's balance ran out
    systemic_error: str | None = None  # a failure of the system, not of one id: the run stops, no id is blamed
    details_reused: int = 0  # details already archived today (a killed run paid for them): read back, not bought
    claims_lost: int = 0  # ids this run had claimed but another run took over while this one was silent
    claims_taken_over: int = 0  # claims of dead runs (process gone, or silent) freed for this run
    run_id: str | None = None
    left: dict = field(default_factory=dict)  # what the run leaves pending or claimed, and why (left_behind())
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def _stream_to_part(session: CaptureSession, url: str, suffix: str) -> tuple[Path, str, int]:
    """Stream one CDN object to a .part file; return (path, sha256, size). Never holds the file in memory.

    Through the hardened fetcher (capture/cdn.py): https or a trusted origin only, no inside address, a size cap
    and a total deadline. A URL that can never work is this id's DownloadFailed; an unreachable or stalling CDN
    raises ConnectionError (systemic); an expired one CdnExpired."""
    from tiklive_assets.capture import cdn

    try:
        return cdn.fetch_media(session, url, suffix)
    except cdn.MediaExpired as exc:
        raise CdnExpired(exc.url) from None
    except (cdn.MediaRefused, cdn.MediaStatus) as exc:
        raise DownloadFailed(str(exc)) from None


@dataclass(frozen=True)
class Media:
    """One file of a post to fetch from the CDN: where it goes, and the URLs to try in order."""

    kind: str  # 'video', 'cover', 'sound' or 'image-<n>' (the state database's file kinds)
    key: str
    urls: tuple[str, ...]
    suffix: str
    content_type: str


def photo_images(detail: dict) -> list[str]:
    """A photo (slideshow) post's image URLs in order, or [] for a video post.

    Seen as ``images: ["https://…jpg", …]`` (this API family) and as objects carrying the URL under ``url``,
    ``display_image.url_list`` or ``imageURL.urlList`` (TikTok's own shapes).
    """
    urls = []
    for image in image_list(detail) or ():
        url = image if isinstance(image, str) else _first_url(image)
        if url:
            urls.append(url)
    return urls


def _first_url(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        return next((u for u in map(_first_url, value) if u), None)
    if isinstance(value, dict):
        for name in ("url", "url_list", "urlList", "display_image", "imageURL", "image_url"):
            if name in value and (found := _first_url(value[name])):
                return found
    return None


def media_plan(day, handle: str, aweme_id: str, detail: dict) -> list[Media]:
    """What to download for one resolved post.

    A video post: the MP4 (hdplay, else play; both without watermark) and the cover. A photo post (``images[]``):
    every image, the sound (its ``play`` is the MP3, never stored as an ``.mp4``) and the cover.
    """
    images = photo_images(detail)
    plan: list[Media] = []
    if images:
        plan += [
            Media(f"image-{n}", image_key(day, handle, aweme_id, n), (url,), ".jpg", "image/jpeg")
            for n, url in enumerate(images, start=1)
        ]
        sound = tuple(u for u in (detail.get("play"), detail.get("music")) if isinstance(u, str) and u)
        if sound:
            plan.append(Media("sound", sound_key(day, handle, aweme_id), sound[:2], ".mp3", "audio/mpeg"))
    else:
        urls = tuple(detail[name] for name in ("hdplay", "play") if isinstance(detail.get(name), str) and detail[name])
        if not urls:
            raise DownloadFailed("the detail response has neither hdplay nor play (nor images[] of a photo post)")
        plan.append(Media("video", video_key(day, handle, aweme_id), urls, ".mp4", "video/mp4"))
    if isinstance(detail.get("cover"), str) and detail["cover"]:
        plan.append(Media("cover", cover_key(day, aweme_id), (detail["cover"],), ".jpg", "image/jpeg"))
    return plan


def _download(session: CaptureSession, media: Media) -> Path:
    """Each URL in turn (hdplay, then play); a failure other than an expired URL falls back to the next one."""
    for url in media.urls[:-1]:
        try:
            return _stream_to_part(session, url, media.suffix)[0]
        except DownloadFailed as exc:
            log.warning("%s; falling back to the next URL", exc)
    return _stream_to_part(session, media.urls[-1], media.suffix)[0]


def _resolve(session: CaptureSession, item: QueueItem) -> tuple[dict, bytes]:
    response = session.client.post_detail(item.aweme_id, item.author_handle or "_")
    crashpoint("videos.detail.archived")  # paid for and archived, not yet recorded anywhere
    detail = response.json()
    if not isinstance(detail, dict):
        raise BadResponse(
            POST_DETAIL.path, response.status, f"expected an object for {item.aweme_id}, got {type(detail).__name__}"
        )
    return detail, response.body


class ClaimTaken(Exception):
    """The id's claim is no longer this run's (another run took it over): its /post-detail/ is not bought here."""


def _buy_detail(
    session: CaptureSession, item: QueueItem, report: VideosReport, slots: threading.Semaphore, owner: ClaimOwner | None
) -> tuple[dict, bytes] | None:
    """``_resolve`` for a claimed id, or None when nothing more is to be done (dead-lettered, or taken over). The
    claim is renewed and re-checked before the credit is spent (``paying_for``): a claim not ours sends nothing."""

    def still_ours() -> bool:
        return owner is None or session.state.confirm_claim(item.aweme_id, owner)

    fresh_for = owner.heartbeat_seconds if owner is not None else 0.0
    try:
        with slots, session.paying_for(still_ours, lambda: ClaimTaken(item.aweme_id), fresh_for):
            return _resolve(session, item)
    except VideoGone as exc:
        _dead_letter(session, item, exc, report)
    except ClaimTaken:
        report.add(claims_lost=1)  # another run holds it now: it pays, not us
    return None


def _archived_detail(session: CaptureSession, item: QueueItem) -> tuple[dict, bytes] | VideoGone | None:
    """Today's archived /post-detail/ answer for the id, if a run (killed before recording it) already paid for it.

    Returns the detail and its exact bytes, a VideoGone for an archived 404 (never bought twice), or None."""
    try:
        slug = check_id(item.aweme_id, "aweme_id")
    except InvalidKeyPart:
        return None
    prefix = getattr(session.archive, "prefix", RAW_PREFIX)
    store = session.store
    gone = raw_key(session.day, POST_DETAIL.path, f"{slug}-http404", prefix=prefix)
    if not store.exists(gone):  # "deleted" said inside a 200 is a 404 too (archived under -error-gone)
        gone = raw_key(session.day, POST_DETAIL.path, f"{slug}-error-gone", prefix=prefix)
    if store.exists(gone):
        try:
            body = json.loads(gzip.decompress(store.get_bytes(gone)))
            reason = next(
                (
                    body[k]
                    for k in ("error", "message", "msg")  # as the client reads a 404's reason
                    if isinstance(body, dict) and isinstance(body.get(k), str)
                ),
                "not found",
            )
        except (OSError, EOFError, ValueError):
            reason = "not found"
        return VideoGone(item.aweme_id, reason)
    key = raw_key(session.day, POST_DETAIL.path, slug, prefix=prefix)
    if not store.exists(key):
        return None
    try:
        body = gzip.decompress(store.get_bytes(key))
        detail = json.loads(body)
    except (OSError, EOFError, ValueError):
        return None  # unreadable: buy it again (the new bytes go beside it)
    detail = unwrap(detail)
    return (detail, body) if isinstance(detail, dict) else None


def _dead_letter(session: CaptureSession, item: QueueItem, exc: VideoGone, report: VideosReport) -> None:
    session.state.mark_dead(item.aweme_id, exc.reason, 404)
    with report._lock:
        report.dead[exc.reason] += 1


def archive_one(
    session: CaptureSession,
    item: QueueItem,
    report: VideosReport,
    api_slots: threading.BoundedSemaphore,
    owner: ClaimOwner | None = None,
) -> None:
    state, store, day = session.state, session.store, session.day
    if owner is not None and not state.claim_held(item.aweme_id, owner):
        report.add(claims_lost=1)  # another run took it over while this one was silent: it pays, not us
        return
    reused = _archived_detail(session, item)
    if isinstance(reused, VideoGone):
        _dead_letter(session, item, reused, report)
        return
    if reused is not None:
        detail, raw = reused
        report.add(details_reused=1)
    else:
        if (bought := _buy_detail(session, item, report, api_slots, owner)) is None:
            return
        detail, raw = bought
    report.add(resolved=1)
    author = detail.get("author")
    handle = (
        (as_text(author.get("unique_id") or author.get("uniqueId")) if isinstance(author, dict) else None)
        or item.author_handle
        or "unknown"
    )
    state.mark_resolved(item.aweme_id, handle)
    crashpoint("videos.resolved.marked")
    files: list[tuple[Media, Path]] = []
    try:
        for attempt in (1, 2):
            try:
                for media in media_plan(day, handle, item.aweme_id, detail):
                    files.append((media, _download(session, media)))
                    crashpoint(f"videos.{media.kind}.part_written")  # in scratch, not yet in the store
                break
            except CdnExpired:
                for _, path in files:
                    path.unlink(missing_ok=True)
                files.clear()
                if attempt == 2:
                    raise DownloadFailed("CDN URL expired twice in a row") from None
                # one more credit, fresh URLs; gone since the first resolution: dead, not retried on every run
                if (bought := _buy_detail(session, item, report, api_slots, owner)) is None:
                    return
                detail, raw = bought
                report.add(re_resolved=1)
        # Every object reaches the store first, then one transaction records them all and marks the id downloaded:
        # a record always names bytes that exist, and a crash before it leaves the id resolved (redone next run).
        stored: list[tuple[str, str, str | None, int | None]] = []
        for media, path in files:
            result = store.put_file(media.key, path, content_type=media.content_type)
            crashpoint(f"videos.{media.kind}.stored")
            stored.append((media.kind, media.key, result.sha256, result.size))
        sidecar = sidecar_key(day, handle, item.aweme_id)
        result = store.put_bytes(sidecar, raw, content_type="application/json")
        crashpoint("videos.sidecar.stored")
        stored.append(("sidecar", sidecar, result.sha256, result.size))
        state.record_files_downloaded(item.aweme_id, stored, day)
        crashpoint("videos.queue.marked")
        report.add(bytes=sum(size or 0 for kind, _, _, size in stored if kind != "sidecar"), downloaded=1)
        if any(media.kind == "sound" or media.kind.startswith("image-") for media, _ in files):
            report.add(photo_posts=1)
    finally:
        for _, path in files:
            path.unlink(missing_ok=True)


class _Heartbeat(threading.Thread):
    """Renews this run's claims every ``owner.heartbeat_seconds`` while ids are in flight, long downloads included."""

    def __init__(self, session: CaptureSession, owner: ClaimOwner, lease: timedelta):
        super().__init__(name="claim-heartbeat", daemon=True)
        self.session, self.owner, self.lease = session, owner, lease
        self.stopped = threading.Event()
        self.lapsed = False  # a renewal came after the owner had expired: claims may have been taken meanwhile

    def run(self) -> None:
        while not self.stopped.wait(self.owner.heartbeat_seconds):
            try:
                if not self.session.state.heartbeat(self.owner, lease=self.lease):
                    self.lapsed = True
                    log.warning(
                        "claims of run %s lapsed (no heartbeat for %.0f s); ids taken by another run are skipped",
                        self.owner.run_id,
                        self.owner.stale_after,
                    )
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; claim_held() guards every payment
                log.warning("claim heartbeat failed: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def archive_pending(
    session: CaptureSession, *, batch: int | None = None, limit: int | None = None, run_id: str | None = None
) -> VideosReport:
    """Resolve and download queued ids until the queue is empty, ``limit`` is reached, or the budget stops us.

    This process registers as a claim owner (``run_id``: the Dagster run's, else a generated one) and heartbeats
    every ``capture.claim_heartbeat_seconds``: its claims hold however long an id takes, and are freed at once when
    it dies (the next run finds its process gone on this host, or its heartbeat silent for three intervals).
    Ids left ``resolved`` by a crashed run are claimed first; their archived detail is reused when it is today's.
    An id that fails transiently keeps its claim until this run ends (so this run never loops on it) and is then
    released for the next run. ``report.left`` says what stays pending or claimed, and why.
    """
    report = VideosReport()
    capture = session.config.capture
    # Claim just in time, a little more than the workers can take at once.
    batch = batch or 2 * capture.download_concurrency
    lease = timedelta(seconds=capture.claim_lease_seconds)
    owner = ClaimOwner.this_process(run_id, heartbeat_seconds(session))
    report.run_id = owner.run_id
    api_slots = threading.BoundedSemaphore(capture.api_concurrency)
    unfinished: list[tuple[str, bool]] = []  # (id, refund the attempt: it was never really tried)
    claimed = 0
    stop = threading.Event()
    session.state.register_owner(owner)
    beats = _Heartbeat(session, owner, lease)
    beats.start()

    def work(item: QueueItem) -> None:
        if stop.is_set():
            unfinished.append((item.aweme_id, True))
            return
        try:
            archive_one(session, item, report, api_slots, owner)
        except CreditBudgetExhausted as exc:
            report.budget_stop = exc
            unfinished.append((item.aweme_id, True))
            stop.set()
        except SYSTEMIC as exc:  # not this id's fault (key revoked, store or disk down, API unreachable): stop
            report.systemic_error = f"{type(exc).__name__}: {exc}"
            unfinished.append((item.aweme_id, True))
            stop.set()
        except Exception as exc:  # noqa: BLE001 - this id's own failure must not stop the batch
            problem = f"{type(exc).__name__}: {exc}"
            if item.attempts >= capture.max_attempts:  # permanent in practice: stop paying a credit per run for it
                session.state.mark_dead(item.aweme_id, f"gave up after {item.attempts} attempts: {problem}"[:500], None)
                with report._lock:
                    report.dead["gave up after repeated failures"] += 1
                return
            log.warning("%s: %s (left in the queue for the next run)", item.aweme_id, problem)
            session.state.note_failure(item.aweme_id, problem)
            unfinished.append((item.aweme_id, False))
            with report._lock:
                report.failed.append(f"{item.aweme_id}: {problem}")

    depth = session.state.queue_depth()  # what this run can take: for the progress shown by `tiklive run`
    queued = depth.get("pending", 0) + depth.get("resolved", 0)
    try:
        with (
            ThreadPoolExecutor(max_workers=capture.download_concurrency, thread_name_prefix="capture") as pool,
            progress.task("videos", total=queued if limit is None else min(queued, limit)) as shown,
        ):
            in_flight: set = set()
            running: set[str] = set()  # ids in flight: a claim that outlived its lease is not taken twice
            exhausted = False
            while True:
                # Top up just in time: claims never wait long enough in line to outlive their lease.
                while not exhausted and not stop.is_set() and len(in_flight) < batch // 2 + 1:
                    size = batch - len(in_flight) if limit is None else min(batch - len(in_flight), limit - claimed)
                    if size <= 0:
                        exhausted = True
                        break
                    # a run killed on this host (its process gone) frees its claims now, not after a lease
                    report.add(claims_taken_over=len(session.state.expire_dead_owners()))
                    items = session.state.claim_pending(size, lease=lease, state="resolved", owner=owner)
                    items += session.state.claim_pending(size - len(items), lease=lease, state="pending", owner=owner)
                    if not items:
                        exhausted = True
                        break
                    crashpoint("videos.claimed")
                    items = [item for item in items if item.aweme_id not in running]
                    claimed += len(items)
                    running.update(item.aweme_id for item in items)
                    in_flight.update(pool.submit(work, item) for item in items)
                if not in_flight:
                    break
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
                    shown.advance()
    finally:
        beats.stop()
        for aweme_id, refund in unfinished:
            session.state.release(aweme_id, refund_attempt=refund, owner=owner)
        session.state.end_owner(owner)
    report.left = left_behind(session, report, capture.max_attempts)
    return report


def left_behind(
    session: CaptureSession, report: VideosReport | None = None, max_attempts: int | None = None, limit: int = 50
) -> dict:
    """What the queue still holds that is not downloaded, and why: for the run summary and the asset metadata.

    Reasons: held by a live run (another process is working on it), the run's budget or balance stop, a systemic
    stop (the store, the network, the key), failed N times (its own error, retried next run), or not reached.
    """
    total, items = session.state.left_behind(limit=10_000)
    by_reason: Counter = Counter()
    examples: list[dict] = []
    for item in items:
        if item.owner_alive:
            why = "held by a live run"
        elif report is not None and report.budget_stop is not None:
            why = "credit stop (budget or balance)"
        elif report is not None and report.systemic_error:
            why = f"systemic stop: {report.systemic_error}"[:200]
        elif item.last_error:
            why = f"failed {item.attempts} time(s)" + (f" of {max_attempts}" if max_attempts else "")
        elif item.owner_id is not None:
            why = "claimed by a run that stopped (free for the next run)"
        else:
            why = "not reached by this run"
        by_reason[why if not why.startswith("failed") else "failed (retried next run)"] += 1
        if len(examples) < limit:
            examples.append(
                {
                    "id": item.aweme_id,
                    "state": item.state,
                    "attempts": item.attempts,
                    "why": why,
                    **({"last_error": item.last_error[:200]} if item.last_error else {}),
                }
            )
    if total > len(items):
        by_reason["not listed (more than 10,000)"] += total - len(items)
    return {"count": total, "by_reason": dict(by_reason), "ids": examples}

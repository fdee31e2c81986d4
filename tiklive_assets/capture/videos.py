"""Detail and download workers: resolve each queued id once with /post-detail/, then download the MP4 and cover at once.

CDN URLs expire within minutes, so they are used immediately and never stored: a 403 from the CDN re-resolves
the id (one more credit) and retries once. Files stream in chunks to a ``.part`` file (memory stays bounded
whatever the size) and only then enter the store, atomically. A 404 from /post-detail/ is a dead letter: the
credit is spent, and the id is never tried again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import requests
from tqdm import tqdm

from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.state import QueueItem
from tiklive_assets.storage.base import StoreError
from tiklive_assets.storage.keys import cover_key, image_key, sidecar_key, sound_key, video_key
from tiklive_assets.tikliveapi.errors import (
    AuthError,
    BadResponse,
    CreditBudgetExhausted,
    RateLimited,
    TransientError,
    VideoGone,
)
from tiklive_assets.tolerant import as_text

log = logging.getLogger(__name__)
CHUNK = 1 << 16


# Failures that say nothing about the id being processed. They stop the run and never count toward dead-lettering
# an id, so an outage cannot turn the whole queue into dead letters.
SYSTEMIC = (AuthError, TransientError, RateLimited, StoreError, OSError, ConnectionError)


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
    images = detail.get("images")
    if not isinstance(images, list):
        images = (detail.get("image_post_info") or {}).get("images") if isinstance(detail.get("image_post_info"), dict) else None
    urls = []
    for image in images or ():
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
        plan += [Media(f"image-{n}", image_key(day, handle, aweme_id, n), (url,), ".jpg", "image/jpeg")
                 for n, url in enumerate(images, start=1)]
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
    detail = response.json()
    if not isinstance(detail, dict):
        raise BadResponse("/post-detail/", response.status, f"expected an object for {item.aweme_id}, got {type(detail).__name__}")
    return detail, response.body


def _dead_letter(session: CaptureSession, item: QueueItem, exc: VideoGone, report: VideosReport) -> None:
    session.state.mark_dead(item.aweme_id, exc.reason, 404)
    with report._lock:
        report.dead[exc.reason] += 1


def archive_one(session: CaptureSession, item: QueueItem, report: VideosReport, api_slots: threading.BoundedSemaphore) -> None:
    state, store, day = session.state, session.store, session.day
    try:
        with api_slots:
            detail, raw = _resolve(session, item)
    except VideoGone as exc:
        _dead_letter(session, item, exc, report)
        return
    report.add(resolved=1)
    author = detail.get("author")
    handle = (as_text(author.get("unique_id") or author.get("uniqueId")) if isinstance(author, dict) else None) \
        or item.author_handle or "unknown"
    state.mark_resolved(item.aweme_id, handle)
    files: list[tuple[Media, Path]] = []
    try:
        for attempt in (1, 2):
            try:
                for media in media_plan(day, handle, item.aweme_id, detail):
                    files.append((media, _download(session, media)))
                break
            except CdnExpired:
                for _, path in files:
                    path.unlink(missing_ok=True)
                files.clear()
                if attempt == 2:
                    raise DownloadFailed("CDN URL expired twice in a row") from None
                try:
                    with api_slots:
                        detail, raw = _resolve(session, item)  # one more credit, fresh URLs
                except VideoGone as exc:  # gone since the first resolution: dead, not retried on every run
                    _dead_letter(session, item, exc, report)
                    return
                report.add(re_resolved=1)
        for media, path in files:
            result = store.put_file(media.key, path, content_type=media.content_type)
            state.record_file(item.aweme_id, media.kind, media.key, result.sha256, result.size, day)
            report.add(bytes=result.size)
        if any(media.kind == "sound" or media.kind.startswith("image-") for media, _ in files):
            report.add(photo_posts=1)
        sidecar = sidecar_key(day, handle, item.aweme_id)
        result = store.put_bytes(sidecar, raw, content_type="application/json")
        state.record_file(item.aweme_id, "sidecar", sidecar, result.sha256, result.size, day)
        state.mark_downloaded(item.aweme_id)
        report.add(downloaded=1)
    finally:
        for _, path in files:
            path.unlink(missing_ok=True)


def archive_pending(session: CaptureSession, *, batch: int | None = None, limit: int | None = None) -> VideosReport:
    """Resolve and download queued ids until the queue is empty, ``limit`` is reached, or the budget stops us.

    Ids left ``resolved`` by a crashed run (their URLs long expired) are claimed first and resolved again.
    An id that fails transiently keeps its claim until this run ends (so this run never loops on it) and is then
    released for the next run.
    """
    report = VideosReport()
    capture = session.config.capture
    # Claim just in time, a little more than the workers can take at once, so no claim outlives its lease.
    batch = batch or 2 * capture.download_concurrency
    lease = timedelta(seconds=capture.claim_lease_seconds)
    api_slots = threading.BoundedSemaphore(capture.api_concurrency)
    unfinished: list[tuple[str, bool]] = []  # (id, refund the attempt: it was never really tried)
    claimed = 0
    stop = threading.Event()

    def work(item: QueueItem) -> None:
        if stop.is_set():
            unfinished.append((item.aweme_id, True))
            return
        try:
            archive_one(session, item, report, api_slots)
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
            unfinished.append((item.aweme_id, False))
            with report._lock:
                report.failed.append(f"{item.aweme_id}: {problem}")

    try:
        with ThreadPoolExecutor(max_workers=capture.download_concurrency, thread_name_prefix="capture") as pool:
            progress = tqdm(desc="videos", unit="video", disable=not sys.stderr.isatty(), leave=False)
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
                    items = session.state.claim_pending(size, lease=lease, state="resolved")
                    items += session.state.claim_pending(size - len(items), lease=lease, state="pending")
                    if not items:
                        exhausted = True
                        break
                    items = [item for item in items if item.aweme_id not in running]
                    claimed += len(items)
                    running.update(item.aweme_id for item in items)
                    in_flight.update(pool.submit(work, item) for item in items)
                if not in_flight:
                    break
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
                    progress.update(1)
            progress.close()
    finally:
        for aweme_id, refund in unfinished:
            session.state.release(aweme_id, refund_attempt=refund)
    return report

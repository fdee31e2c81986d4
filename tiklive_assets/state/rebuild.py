"""Rebuild the state database's knowledge of every video, and the user-id cache, from the archive alone.

For when the state database is lost and no snapshot is recent enough (or to catch up after restoring one): what
capture wrote to the store says what it had done, because every write reaches the store before the state records it.

- **downloaded**: the post's sidecar ``videos/dt=…/author=<handle>/<aweme_id>.json`` exists (it is written after
  the MP4 or images and sound); its files (video, sound, images, sidecar, the cover under ``covers/``) are
  recorded in ``archived_files`` with their size (no sha256: the object in the store is the truth).
- **dead**: a ``/post-detail/`` 404 is archived (``<aweme_id>-http404``, or ``-error-gone``: a 404 inside a 200);
  its dead letter gets the reason the answer gave.
- **resolved**: a ``/post-detail/`` answer is archived but the files are not all stored: the next run downloads
  it (resolving it again, as it would have anyway: CDN URLs expire within minutes).
- **user ids**: each archived ``/userid/`` answer that holds a numeric id, the latest day's winning.

A compacted day (its raw objects packed into one bundle per endpoint) is read from its bundles: the post-detail
and user-id bundles' indexes give the keys and capture times, and the few bodies needed (404s, user ids) come from
one read of each bundle; a key both loose and bundled counts once.

It merges: an id the database already knows only moves forward (pending, resolved, dead, downloaded), so running it
twice, or after a restore, changes nothing more than the archive says. Discovery cursors, walk markers and the
credit ledger are not rebuilt: a run after a rebuild walks today's listings again (listing pages, never a detail).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tiklive_assets.storage import NotFound, ObjectInfo
from tiklive_assets.storage.bundles import Bundle, live_bundles_of_day, locate, read_bundle, read_member
from tiklive_assets.storage.keys import (
    COVERS_PREFIX,
    RAW_PREFIX,
    VIDEOS_PREFIX,
    day_of_key,
    is_conflict_key,
    split_cover_key,
    split_raw_key,
    split_video_key,
)
from tiklive_assets.tikliveapi.endpoints import POST_DETAIL, USERID
from tiklive_assets.tolerant import as_text, unwrap

from .core import batches, utcnow

if TYPE_CHECKING:
    from .db import StateDB

RANK = {"pending": 0, "resolved": 1, "dead": 2, "downloaded": 3}  # a state only ever moves up this order
SOURCE = "archive"  # the queue's source of an id the rebuild added
GONE_SUFFIXES = ("-http404", "-error-gone")

Progress = Callable[[str], None]


@dataclass
class Video:
    aweme_id: str
    state: str = "pending"
    handle: str | None = None
    seen_at: datetime | None = None  # the oldest object about it: when it was first captured
    resolved_at: datetime | None = None
    downloaded_at: datetime | None = None
    detail_key: str | None = None
    dead_reason: str | None = None
    files: dict[str, tuple[str, int, date | None]] = field(default_factory=dict)  # kind -> (key, size, day)

    def saw(self, when: datetime) -> None:
        self.seen_at = when if self.seen_at is None else min(self.seen_at, when)


@dataclass
class RebuildReport:
    days_scanned: int = 0
    objects_read: int = 0
    by_state: dict[str, int] = field(default_factory=dict)  # what the archive says, per state
    added: int = 0  # ids new to the database
    moved_forward: int = 0  # ids the database knew in an earlier state
    unchanged: int = 0
    files: int = 0
    dead_letters: int = 0
    user_ids: int = 0


def _media_kind(name: str, aweme_id: str) -> str | None:
    """The archived_files kind of a file name under ``videos/`` (``<id>.mp4``, ``<id>-2.jpg``, ...), or None."""
    stem, _, ext = name.partition(".")
    if stem == aweme_id:
        return {"mp4": "video", "json": "sidecar", "mp3": "sound"}.get(ext)
    number = stem[len(aweme_id) + 1 :]
    if stem.startswith(f"{aweme_id}-") and number.isdigit() and ext == "jpg":
        return f"image-{int(number)}"
    return None


def _read_json(store: Any, key: str, bundle: Bundle | None = None) -> Any:
    """The JSON of a raw object: loose, from ``bundle`` when given, else from the bundle holding it (compacted)."""
    try:
        if bundle is not None:
            data = bundle.body(key)
        else:
            try:
                data = store.get_bytes(key)
            except NotFound:
                holder = locate(store, key)
                if holder is None:
                    return None
                data = read_member(store, holder, key)
        return unwrap(json.loads(gzip.decompress(data)))
    except (OSError, EOFError, ValueError, KeyError):
        return None


def _gone_reason(body: Any) -> str:
    """A 404's reason, as the client reads it: its ``error``, ``message`` or ``msg``."""
    if isinstance(body, dict):
        for name in ("error", "message", "msg"):
            if isinstance(body.get(name), str):
                return str(body[name])
    return "not found"


def _author(detail: Any) -> str | None:
    author = detail.get("author") if isinstance(detail, dict) else None
    return as_text(author.get("unique_id") or author.get("uniqueId")) if isinstance(author, dict) else None


class ArchiveScan:
    """What the archive says about each video and handle, gathered listing by listing."""

    def __init__(self, store: Any, say: Progress, raw_prefix: str = RAW_PREFIX) -> None:
        self.store, self.say, self.raw_prefix = store, say, raw_prefix
        self.videos: dict[str, Video] = {}
        self.user_ids: dict[str, str] = {}
        self.report = RebuildReport()
        self.media_days: set[date] = set()

    def video(self, aweme_id: str) -> Video:
        return self.videos.setdefault(aweme_id, Video(aweme_id))

    def scan_media(self) -> None:
        for prefix in (VIDEOS_PREFIX, COVERS_PREFIX):
            count = 0
            for info in self.store.list(prefix):
                count += 1
                day = day_of_key(info.key)
                if day is not None:
                    self.media_days.add(day)
                if prefix == VIDEOS_PREFIX:
                    parts = split_video_key(info.key)
                    handle, aweme_id = parts if parts else (None, None)
                else:
                    handle, aweme_id = None, split_cover_key(info.key)
                if not aweme_id or not aweme_id.isdigit():
                    continue
                video = self.video(aweme_id)
                video.saw(info.last_modified)
                if is_conflict_key(info.key):
                    continue  # a second capture of a file kept beside it: the record names the first
                kind = "cover" if prefix == COVERS_PREFIX else _media_kind(info.key.rsplit("/", 1)[1], aweme_id)
                if kind is None:
                    continue
                video.files[kind] = (info.key, int(info.size), day)
                if handle:
                    video.handle = handle
                if kind == "sidecar":  # written after every other file of the post: the post is downloaded
                    video.state = "downloaded"
                    video.downloaded_at = video.resolved_at = info.last_modified
                if count % 10_000 == 0:
                    self.say(f"  {prefix}: {count:,} object(s) listed")
            self.say(f"  {prefix}: {count:,} object(s)")

    def scan_day(self, day: date) -> None:
        self.report.days_scanned += 1
        bundles = live_bundles_of_day(self.store, day, self.raw_prefix)
        for endpoint, read in ((POST_DETAIL.path, self._detail), (USERID.path, self._userid)):
            name = endpoint.strip("/")
            seen = set()
            for info in self.store.list(f"{self.raw_prefix}/{day:%Y/%m/%d}/{name}/"):
                parts = split_raw_key(info.key, self.raw_prefix)
                if parts is not None:
                    seen.add(info.key)
                    read(parts.slug, info, None)
            if name not in bundles:
                continue
            bundle = read_bundle(self.store, bundles[name])  # the index now, a body only when one is needed
            for member in bundle.members:
                parts = split_raw_key(member.key, self.raw_prefix)
                if parts is not None and member.key not in seen:
                    read(parts.slug, ObjectInfo(member.key, member.size, member.fetched_at), bundle)

    def _detail(self, slug: str, info: Any, bundle: Bundle | None) -> None:
        gone = next((s for s in GONE_SUFFIXES if slug.endswith(s)), None)
        aweme_id = slug.removesuffix(gone) if gone else slug
        if not aweme_id.isdigit():
            return  # an answer that was not data (balance, upstream, notjson, invalid): nothing was learned
        video = self.video(aweme_id)
        video.saw(info.last_modified)
        if video.state == "downloaded":
            return
        if gone:
            if video.state != "dead":
                self.report.objects_read += 1
                video.state, video.dead_reason = "dead", _gone_reason(_read_json(self.store, info.key, bundle))
                video.resolved_at = info.last_modified
        elif video.state == "pending":
            video.state, video.detail_key, video.resolved_at = "resolved", info.key, info.last_modified

    def _userid(self, slug: str, info: Any, bundle: Bundle | None) -> None:
        if "-" in slug:
            return  # an answer kept under an error slug (a handle never holds '-')
        from tiklive_assets.tikliveapi.client import user_id_from

        self.report.objects_read += 1
        user_id = user_id_from(_read_json(self.store, info.key, bundle))
        if user_id is not None:
            self.user_ids[slug] = user_id  # days go oldest first: the latest answer wins

    def resolve_handles(self) -> None:
        """The author of each resolved-only post, from its archived detail (the queue resolves it with it)."""
        for video in self.videos.values():
            if video.state == "resolved" and video.handle is None and video.detail_key:
                self.report.objects_read += 1
                video.handle = _author(_read_json(self.store, video.detail_key))


def _days(first_day: date, today: date, also: Iterable[date]) -> list[date]:
    span = [first_day + timedelta(days=n) for n in range((today - first_day).days + 1)]
    return sorted(set(span) | {d for d in also if d <= today})


def _write_batch(tx: Any, batch: list[Video], report: RebuildReport, now: datetime) -> None:
    marks = ", ".join(["?"] * len(batch))
    known = dict(
        tx.fetchall(
            f"SELECT aweme_id, state FROM archive_queue WHERE aweme_id IN ({marks})", [v.aweme_id for v in batch]
        )
    )
    for v in batch:
        added = v.seen_at or now
        if v.aweme_id not in known:
            tx.execute(
                "INSERT INTO archive_queue (aweme_id, source, author_handle, state, attempts, added_at, resolved_at, "
                "downloaded_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)",
                [v.aweme_id, SOURCE, v.handle, v.state, added, v.resolved_at, v.downloaded_at, now],
            )
            report.added += 1
        elif RANK.get(str(known[v.aweme_id]), 0) < RANK[v.state]:
            tx.execute(
                "UPDATE archive_queue SET state = ?, author_handle = COALESCE(author_handle, ?), "
                "resolved_at = COALESCE(resolved_at, ?), downloaded_at = COALESCE(downloaded_at, ?), "
                "lease_until = NULL, claim_owner = NULL, updated_at = ? WHERE aweme_id = ?",
                [v.state, v.handle, v.resolved_at, v.downloaded_at, now, v.aweme_id],
            )
            if v.state == "downloaded":  # its files are stored: it did not stay dead
                tx.execute("DELETE FROM dead_letter WHERE aweme_id = ?", [v.aweme_id])
            report.moved_forward += 1
        else:
            report.unchanged += 1
        if v.state == "dead":
            report.dead_letters += len(
                tx.fetchall(
                    "INSERT INTO dead_letter (aweme_id, reason, http_status, failed_at) VALUES (?, ?, 404, ?) "
                    "ON CONFLICT (aweme_id) DO NOTHING RETURNING aweme_id",
                    [v.aweme_id, v.dead_reason, v.resolved_at or now],
                )
            )
        if v.state != "downloaded":
            continue
        for kind, (key, size, day) in sorted(v.files.items()):
            report.files += len(
                tx.fetchall(
                    "INSERT INTO archived_files (aweme_id, kind, storage_key, sha256, bytes, ingest_date, recorded_at) "
                    "VALUES (?, ?, ?, NULL, ?, ?, ?) ON CONFLICT (aweme_id, kind) DO NOTHING RETURNING aweme_id",
                    [v.aweme_id, kind, key, size, day, now],
                )
            )


def rebuild_from_archive(
    state: StateDB,
    store: Any,
    *,
    first_day: date,
    today: date | None = None,
    progress: Progress | None = None,
    raw_prefix: str = RAW_PREFIX,
) -> RebuildReport:
    """Scan the archive (media listings, then each day's detail and user-id answers from ``first_day`` to
    ``today``) and merge what it says into ``state`` (a StateDB); returns what was found and written."""
    say = progress or (lambda _message: None)
    scan = ArchiveScan(store, say, raw_prefix)
    say(f"listing media in {store.describe()}")
    scan.scan_media()
    days = _days(first_day, today or datetime.now(UTC).date(), scan.media_days)
    span = f", {days[0]} to {days[-1]}" if days else ""
    say(f"reading the detail and user-id answers of {len(days)} day(s){span}")
    for n, day in enumerate(days, start=1):
        scan.scan_day(day)
        if n % 30 == 0 or n == len(days):
            say(f"  {n}/{len(days)} day(s) read, {len(scan.videos):,} video(s) so far")
    scan.resolve_handles()
    report = scan.report
    videos = sorted(scan.videos.values(), key=lambda v: v.aweme_id)
    for video in videos:
        report.by_state[video.state] = report.by_state.get(video.state, 0) + 1
    videos = [v for v in videos if v.state != "pending"]  # only media of a post that never resolved: nothing known
    now = utcnow()
    for batch in batches(videos):
        with state._tx(write=True) as tx:
            _write_batch(tx, batch, report, now)
    for handle, user_id in sorted(scan.user_ids.items()):
        state.cache_user_id(handle, user_id)
        report.user_ids += 1
    say(
        f"rebuilt: {report.by_state.get('downloaded', 0):,} downloaded, {report.by_state.get('resolved', 0):,} "
        f"resolved, {report.by_state.get('dead', 0):,} dead ({report.added:,} new, {report.moved_forward:,} moved "
        f"forward, {report.unchanged:,} unchanged); {report.files:,} file record(s), {report.user_ids:,} user id(s)"
    )
    return report

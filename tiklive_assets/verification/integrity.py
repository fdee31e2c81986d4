"""Integrity of the archive and the warehouse: non-empty days, unique posts, and archived media and posts rows
that match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.bundles import BUNDLE_PREFIX, parse_bundle_key
from tiklive_assets.storage.keys import RAW_PREFIX
from tiklive_assets.warehouse import Warehouse
from tiklive_assets.warehouse.parse import raw_day_prefix


def first_archived_day(store: ObjectStore, prefix: str = RAW_PREFIX) -> date | None:
    """The first day with a raw object, loose or compacted into a bundle: listings are in key order on every
    store, and raw and bundle keys start with the day (``tiklive-raw/YYYY/MM/DD/``,
    ``tiklive-bundles/tiklive-raw/YYYY/MM/DD/``), so the first key found names it. None when nothing is archived."""
    firsts = [d for d in (_first_loose_day(store, prefix), _first_bundled_day(store, prefix)) if d is not None]
    return min(firsts) if firsts else None


def _first_loose_day(store: ObjectStore, prefix: str) -> date | None:
    for info in store.list(f"{prefix}/"):
        parts = info.key[len(prefix) + 1 :].split("/")
        if len(parts) > 3 and all(part.isdigit() for part in parts[:3]):
            try:
                return date(int(parts[0]), int(parts[1]), int(parts[2]))
            except ValueError:
                continue
    return None


def _first_bundled_day(store: ObjectStore, prefix: str) -> date | None:
    for info in store.list(f"{BUNDLE_PREFIX}/{prefix}/"):
        parsed = parse_bundle_key(info.key)
        if parsed is not None and parsed.archive_prefix == prefix:
            return parsed.day
    return None


def bundled_days(store: ObjectStore, prefix: str = RAW_PREFIX) -> set[date]:
    """Days with at least one bundle (one listing of the bundles: one object per endpoint and day)."""
    parsed = (parse_bundle_key(info.key) for info in store.list(f"{BUNDLE_PREFIX}/{prefix}/"))
    return {p.day for p in parsed if p is not None and p.archive_prefix == prefix}


def empty_archive_days(store: ObjectStore, today: date, first: date | None = None) -> list[date]:
    """Every past day (yesterday back to the first capture) with no raw object, loose or bundled (a compacted day
    has only bundles). Today is not judged: its capture may still be running. ``first`` defaults to the archive's
    first day; nothing archived means nothing is due."""
    first = first if first is not None else first_archived_day(store)
    if first is None:
        return []
    days = [first + timedelta(days=n) for n in range((today - first).days)]
    compacted = bundled_days(store)
    return [day for day in days if day not in compacted and next(iter(store.list(raw_day_prefix(day))), None) is None]


def duplicate_post_ids(warehouse: Warehouse, limit: int = 20) -> list[tuple[str, int]]:
    return warehouse.query(
        "SELECT aweme_id, count(*) FROM posts GROUP BY aweme_id HAVING count(*) > 1 ORDER BY 2 DESC LIMIT ?", [limit]
    )


@dataclass
class VideoConsistency:
    """``mp4_without_post``: archived media (an MP4, or a photo post's images) with no posts row;
    ``post_without_mp4``: posts rows whose storage_key (an MP4, or a photo post's first image) is not archived."""

    mp4_without_post: list[str]
    post_without_mp4: list[str]
    photo_posts: int = 0  # photo posts whose images were found: archived media, not missing MP4s

    @property
    def ok(self) -> bool:
        return not self.mp4_without_post and not self.post_without_mp4


def media_post_id(key: str) -> str | None:
    """The post a media key belongs to: ``<id>.mp4`` (a video), ``<id>-<n>.jpg`` (a photo post's n-th image);
    None for anything else (the ``.json`` sidecar, a photo post's ``.mp3`` sound, which travels with its images)."""
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".mp4"):
        return name[:-4]
    if name.endswith(".jpg"):
        stem, _, number = name[:-4].rpartition("-")
        return stem if stem and number.isdigit() else None
    return None


def video_consistency(store: ObjectStore, warehouse: Warehouse, today: date, window_days: int = 30) -> VideoConsistency:
    """Within the window: all archived media has a posts row, and every posts row that names media has it. A photo
    post has images and a sound instead of an MP4: it counts as archived media, never as a missing MP4."""
    since = today - timedelta(days=window_days)
    media_keys: dict[str, str] = {}
    for back in range(window_days + 1):
        day = today - timedelta(days=back)
        for info in store.list(f"videos/dt={day.isoformat()}/"):
            aweme_id = media_post_id(info.key)
            if aweme_id is not None:
                media_keys[info.key] = aweme_id
    rows = warehouse.query("SELECT aweme_id, storage_key FROM posts WHERE storage_key IS NOT NULL AND dt >= ?", [since])
    post_ids = {row[0] for row in warehouse.query("SELECT aweme_id FROM posts")}
    photos = {aweme_id for key, aweme_id in media_keys.items() if key.endswith(".jpg") and aweme_id in post_ids}
    return VideoConsistency(
        mp4_without_post=sorted(key for key, aweme_id in media_keys.items() if aweme_id not in post_ids),
        post_without_mp4=sorted(key for _, key in rows if key not in media_keys and not store.exists(key)),
        photo_posts=len(photos),
    )


def due_day(now: datetime, by_hour: int) -> date:
    """The latest day whose capture is due: today once ``by_hour`` UTC has passed, else yesterday."""
    return now.date() if now.hour >= by_hour else now.date() - timedelta(days=1)

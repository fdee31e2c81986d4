"""Integrity of the archive and the warehouse: non-empty days, unique posts, archived media and posts rows that match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tiklive_assets.storage import ObjectStore
from tiklive_assets.warehouse import Warehouse
from tiklive_assets.warehouse.parse import raw_day_prefix


def empty_archive_days(store: ObjectStore, today: date, window_days: int = 30) -> list[date]:
    """Past days in the window with no raw object, counted from the first day in the window that has one."""
    days = [today - timedelta(days=back) for back in range(window_days, 0, -1)]
    has_data = [next(iter(store.list(raw_day_prefix(day))), None) is not None for day in days]
    if True not in has_data:
        return []
    first = has_data.index(True)
    return [day for day, ok in zip(days[first:], has_data[first:]) if not ok]


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

"""Plain records returned by StateDB."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

QUEUE_STATES: tuple[str, ...] = ("pending", "resolved", "downloaded", "dead")
# A video post has a 'video' (MP4); a photo post has 'image-1', 'image-2', ... and a 'sound' (its MP3) instead.
FILE_KINDS: tuple[str, ...] = ("video", "cover", "sidecar", "sound")
IMAGE_KIND_PREFIX = "image-"


def is_file_kind(kind: str) -> bool:
    return kind in FILE_KINDS or (kind.startswith(IMAGE_KIND_PREFIX) and kind[len(IMAGE_KIND_PREFIX) :].isdigit())


@dataclass(frozen=True)
class QueueItem:
    aweme_id: str
    source: str
    author_handle: str | None
    state: str
    attempts: int


@dataclass(frozen=True)
class FileRecord:
    aweme_id: str
    kind: str
    storage_key: str
    sha256: str | None
    size: int | None
    ingest_date: date | None
    recorded_at: datetime | None


@dataclass(frozen=True)
class CursorRecord:
    scope: str
    value: str | None
    pages: int | None
    updated_at: datetime | None

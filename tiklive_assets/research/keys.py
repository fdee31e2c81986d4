"""Research archive key layout: the prefix and the slugs that name a window, a query and a page.

Shared by the archive writer and the warehouse, which must not import the client (the warehouse is replayable
from the archive alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tiklive_assets.research.windows import Window

RESEARCH_PREFIX = "research-raw"
VIDEO_SLUG = re.compile(r"(?P<window>\d{8}-\d{8})-q(?P<qhash>[0-9a-f]{10})-g(?P<gen>\d+)-cursor(?P<cursor>\d+)")
USER_PAGE_SLUG = re.compile(r"(?P<username>[A-Za-z0-9._]{1,64})-cursor(?P<cursor>\d+)")
COMMENT_PAGE_SLUG = re.compile(r"(?P<video_id>\d{1,40})-cursor(?P<cursor>\d+)")


def video_slug(window: Window, qhash: str, generation: int, cursor: int) -> str:
    return f"{window.key}-q{qhash}-g{int(generation)}-cursor{int(cursor)}"


@dataclass(frozen=True)
class VideoSlug:
    window: Window
    qhash: str
    generation: int
    cursor: int


def parse_video_slug(slug: str) -> VideoSlug | None:
    m = VIDEO_SLUG.fullmatch(slug)
    if not m:
        return None
    return VideoSlug(Window.from_key(m["window"]), m["qhash"], int(m["gen"]), int(m["cursor"]))

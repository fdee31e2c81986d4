"""The Research API archive's key names, re-exported from the one key layout, :mod:`tiklive_assets.storage.keys`.

Shared by the archive writer and the warehouse, which must not import the client (the warehouse is replayable
from the archive alone).
"""

from tiklive_assets.storage.keys import (
    COMMENT_PAGE_SLUG,
    RESEARCH_PREFIX,
    USER_PAGE_SLUG,
    VIDEO_SLUG,
    VideoSlug,
    parse_video_slug,
    video_slug,
)

__all__ = [
    "COMMENT_PAGE_SLUG",
    "RESEARCH_PREFIX",
    "USER_PAGE_SLUG",
    "VIDEO_SLUG",
    "VideoSlug",
    "parse_video_slug",
    "video_slug",
]

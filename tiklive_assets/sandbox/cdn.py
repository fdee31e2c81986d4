"""The sandbox's CDN: the media behind the signed, expiring URLs the API hands out, under ``/cdn/``.

``/cdn/<variant>/<key>.<ext>?expires=…&sig=…``: videos (``play``, ``wmplay``, ``hdplay``; MP4, streamed in
chunks), images (covers, avatars and a photo post's pictures; JPEG) and sounds (MP3). A URL whose signature does
not match or whose time is up is refused with 403, as the real CDN refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from .corpus import Corpus
from .endpoints import query_params
from .media import cover_bytes, iter_video_bytes, music_bytes
from .world import MUSIC

_CDN_RE = re.compile(r"^/cdn/([a-z_]+)/([0-9A-Za-z]+)\.(mp4|jpg|mp3)$")
_VIDEO_VARIANTS = {"play", "wmplay", "hdplay"}
_IMAGE_VARIANTS = {"cover", "origin_cover", "ai_dynamic_cover", "avatar", "image"}  # image: a photo post's pictures


class CdnAnswer(NamedTuple):
    """A CDN answer: a JSON ``error`` (and no media), or the media's type, length and bytes in chunks."""

    status: int
    error: dict | None
    content_type: str | None = None
    length: int = 0
    chunks: Iterable[bytes] = ()


_NOT_FOUND = CdnAnswer(404, {"error": "not found"})


def _media(content_type: str, data: bytes) -> CdnAnswer:
    return CdnAnswer(200, None, content_type, len(data), (data,))


def serve(corpus: Corpus, path: str, query: str, now: float) -> CdnAnswer:
    """The answer to ``GET path?query`` at ``now``."""
    m = _CDN_RE.match(path)
    if not m:
        return _NOT_FOUND
    variant, key, ext = m.groups()
    kind_ok = (
        (variant in _VIDEO_VARIANTS and ext == "mp4")
        or (variant in _IMAGE_VARIANTS and ext == "jpg")
        or (variant == "music" and ext == "mp3")
    )
    if not kind_ok:
        return _NOT_FOUND
    q = query_params(query)
    if not corpus.verify(path, q.get("expires", ""), q.get("sig", ""), now):
        return CdnAnswer(403, {"error": "URL expired"})
    if ext == "mp4":
        size = corpus.video_size(key, variant)
        return CdnAnswer(200, None, "video/mp4", size, iter_video_bytes(key, variant, size))
    if ext == "jpg":
        return _media("image/jpeg", cover_bytes(key))
    if key not in MUSIC:
        return _NOT_FOUND
    return _media("audio/mpeg", music_bytes(key))

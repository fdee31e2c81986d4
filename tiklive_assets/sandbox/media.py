"""The sandbox CDN: the exact bytes it serves (MP4s, JPEG covers, MP3s) and its signed, expiring URLs."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from .world import _h

CHUNK = 64 * 1024
_MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"  # 32-byte ftyp box


@lru_cache(maxsize=512)
def _block(key: str) -> bytes:
    """A 64 KiB deterministic pseudo-random block, doubled so any 64 KiB window is one slice."""
    b = random.Random(_h("cdn-block", key)).randbytes(CHUNK)
    return b + b


def iter_video_bytes(aweme_id: str | int, variant: str, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the bytes of one MP4 in chunks of at most ``chunk`` bytes (``chunk`` <= 64 KiB)."""
    chunk = max(1, min(chunk, CHUNK))
    head = _MP4_HEAD + (max(size - 32, 0)).to_bytes(4, "big") + b"mdat"
    head += f"{aweme_id}:{variant}:".encode()
    block = _block(f"{aweme_id}:{variant}")
    pos = 0
    while pos < size:
        n = min(chunk, size - pos)
        if pos < len(head):
            part = head[pos : pos + n]
            rest = n - len(part)
            out = part + block[:rest] if rest else part
        else:
            off = (pos - len(head)) % CHUNK
            out = block[off : off + n]
        yield out
        pos += n


def video_bytes(aweme_id: str | int, variant: str, size: int) -> bytes:
    """The exact bytes the sandbox CDN serves for ``/cdn/{variant}/{aweme_id}.mp4`` of that size."""
    return b"".join(iter_video_bytes(aweme_id, variant, size))


@lru_cache(maxsize=1024)
def cover_bytes(aweme_id: str | int) -> bytes:
    """The exact JPEG bytes the sandbox CDN serves for every cover variant of ``aweme_id``."""
    r = random.Random(_h("cover", aweme_id))
    n = 2048 + r.randrange(6144)
    body = r.randbytes(n).replace(b"\xff", b"\xfe")  # no stray markers
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9"


@lru_cache(maxsize=64)
def music_bytes(music_id: str) -> bytes:
    r = random.Random(_h("music", music_id))
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + r.randbytes(4096)


class SignedCdn:
    """CDN URLs signed with the corpus's ``secret``, valid for ``ttl`` seconds; mixed into Corpus, which sets these."""

    seed: int
    secret: bytes
    base_url: str
    video_size_base: int
    _ttl: Callable[[], float]

    if TYPE_CHECKING:  # provided by Corpus

        def now(self) -> float: ...

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.secret, f"{path}{expires}".encode(), hashlib.sha256).hexdigest()

    def cdn_url(self, variant: str, key: str, ext: str, now: float | None = None) -> str:
        now = self.now() if now is None else now
        path = f"/cdn/{variant}/{key}.{ext}"
        expires = int(now + float(self._ttl()))
        return f"{self.base_url}{path}?expires={expires}&sig={self.sign(path, expires)}"

    def verify(self, path: str, expires: str, sig: str, now: float | None = None) -> bool:
        now = self.now() if now is None else now
        try:
            exp = int(expires)
        except (TypeError, ValueError):
            return False
        if not hmac.compare_digest(self.sign(path, exp), sig or ""):
            return False
        return now <= exp

    def video_size(self, aweme_id: str | int, variant: str = "play") -> int:
        """Byte size of ``/cdn/{variant}/{aweme_id}.mp4``: deterministic, in [0.5, 1.5] x video_size."""
        u = (_h(self.seed, "size", aweme_id, variant) % 10_000) / 10_000
        return max(64, int(self.video_size_base * (0.5 + u)))

    def video_bytes(self, aweme_id: str | int, variant: str = "play") -> bytes:
        return video_bytes(aweme_id, variant, self.video_size(aweme_id, variant))

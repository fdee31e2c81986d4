"""Local TikLiveAPI sandbox: a real HTTP server (stdlib only) serving a deterministic synthetic corpus.

It speaks the exact wire format, with signed expiring CDN URLs, rate limiting, fault injection and request stats."""

from .corpus import Account, Corpus, Post, cover_bytes, post_url, video_bytes
from .server import API_ENDPOINTS, DEFAULT_API_KEY, Faults, SandboxConfig, SandboxServer

__all__ = [
    "API_ENDPOINTS",
    "Account",
    "Corpus",
    "DEFAULT_API_KEY",
    "Faults",
    "Post",
    "SandboxConfig",
    "SandboxServer",
    "cover_bytes",
    "post_url",
    "video_bytes",
]

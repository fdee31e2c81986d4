"""Recognising one TikTok user (their id and every handle) in object keys, byte streams and parsed JSON, and
removing them from JSON: what the erasure plan and the redacted rewrites are built on."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Any

from tiklive_assets.storage.keys import check_handle, check_id

SUBJECT_MASK = "<subject>"
# dict keys that make a dict a user object, and where its id / handle live
_USER_MARKERS = ("unique_id", "uniqueId", "username", "sec_uid", "secUid", "nickname")
_ID_KEYS = ("id", "uid", "user_id", "userId")
_HANDLE_KEYS = ("unique_id", "uniqueId", "username")
_OWNER_KEYS = ("author", "user", "owner")
_READ_CHUNK = 64 * 1024
_MAX_OUT = 1 << 20
_ERASED = "[erased]"
_SUFFIX_RE = re.compile(r"(?:\.json\.gz|\.json|\.mp4|\.mp3|\.jpg)?(?:\.conflict-[0-9a-f]{16})?$")


class ErasureError(RuntimeError):
    """The erasure cannot run as asked; the message says why. Nothing was changed."""


class UserMatcher:
    """Recognises one user (id and any of their handles) in keys, byte streams and parsed JSON."""

    def __init__(self, user_id: str | None, handles: Iterable[str]) -> None:
        self.user_id = check_id(str(user_id), "user_id") if user_id not in (None, "") else None
        self.handles = frozenset(check_handle(h.strip().lstrip("@")).lower() for h in handles if h and h.strip())
        if self.user_id is None and not self.handles:
            raise ErasureError("give the user's TikTok user id, handle, or both")
        parts: list[bytes] = []
        if self.user_id:
            parts.append(rb"(?<![0-9])" + self.user_id.encode() + rb"(?![0-9])")
        for h in sorted(self.handles):
            esc = re.escape(h).encode()
            parts.append(b'"' + esc + b'"')
            parts.append(b"@" + esc + rb"(?![A-Za-z0-9._])")
        self.pattern = re.compile(b"|".join(parts), re.IGNORECASE)
        self.overlap = max(len(p) for p in [self.user_id or ""] + sorted(self.handles)) + 4
        mention = [f"@{re.escape(h)}(?![A-Za-z0-9._])" for h in sorted(self.handles)]
        self._mention = re.compile("|".join(mention), re.IGNORECASE) if mention else None
        self._id_text = re.compile(rf"(?<![0-9]){self.user_id}(?![0-9])") if self.user_id else None

    # -- keys --
    def is_handle(self, text: str) -> bool:
        return text.lower() in self.handles

    def is_id(self, text: str) -> bool:
        return self.user_id is not None and text == self.user_id

    def mask(self, key: str, aweme_ids: Iterable[str] = ()) -> str:
        """``key`` with the user's id and handles replaced by ``<subject>`` and the ids of the user's posts by
        ``<post>``, for the erasure log (which must not hold the personal data it erased)."""
        posts = set(aweme_ids)

        def token(match: re.Match) -> str:
            text = match.group(0)
            if self.is_id(text) or self.is_handle(text):
                return SUBJECT_MASK
            if text in posts:
                return "<post>"
            return text

        out = []
        for segment in key.split("/"):
            cut = found.start() if (found := _SUFFIX_RE.search(segment)) else len(segment)
            stem, suffix = segment[:cut], segment[cut:]
            out.append(re.sub(r"[A-Za-z0-9._]+", token, stem) + suffix)
        return "/".join(out)

    # -- bytes --
    def stream_mentions(self, stream) -> bool:
        """True when the gzip (or plain) byte stream may mention the user; reads in bounded chunks."""
        decomp = zlib.decompressobj(31)
        tail = b""
        plain = False
        while True:
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                break
            pieces: list[bytes] = []
            if plain:
                pieces.append(chunk)
            else:
                try:
                    data = chunk
                    while data:
                        out = decomp.decompress(data, _MAX_OUT)
                        pieces.append(out)
                        if decomp.eof:  # a further gzip member, or trailing bytes
                            data = decomp.unused_data
                            decomp = zlib.decompressobj(31)
                            if data and not data.startswith(b"\x1f\x8b"):
                                break
                        else:
                            data = decomp.unconsumed_tail
                except zlib.error:  # not gzip: scan the bytes as they are
                    plain = True
                    pieces = [chunk]
            for piece in pieces:
                if not piece:
                    continue
                window = tail + piece
                if self.pattern.search(window):
                    return True
                tail = window[-self.overlap :]
        return False

    def bytes_mention(self, data: bytes) -> bool:
        return self.pattern.search(data) is not None

    # -- parsed JSON --
    def matches_user(self, d: dict) -> bool:
        if not any(k in d for k in _USER_MARKERS):
            return False
        if self.user_id is not None:
            for k in _ID_KEYS:
                v = d.get(k)
                if v is not None and not isinstance(v, (dict, list)) and str(v) == self.user_id:
                    return True
        for k in _HANDLE_KEYS:
            v = d.get(k)
            if isinstance(v, str) and v.lstrip("@").lower() in self.handles:
                return True
        return False

    def belongs(self, d: dict) -> bool:
        """The dict is the user, or an item (post, comment) owned by the user."""
        if self.matches_user(d):
            return True
        return any(isinstance(d.get(k), dict) and self.matches_user(d[k]) for k in _OWNER_KEYS)

    def scrub_text(self, text: str, key: str | None = None) -> str:
        """``@handle`` mentions and the user id removed from free text; a handle field holding the handle emptied.

        A string that merely equals the handle elsewhere (a nickname "bob", a comment "bob") is not a reference to
        the account and is kept: handles are often ordinary words."""
        if key in _HANDLE_KEYS and text.lstrip("@").lower() in self.handles:
            return _ERASED
        if self._mention is not None:
            text = self._mention.sub("@" + _ERASED, text)
        if self._id_text is not None:
            text = self._id_text.sub(_ERASED, text)
        return text

    def scrub(self, node: Any, key: str | None = None) -> tuple[Any, int]:
        """(node without the user's items and references, how many items / references were removed)."""
        if isinstance(node, list):
            out, removed = [], 0
            for item in node:
                if isinstance(item, dict) and self.belongs(item):
                    removed += 1
                    continue
                new, n = self.scrub(item, key)
                out.append(new)
                removed += n
            return out, removed
        if isinstance(node, dict):
            result: dict[Any, Any] = {}
            removed = 0
            for k, v in node.items():
                if isinstance(v, dict) and self.belongs(v):
                    result[k] = None
                    removed += 1
                    continue
                new, n = self.scrub(v, k)
                result[k] = new
                removed += n
            return result, removed
        if isinstance(node, str):
            new = self.scrub_text(node, key)
            return new, int(new != node)
        if (
            isinstance(node, int)
            and not isinstance(node, bool)
            and self.user_id is not None
            and str(node) == self.user_id
        ):
            return None, 1
        return node, 0

    def references(self, node: Any, key: str | None = None) -> bool:
        """True when ``node`` still refers to the user: a dict key naming them, the user id as a value or inside
        text, a handle field holding the handle, or an ``@handle`` mention. What :meth:`scrub` leaves never does,
        except dict keys: objects keyed by the user are deleted whole."""
        if isinstance(node, dict):
            return any(
                self.is_id(str(k)) or self.is_handle(str(k).lstrip("@")) or self.references(v, k)
                for k, v in node.items()
            )
        if isinstance(node, list):
            return any(self.references(v, key) for v in node)
        if isinstance(node, str):
            return self.scrub_text(node, key) != node
        if isinstance(node, int) and not isinstance(node, bool):
            return self.user_id is not None and str(node) == self.user_id
        return False

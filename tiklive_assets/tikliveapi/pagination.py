"""Paginators, declared once per envelope and shared by every endpoint that uses it.

TikLiveAPI has two envelopes here (the Research API's ``cursor`` + ``search_id`` one lives beside its client):

- ``VideoPages``: ``videos`` + ``cursor`` + ``hasMore`` (user-posts, challenge-posts, search-video, music-posts);
- ``CommentPages``: ``comments`` + ``cursor`` + ``hasMore`` (post-comments, post-comment-replies);
- ``FollowPages``: ``followers`` or ``followings`` + ``time`` + ``hasMore`` (user-followers, user-following).

Each page remembers the cursor (or time) that fetched it, which is what the archive slug names, so a walk
can resume from any archived page. The walk itself is the one both APIs share (``tiklive_assets.paging.Walk``):
drift (a cursor that does not advance, a page seen before, more pages than the guard allows) raises
``CursorStuck`` instead of looping and spending credits forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from tiklive_assets.paging import Walk
from tiklive_assets.tikliveapi import endpoints as ep
from tiklive_assets.tikliveapi.client import ApiResponse
from tiklive_assets.tikliveapi.errors import BadResponse, CursorStuck
from tiklive_assets.tolerant import (
    FOLLOWER_ITEM_KEYS,
    FOLLOWING_ITEM_KEYS,
    LISTING_ITEM_KEYS,
    as_id,
    cursor_text,
    has_more,
    post_id,
)

DEFAULT_PAGE_GUARD = 200  # no configured walk needs more; a drifting one stops here at the latest


@dataclass(frozen=True)
class Page:
    endpoint: str
    cursor: str  # the cursor (or time) that fetched this page; "0" for the first
    items: list[dict[str, Any]]
    next_cursor: str
    has_more: bool
    response: ApiResponse
    without_id: int = 0  # items that carry no id under any known name: archived, counted, skipped

    def ids(self, id_of: Callable[[dict[str, Any]], str | None]) -> list[str]:
        return [i for i in map(id_of, self.items) if i is not None]


class _WalkState:
    """What one walk has seen: drift is a cursor, a page or a page of items that came before."""

    def __init__(self) -> None:
        self.cursors: set[str] = set()
        self.pages: set[str] = set()
        self.items: set[str] = set()  # duplicate rows: a page made only of items seen earlier in this walk


class Paginator(Walk[Page, str]):
    """Walks one paginated endpoint. Subclasses declare the envelope; the walk is the shared one (``paging.Walk``),
    with TikLiveAPI's drift checks here."""

    stuck = CursorStuck
    items_key: str  # a class's, or one walk's (``items_key=``, ``FollowPages.following``)
    items_fallbacks: tuple[str, ...] = ()  # other names the list was seen under
    cursor_key: ClassVar[str] = "cursor"

    @staticmethod
    def item_id(item: dict[str, Any]) -> str | None:
        """What identifies an item (comments carry their video's aweme_id too, so only ``id`` counts)."""
        return as_id(item.get("id"))

    def __init__(
        self,
        fetch: Callable[[str], ApiResponse],
        *,
        start: str | int | None = None,
        max_pages: int | None = None,
        page_guard: int = DEFAULT_PAGE_GUARD,
        items_key: str | None = None,
    ):
        super().__init__(page_guard=page_guard, max_pages=max_pages)
        self.fetch = fetch
        self.start = str(start or 0)
        if items_key is not None:
            self.items_key = items_key
        self._seen = _WalkState()

    def first(self) -> str:
        self._seen = _WalkState()
        return self.start

    def cursor_of(self, position: str) -> str:
        return position

    def fetch_page(self, position: str) -> Page:
        self._seen.cursors.add(position)
        return self.parse(position, self.fetch(position))

    def check(self, page: Page, fetched: int) -> None:
        ids = page.ids(self.item_id)
        fingerprint = _fingerprint(ids, page.items)
        if page.items and fingerprint in self._seen.pages:
            raise CursorStuck(page.endpoint, page.cursor, "the same page came back twice")
        self._seen.pages.add(fingerprint)
        if fetched > 1 and ids and all(i in self._seen.items for i in ids):
            raise CursorStuck(page.endpoint, page.cursor, "every item on the page was already returned by this walk")
        self._seen.items.update(ids)

    def advance(self, position: str, page: Page) -> str:
        nxt = page.next_cursor
        if not (nxt.isdigit() and nxt.isascii() and len(nxt) <= 32):
            # Each page is archived under a key naming its cursor, which must be a number: asking for this
            # page would pay for an answer that could not be kept. Stop here; the pages so far are archived.
            raise CursorStuck(page.endpoint, position, f"the next cursor {nxt[:40]!r} is not a number")
        if nxt in self._seen.cursors:
            raise CursorStuck(page.endpoint, position, f"{self.cursor_key} did not advance (next {nxt!r})")
        return nxt

    def parse(self, cursor: str, response: ApiResponse) -> Page:
        """Read one page tolerantly: the list under its name (or a name it was seen under), items that are objects,
        ``hasMore`` as a boolean or 1/0, the next cursor as an integer or a string."""
        data = response.json()
        if not isinstance(data, dict):
            raise BadResponse(
                response.endpoint, response.status, f"expected an object with a list under {self.items_key!r}"
            )
        raw_items: Any = None
        for name in (self.items_key, *self.items_fallbacks):
            if data.get(name) is not None:
                raw_items = data[name]
                break
        if raw_items is not None and not isinstance(raw_items, list):
            raise BadResponse(response.endpoint, response.status, f"expected a list under {self.items_key!r}")
        items = [item for item in raw_items or () if isinstance(item, dict)]
        next_cursor = cursor_text(data.get(self.cursor_key))
        more = has_more(data.get("hasMore", data.get("has_more")))
        return Page(
            endpoint=response.endpoint,
            cursor=cursor,
            items=items,
            next_cursor=next_cursor if next_cursor is not None else cursor,
            has_more=more,
            response=response,
            without_id=sum(1 for item in items if self.item_id(item) is None) + len(raw_items or ()) - len(items),
        )


class VideoPages(Paginator):
    """``videos`` + ``cursor`` + ``hasMore``: user-posts, challenge-posts, search-video, music-posts."""

    items_key = LISTING_ITEM_KEYS[0]
    items_fallbacks = LISTING_ITEM_KEYS[1:]

    @staticmethod
    def item_id(item: dict[str, Any]) -> str | None:
        """A post's id, under ``aweme_id``, ``video_id`` or ``id``, string or integer."""
        return post_id(item)


class CommentPages(Paginator):
    """``comments`` + ``cursor`` + ``hasMore``: post-comments and post-comment-replies."""

    items_key = ep.POST_COMMENTS.items_key


class FollowPages(Paginator):
    """``followers``/``followings`` + ``time`` + ``hasMore``: user-followers and user-following."""

    items_key = FOLLOWER_ITEM_KEYS[0]
    items_fallbacks: tuple[str, ...] = FOLLOWER_ITEM_KEYS[1:]
    cursor_key = "time"

    @staticmethod
    def item_id(item: dict[str, Any]) -> str | None:
        user = item.get("user")  # TikTok's own shape nests the account: {"user": {...}, "stats": {...}}
        return as_id(item.get("id")) or (as_id(user.get("id")) if isinstance(user, dict) else None)

    @classmethod
    def following(cls, fetch: Callable[[str], ApiResponse], **kwargs: Any) -> FollowPages:
        walk = cls(fetch, **kwargs)
        walk.items_key = FOLLOWING_ITEM_KEYS[0]
        walk.items_fallbacks = FOLLOWING_ITEM_KEYS[1:]
        return walk


def _fingerprint(ids: list[str], items: list[dict[str, Any]]) -> str:
    parts = ids if len(ids) == len(items) else [repr(sorted(item.items(), key=str)) for item in items]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()

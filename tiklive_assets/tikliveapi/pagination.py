"""Paginators, declared once per envelope and shared by every endpoint that uses it.

TikLiveAPI has two envelopes here (the Research API's ``cursor`` + ``search_id`` one lives beside its client):

- ``VideoPages``: ``videos`` + ``cursor`` + ``hasMore`` (user-posts, challenge-posts, search-video, music-posts);
- ``CommentPages``: ``comments`` + ``cursor`` + ``hasMore`` (post-comments, post-comment-replies);
- ``FollowPages``: ``followers`` or ``followings`` + ``time`` + ``hasMore`` (user-followers, user-following).

Each page remembers the cursor (or time) that fetched it, which is what the archive slug names, so a walk
can resume from any archived page. Drift (a cursor that does not advance, a page seen before, more pages
than the guard allows) raises ``CursorStuck`` instead of looping and spending credits forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

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


class Paginator:
    """Walks one paginated endpoint. Subclasses declare the envelope; the walk is written once, here."""

    items_key: ClassVar[str]
    items_fallbacks: ClassVar[tuple[str, ...]] = ()  # other names the list was seen under
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
        self.fetch = fetch
        self.start = str(start or 0)
        self.max_pages = max_pages
        self.page_guard = max(page_guard, max_pages or 0)  # a configured bound is never mistaken for drift
        if items_key is not None:
            self.items_key = items_key

    def pages(self) -> Iterator[Page]:
        cursor = self.start
        seen_cursors: set[str] = set()
        seen_pages: set[str] = set()
        seen_items: set[str] = set()  # duplicate rows: a page made only of items seen earlier in this walk
        fetched = 0
        endpoint = self._endpoint  # the real endpoint once a page names it (the guard's error must say which)
        while True:
            if self.max_pages is not None and fetched >= self.max_pages:
                return
            if fetched >= self.page_guard:
                raise CursorStuck(endpoint, cursor, f"more than {self.page_guard} pages in one walk")
            seen_cursors.add(cursor)
            response = self.fetch(cursor)
            fetched += 1
            page = self.parse(cursor, response)
            endpoint = page.endpoint
            ids = page.ids(self.item_id)
            fingerprint = _fingerprint(ids, page.items)
            if page.items and fingerprint in seen_pages:
                raise CursorStuck(page.endpoint, cursor, "the same page came back twice")
            seen_pages.add(fingerprint)
            if fetched > 1 and ids and all(i in seen_items for i in ids):
                raise CursorStuck(page.endpoint, cursor, "every item on the page was already returned by this walk")
            seen_items.update(ids)
            yield page
            if not page.has_more:
                return
            if not (page.next_cursor.isdigit() and page.next_cursor.isascii() and len(page.next_cursor) <= 32):
                # Each page is archived under a key naming its cursor, which must be a number: asking for this
                # page would pay for an answer that could not be kept. Stop here; the pages so far are archived.
                raise CursorStuck(page.endpoint, cursor, f"the next cursor {page.next_cursor[:40]!r} is not a number")
            if page.next_cursor in seen_cursors:
                raise CursorStuck(
                    page.endpoint, cursor, f"{self.cursor_key} did not advance (next {page.next_cursor!r})"
                )
            cursor = page.next_cursor

    def items(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page.items

    @property
    def _endpoint(self) -> str:
        return type(self).__name__

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

    items_key = "comments"


class FollowPages(Paginator):
    """``followers``/``followings`` + ``time`` + ``hasMore``: user-followers and user-following."""

    items_key = FOLLOWER_ITEM_KEYS[0]
    items_fallbacks = FOLLOWER_ITEM_KEYS[1:]
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

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

DEFAULT_PAGE_GUARD = 200  # no configured walk needs more; a drifting one stops here at the latest


@dataclass(frozen=True)
class Page:
    endpoint: str
    cursor: str  # the cursor (or time) that fetched this page; "0" for the first
    items: list[dict[str, Any]]
    next_cursor: str
    has_more: bool
    response: ApiResponse


class Paginator:
    """Walks one paginated endpoint. Subclasses declare the envelope; the walk is written once, here."""

    items_key: ClassVar[str]
    cursor_key: ClassVar[str] = "cursor"
    id_key: ClassVar[str] = "id"  # what identifies an item (comments carry their video's aweme_id too)

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
            fingerprint = _fingerprint(page.items, self.id_key)
            if page.items and fingerprint in seen_pages:
                raise CursorStuck(page.endpoint, cursor, "the same page came back twice")
            seen_pages.add(fingerprint)
            ids = [str(item.get(self.id_key)) for item in page.items if item.get(self.id_key) is not None]
            if fetched > 1 and ids and all(i in seen_items for i in ids):
                raise CursorStuck(page.endpoint, cursor, "every item on the page was already returned by this walk")
            seen_items.update(ids)
            yield page
            if not page.has_more:
                return
            if page.next_cursor in seen_cursors:
                raise CursorStuck(page.endpoint, cursor, f"{self.cursor_key} did not advance (next {page.next_cursor!r})")
            cursor = page.next_cursor

    def items(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page.items

    @property
    def _endpoint(self) -> str:
        return type(self).__name__

    def parse(self, cursor: str, response: ApiResponse) -> Page:
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get(self.items_key, []), list):
            raise BadResponse(response.endpoint, response.status, f"expected an object with a list under {self.items_key!r}")
        items = data.get(self.items_key) or []
        next_cursor = data.get(self.cursor_key)
        return Page(
            endpoint=response.endpoint,
            cursor=cursor,
            items=items,
            next_cursor=str(next_cursor if next_cursor is not None else cursor),
            has_more=bool(data.get("hasMore")),
            response=response,
        )


class VideoPages(Paginator):
    """``videos`` + ``cursor`` + ``hasMore``: user-posts, challenge-posts, search-video, music-posts."""

    items_key = "videos"
    id_key = "aweme_id"


class CommentPages(Paginator):
    """``comments`` + ``cursor`` + ``hasMore``: post-comments and post-comment-replies."""

    items_key = "comments"


class FollowPages(Paginator):
    """``followers``/``followings`` + ``time`` + ``hasMore``: user-followers and user-following."""

    items_key = "followers"
    cursor_key = "time"

    @classmethod
    def following(cls, fetch: Callable[[str], ApiResponse], **kwargs: Any) -> FollowPages:
        return cls(fetch, items_key="followings", **kwargs)


def _fingerprint(items: list[dict[str, Any]], id_key: str) -> str:
    ids = [str(item.get(id_key) or item) for item in items]
    return hashlib.sha1("\x1f".join(ids).encode()).hexdigest()

"""The Research API's paginator, declared once: ``cursor`` + ``search_id`` + ``has_more`` (beside the TikLiveAPI
ones in ``tiklive_assets/tikliveapi/pagination.py``).

Used by the video query (``videos``, with a ``search_id``) and by followers/following (``user_followers`` /
``user_following``, no ``search_id``). Pages of one search are paced: the next request leaves no sooner than
``pause`` seconds after the previous response arrived (the API errors on faster pages; 10 s by default).
A search resumed from another run (``resumed=True``) waits one full pause before
its first page. ``internal_error`` and the pacing error retry the *same* page after the pause, at most ``max_retries`` times
in a row; every retry costs quota and is counted in ``retries``. An expired ``search_id`` is not handled here:
it propagates as ``SearchIdExpired`` so the caller can restart the window (window-level idempotency).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from tiklive_assets.research.client import ResearchResponse
from tiklive_assets.research.errors import ApiError, CursorStuck, InternalError, PacingViolated

DEFAULT_PAUSE = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_PAGE_GUARD = 1000

Fetch = Callable[[int, str | None], ResearchResponse]  # (cursor, search_id) -> the ok response


@dataclass(frozen=True)
class ResearchPage:
    cursor: int  # the cursor that fetched this page (0 for the first)
    search_id: str | None  # the search_id sent with it (None for the first page of a search)
    items: list[dict[str, Any]]
    next_cursor: int
    next_search_id: str | None
    has_more: bool
    response: ResearchResponse


class ResearchPages:
    """Walks one Research API search from ``start_cursor`` (and ``search_id`` when resuming)."""

    items_key: ClassVar[str] = "videos"

    def __init__(
        self,
        fetch: Fetch,
        *,
        start_cursor: int = 0,
        search_id: str | None = None,
        pause: float = DEFAULT_PAUSE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        page_guard: int = DEFAULT_PAGE_GUARD,
        items_key: str | None = None,
        resumed: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.start_cursor = int(start_cursor or 0)
        self.search_id = search_id or None
        self.pause = pause
        self.max_retries = max_retries
        self.page_guard = page_guard
        if items_key is not None:
            self.items_key = items_key
        self.sleep = sleep
        self.monotonic = monotonic
        self.retries = 0  # requests spent again on a page after internal_error or a pacing error
        # resuming a search another run left (when its last page came is unknown) waits one full pause first
        self._last: float | None = monotonic() if resumed else None

    def _wait(self) -> None:
        if self._last is None or self.pause <= 0:
            return
        remaining = self._last + self.pause - self.monotonic()
        if remaining > 0:
            self.sleep(remaining)

    def _fetch_page(self, cursor: int, search_id: str | None) -> ResearchResponse:
        failures = 0
        while True:
            if search_id is not None or failures:  # later pages of a search and every retry wait the pause
                self._wait()
            try:
                return self.fetch(cursor, search_id)
            except (InternalError, PacingViolated):
                failures += 1
                if failures > self.max_retries:
                    raise
                self.retries += 1
            finally:
                self._last = self.monotonic()

    def pages(self) -> Iterator[ResearchPage]:
        cursor, search_id = self.start_cursor, self.search_id
        fetched = 0
        while True:
            if fetched >= self.page_guard:
                raise CursorStuck(self.items_key, cursor, f"more than {self.page_guard} pages in one search")
            response = self._fetch_page(cursor, search_id)
            fetched += 1
            page = self.parse(cursor, search_id, response)
            yield page
            if not page.has_more:
                return
            if page.next_cursor <= cursor:
                raise CursorStuck(response.endpoint, cursor, f"cursor did not advance (next {page.next_cursor})")
            cursor, search_id = page.next_cursor, page.next_search_id or search_id

    def items(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page.items

    def parse(self, cursor: int, search_id: str | None, response: ResearchResponse) -> ResearchPage:
        data = response.data
        items = data.get(self.items_key) or []
        if not isinstance(items, list):
            raise ApiError(response.endpoint, response.status, "bad_response", f"{self.items_key!r} is not a list")
        try:
            next_cursor = int(data.get("cursor", cursor))
        except (TypeError, ValueError):
            raise ApiError(response.endpoint, response.status, "bad_response", "cursor is not an integer") from None
        return ResearchPage(
            cursor=cursor, search_id=search_id, items=items, next_cursor=next_cursor,
            next_search_id=data.get("search_id") or None, has_more=bool(data.get("has_more")), response=response,
        )

    @classmethod
    def followers(cls, fetch: Fetch, **kwargs: Any) -> ResearchPages:
        return cls(fetch, items_key="user_followers", **kwargs)

    @classmethod
    def following(cls, fetch: Fetch, **kwargs: Any) -> ResearchPages:
        return cls(fetch, items_key="user_following", **kwargs)

"""The Research API's paginators, declared once per envelope: ``cursor`` + ``has_more`` (+ ``search_id``), with
the direction each endpoint's cursor moves in (beside the TikLiveAPI ones in
``tiklive_assets/tikliveapi/pagination.py``).

Declared per endpoint (:data:`VIDEO_QUERY_PAGES`, :data:`FOLLOWERS_PAGES`, :data:`FOLLOWING_PAGES`,
:data:`COMMENT_PAGES`):

- the video query's cursor is an offset that *increases*, and jumps by ``max_count`` even when fewer videos come
  back (the API withholds some), so a short or empty page never ends a walk: only ``has_more: false`` does;
- followers/following's cursor is a Unix time in seconds that *decreases* page by page (follows on or before it);
  the first request sends none (the API starts from now);
- comments' cursor is an increasing offset.

Each spec derives from the endpoint's declaration (``research/endpoints.py``). A cursor that does not move in its
declared direction while ``has_more`` is true is drift (``CursorStuck``): following it would fetch the same page
again. Pages of one search are paced: the next request leaves no sooner than ``pause`` seconds after the previous
answer arrived (the API errors on faster pages; 10 s by default), and a search resumed from another run waits one
full pause first. Retries are not done here: the client retries
transient answers through the shared transport (each attempt paced, counted and charged to the quota). An expired
``search_id`` propagates as ``SearchIdExpired`` so the caller can restart the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiklive_assets.paging import Walk
from tiklive_assets.research import endpoints as ep
from tiklive_assets.research.client import ResearchResponse
from tiklive_assets.research.errors import ApiError, CursorStuck
from tiklive_assets.tolerant import as_id, as_int, has_more

DEFAULT_PAUSE = 10.0
DEFAULT_PAGE_GUARD = 1000

INCREASING, DECREASING = "increasing", "decreasing"


@dataclass(frozen=True)
class PageSpec:
    """How one endpoint paginates: where its items are, and which way its cursor moves."""

    items_key: str
    direction: str = INCREASING
    paced: bool = False  # pages of one search must be ``pause`` apart
    first_cursor: int | None = 0  # the cursor of the first request (None: send none)

    @classmethod
    def of(cls, endpoint: ep.Endpoint) -> PageSpec:
        """The spec an endpoint's declaration implies: a ``time`` cursor decreases and the first request sends
        none; an offset (``search``, ``offset``) increases from 0; a ``search`` is paced."""
        if endpoint.pages == "time":
            return cls(endpoint.items_key, DECREASING, first_cursor=None)
        return cls(endpoint.items_key, INCREASING, paced=endpoint.pages == "search")

    def moved(self, cursor: int | None, next_cursor: int) -> bool:
        if cursor is None:
            return True
        return next_cursor > cursor if self.direction == INCREASING else next_cursor < cursor


VIDEO_QUERY_PAGES = PageSpec.of(ep.VIDEO_QUERY)
FOLLOWERS_PAGES = PageSpec.of(ep.USER_FOLLOWERS)
FOLLOWING_PAGES = PageSpec.of(ep.USER_FOLLOWING)
COMMENT_PAGES = PageSpec.of(ep.VIDEO_COMMENTS)

Fetch = Callable[..., ResearchResponse]  # fetch(cursor, search_id, pacer=...) -> the ok response


class Pacer:
    """The pause between requests of one search (every attempt, retries included)."""

    def __init__(
        self,
        pause: float,
        *,
        resumed: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pause = pause
        self.sleep = sleep
        self.monotonic = monotonic
        # resuming a search another run left (when its last page came is unknown) waits one full pause first
        self._last: float | None = monotonic() if resumed else None

    def wait(self) -> None:
        if self._last is None or self.pause <= 0:
            return
        remaining = self._last + self.pause - self.monotonic()
        if remaining > 0:
            self.sleep(remaining)

    def mark(self) -> None:
        self._last = self.monotonic()


@dataclass(frozen=True)
class ResearchPage:
    cursor: int | None  # the cursor that fetched this page (0, or None when the first request sends none)
    search_id: str | None  # the search_id sent with it (None for the first page of a search)
    items: list[dict[str, Any]]
    next_cursor: int
    next_search_id: str | None
    has_more: bool
    response: ResearchResponse

    @property
    def endpoint(self) -> str:
        return self.response.endpoint


Position = tuple[int | None, str | None]  # (cursor, search_id)


class ResearchPages(Walk[ResearchPage, Position]):
    """Walks one Research API listing from ``start_cursor`` (and ``search_id`` when resuming), on the walk both
    APIs share (``paging.Walk``): only ``has_more: false`` ends it (a short, even empty, page does not)."""

    stuck = CursorStuck

    def __init__(
        self,
        fetch: Fetch,
        spec: PageSpec = VIDEO_QUERY_PAGES,
        *,
        start_cursor: int | None = None,
        search_id: str | None = None,
        pause: float = DEFAULT_PAUSE,
        page_guard: int = DEFAULT_PAGE_GUARD,
        resumed: bool = False,
        pacer: Pacer | None = None,
    ) -> None:
        """``pacer``: the pause between pages, when not ``Pacer(pause, resumed=resumed)`` (an unpaced spec's is 0)."""
        super().__init__(page_guard=page_guard)
        self.fetch = fetch
        self.spec = spec
        self.start_cursor = spec.first_cursor if start_cursor is None else int(start_cursor)
        self.search_id = search_id or None
        self.pacer = pacer or Pacer(pause if spec.paced else 0.0, resumed=resumed)

    @property
    def items_key(self) -> str:
        return self.spec.items_key

    def first(self) -> Position:
        return self.start_cursor, self.search_id

    def cursor_of(self, position: Position) -> int | None:
        return position[0]

    def fetch_page(self, position: Position) -> ResearchPage:
        cursor, search_id = position
        return self.parse(cursor, search_id, self.fetch(cursor, search_id, pacer=self.pacer))

    def advance(self, position: Position, page: ResearchPage) -> Position:
        cursor, search_id = position
        if not self.spec.moved(cursor, page.next_cursor):
            raise CursorStuck(
                page.endpoint, cursor, f"cursor did not {self.spec.direction[:-3]}e (next {page.next_cursor})"
            )
        return page.next_cursor, page.next_search_id or search_id

    def parse(self, cursor: int | None, search_id: str | None, response: ResearchResponse) -> ResearchPage:
        data = response.data
        items = data.get(self.items_key) or []
        if not isinstance(items, list):
            raise ApiError(response.endpoint, response.status, "bad_response", f"{self.items_key!r} is not a list")
        raw_cursor = data.get("cursor")
        next_cursor = as_int(raw_cursor)
        if next_cursor is None:
            if raw_cursor is not None or has_more(data.get("has_more")):
                raise ApiError(response.endpoint, response.status, "bad_response", "cursor is not an integer")
            next_cursor = cursor or 0
        sid = data.get("search_id")
        return ResearchPage(
            cursor=cursor,
            search_id=search_id,
            items=[i for i in items if isinstance(i, dict)],
            next_cursor=next_cursor,
            next_search_id=(as_id(sid) or (sid if isinstance(sid, str) and sid else None)),
            has_more=has_more(data.get("has_more")),
            response=response,
        )

    @classmethod
    def followers(cls, fetch: Fetch, **kwargs: Any) -> ResearchPages:
        return cls(fetch, FOLLOWERS_PAGES, **kwargs)

    @classmethod
    def following(cls, fetch: Fetch, **kwargs: Any) -> ResearchPages:
        return cls(fetch, FOLLOWING_PAGES, **kwargs)

    @classmethod
    def comments(cls, fetch: Fetch, **kwargs: Any) -> ResearchPages:
        return cls(fetch, COMMENT_PAGES, **kwargs)


__all__ = [
    "COMMENT_PAGES",
    "DECREASING",
    "FOLLOWERS_PAGES",
    "FOLLOWING_PAGES",
    "INCREASING",
    "PageSpec",
    "Pacer",
    "ResearchPage",
    "ResearchPages",
    "VIDEO_QUERY_PAGES",
]

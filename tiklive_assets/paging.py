"""The walk of one paginated listing, written once for both APIs' paginators, with its drift guard.

A paginator (TikLiveAPI's in ``tikliveapi/pagination.py``, the Research API's in ``research/pagination.py``)
declares how it fetches a page from a position, what a page must not look like, and how the position moves on;
:class:`Walk` does the rest: it stops at ``has_more: false`` or after ``max_pages``, and raises the API's
:class:`CursorStuck` instead of looping (and spending) forever: when more than ``page_guard`` pages come in one
walk, or when a subclass sees drift (a cursor that does not move as declared, a page seen before).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from tiklive_assets.transport import ApiClientError


class CursorStuck(ApiClientError):
    """A drifting paginator: a cursor that does not move as declared, a repeated page, or more pages than allowed.
    Each API's subclass says what to do next."""

    next_step: ClassVar[str] = "report the endpoint's new cursor behaviour before walking it again"

    def __init__(self, endpoint: str, cursor: str | int | None, why: str) -> None:
        self.endpoint = endpoint
        self.cursor = cursor
        self.why = why
        super().__init__(
            f"paginator drift on {endpoint} at cursor {cursor!r}: {why}. The pages fetched so far are archived; "
            f"{self.next_step}."
        )


class PageLike(Protocol):
    @property
    def endpoint(self) -> str: ...

    @property
    def has_more(self) -> bool: ...

    @property
    def items(self) -> list[dict[str, Any]]: ...


PageT = TypeVar("PageT", bound=PageLike)
PosT = TypeVar("PosT")


class Walk(Generic[PageT, PosT]):
    """Walks one listing page by page; subclasses set ``stuck`` (their API's CursorStuck) and implement
    ``first``, ``fetch_page``, ``cursor_of`` and ``advance`` (and ``check`` for drift visible on a page)."""

    stuck: ClassVar[type[CursorStuck]] = CursorStuck

    def __init__(self, *, page_guard: int, max_pages: int | None = None) -> None:
        self.max_pages = max_pages
        self.page_guard = max(page_guard, max_pages or 0)  # a configured bound is never mistaken for drift

    def pages(self) -> Iterator[PageT]:
        position = self.first()
        endpoint = type(self).__name__  # the real endpoint once a page names it (the guard's error must say which)
        fetched = 0
        while self.max_pages is None or fetched < self.max_pages:
            if fetched >= self.page_guard:
                raise self.stuck(endpoint, self.cursor_of(position), f"more than {self.page_guard} pages in one walk")
            page = self.fetch_page(position)
            fetched += 1
            endpoint = page.endpoint
            self.check(page, fetched)
            yield page
            if not page.has_more:
                return
            position = self.advance(position, page)

    def items(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page.items

    # -- what a subclass declares ---------------------------------------------------------------------------

    def first(self) -> PosT:
        """Where the walk starts."""
        raise NotImplementedError

    def fetch_page(self, position: PosT) -> PageT:
        """The page at ``position``, fetched and parsed."""
        raise NotImplementedError

    def cursor_of(self, position: PosT) -> str | int | None:
        """The cursor a drift error names for ``position``."""
        raise NotImplementedError

    def check(self, page: PageT, fetched: int) -> None:  # noqa: B027 - a hook: most walks see no drift on a page
        """Raise ``self.stuck`` when ``page`` (the ``fetched``-th) shows drift; by default nothing."""

    def advance(self, position: PosT, page: PageT) -> PosT:
        """The position after ``page`` (which has more); raise ``self.stuck`` when it does not move as declared."""
        raise NotImplementedError


__all__ = ["CursorStuck", "PageLike", "Walk"]

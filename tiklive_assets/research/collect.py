"""Window-level, resumable collection from the Research API: videos by create-date window, and user data.

For each window of a query the progress record (``research_windows``) says where to start:

- done: skipped (unless ``refresh``, which collects it again as a new generation);
- open with a ``search_id`` and a cursor: resumed there (a quota stop yesterday, a killed run);
- an expired or invalid ``search_id``: the window restarts from its first page as a new generation, which
  replaces what the window had produced (the archive slug carries the generation), so nothing is duplicated;
- ``daily_quota_limit_exceeded`` from the API, or the ledger refusing a request (day quota or per-run cap):
  the run stops cleanly, the window keeps its cursor and ``stop_reason``, and the next run resumes it;
- ``internal_error``: the same page is retried after the pause (bounded, each retry counted: it costs quota).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import MAX_COUNT, VIDEO_FIELDS, ResearchClient, query_hash
from tiklive_assets.research.errors import DailyQuotaExceeded, QuotaExhausted, SearchIdExpired
from tiklive_assets.research.pagination import DEFAULT_MAX_RETRIES, DEFAULT_PAUSE, ResearchPage, ResearchPages
from tiklive_assets.research.quota import ResearchState, WindowProgress
from tiklive_assets.research.windows import Window

log = logging.getLogger(__name__)

DEFAULT_MAX_RESTARTS = 3


@dataclass(frozen=True)
class CollectOptions:
    pause: float = DEFAULT_PAUSE  # seconds between pages of one search
    max_count: int = MAX_COUNT
    fields: tuple[str, ...] = VIDEO_FIELDS
    max_retries: int = DEFAULT_MAX_RETRIES  # internal_error retries of one page in a row
    max_restarts: int = DEFAULT_MAX_RESTARTS  # expired search_id restarts of one window in one run
    refresh: bool = False  # collect windows already done again (a new generation with fresh counters)


@dataclass
class WindowResult:
    window: Window
    status: str  # 'done', 'already done', 'stopped'
    pages: int = 0  # pages fetched in this run
    videos: int = 0  # videos on those pages
    restarts: int = 0
    generation: int = 1


@dataclass
class CollectReport:
    scope: str  # the query hash
    windows: list[WindowResult] = field(default_factory=list)
    videos_by_user: Counter = field(default_factory=Counter)  # on pages fetched in this run
    retries: int = 0
    restarts: int = 0
    stopped: str | None = None  # why the run stopped early (quota), None when every window is done
    stopped_at: tuple[str, int] | None = None  # (window key, cursor) where it stopped

    @property
    def complete(self) -> bool:
        return self.stopped is None

    @property
    def pages(self) -> int:
        return sum(w.pages for w in self.windows)


def collect_videos(
    client: ResearchClient,
    archive: ResearchArchive,
    state: ResearchState,
    query: dict[str, Any],
    windows: Sequence[Window],
    options: CollectOptions = CollectOptions(),
    on_page: Callable[[Window, ResearchPage], None] | None = None,
) -> CollectReport:
    """Collect every window of ``query``; stops cleanly (``report.stopped``) when the quota is spent."""
    scope = query_hash(query, options.fields)
    report = CollectReport(scope)
    for window in windows:
        result = _collect_window(client, archive, state, scope, query, window, options, report, on_page)
        report.windows.append(result)
        if report.stopped:
            break
    return report


def _collect_window(
    client: ResearchClient,
    archive: ResearchArchive,
    state: ResearchState,
    scope: str,
    query: dict[str, Any],
    window: Window,
    options: CollectOptions,
    report: CollectReport,
    on_page: Callable[[Window, ResearchPage], None] | None,
) -> WindowResult:
    progress = state.window(scope, window.key) or WindowProgress(scope, window.key)
    if progress.status == "done":
        if not options.refresh:
            return WindowResult(window, "already done", generation=progress.generation)
        progress = WindowProgress(scope, window.key, generation=progress.generation + 1, restarts=progress.restarts)
        state.save_window(progress)
    result = WindowResult(window, "open", generation=progress.generation)

    def fetch(cursor: int, search_id: str | None):
        return client.query_videos(query, window.start, window.end, cursor=cursor, search_id=search_id,
                                   max_count=options.max_count, fields=options.fields)

    while True:
        archive.generation = progress.generation
        resume = progress.next_cursor > 0 and progress.search_id is not None
        pages = ResearchPages(
            fetch, start_cursor=progress.next_cursor if resume else 0, search_id=progress.search_id if resume else None,
            pause=options.pause, max_retries=options.max_retries, resumed=resume,
        )
        try:
            for page in pages.pages():
                progress.pages += 1
                progress.videos += len(page.items)
                progress.next_cursor = page.next_cursor
                progress.search_id = page.next_search_id
                progress.stop_reason = None
                if not page.has_more:
                    progress.status = "done"
                state.save_window(progress)
                result.pages += 1
                result.videos += len(page.items)
                for video in page.items:
                    report.videos_by_user[str(video.get("username", "?"))] += 1
                if on_page is not None:
                    on_page(window, page)
            result.status = "done"
            return result
        except SearchIdExpired as exc:
            result.restarts += 1
            report.restarts += 1
            log.warning("%s: %s; restarting the window from its first page as generation %d",
                        window, exc.api_message, progress.generation + 1)
            progress = WindowProgress(scope, window.key, generation=progress.generation + 1,
                                      restarts=progress.restarts + 1, stop_reason="search_id expired")
            state.save_window(progress)
            result.generation = progress.generation
            if result.restarts > options.max_restarts:
                raise
        except (DailyQuotaExceeded, QuotaExhausted) as exc:
            reason = exc.code if isinstance(exc, DailyQuotaExceeded) else exc.scope.replace(" ", "_")
            progress.stop_reason = reason
            state.save_window(progress)
            result.status = "stopped"
            report.stopped = str(exc)
            report.stopped_at = (window.key, progress.next_cursor)
            log.warning("stopping cleanly at window %s cursor %d: %s", window, progress.next_cursor, exc)
            return result
        finally:
            report.retries += pages.retries


# -- users -------------------------------------------------------------------------------------------------


@dataclass
class UserReport:
    profiles: int = 0
    followers: Counter = field(default_factory=Counter)
    following: Counter = field(default_factory=Counter)
    unavailable: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    stopped: str | None = None


def collect_users(
    client: ResearchClient,
    usernames: Sequence[str],
    *,
    followers: bool = True,
    following: bool = True,
    max_follow_pages: int | None = None,
    options: CollectOptions = CollectOptions(),
) -> UserReport:
    """User info, followers and following of each username (archived by the client's ``on_response`` hook)."""
    from tiklive_assets.research.errors import InvalidParams

    report = UserReport()
    try:
        for username in usernames:
            try:
                client.user_info(username)
            except InvalidParams as exc:
                report.unavailable[username] = exc.api_message
                continue
            report.profiles += 1
            for wanted, factory, counter, method in (
                (followers, ResearchPages.followers, report.followers, client.user_followers),
                (following, ResearchPages.following, report.following, client.user_following),
            ):
                if not wanted:
                    continue
                pages = factory(lambda cursor, _sid, m=method, u=username: m(u, cursor=cursor, max_count=options.max_count),
                                pause=options.pause, max_retries=options.max_retries)
                try:
                    for n, page in enumerate(pages.pages(), start=1):
                        counter[username] += len(page.items)
                        if max_follow_pages is not None and n >= max_follow_pages:
                            break
                finally:
                    report.retries += pages.retries
    except (DailyQuotaExceeded, QuotaExhausted) as exc:
        report.stopped = str(exc)
    return report

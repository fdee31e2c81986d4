"""Window-level, resumable collection from the Research API: videos by create-date window, and user data.

For each window of a query the progress record (``research_windows``) says where to start:

- done: skipped (unless ``refresh``, which collects it again as a new generation);
- open with a ``search_id`` and a cursor: resumed there (a quota stop yesterday, a killed run);
- an expired or invalid ``search_id``: the window restarts from its first page as a new generation, which
  replaces what the window had produced (the archive slug carries the generation), so nothing is duplicated;
- ``daily_quota_limit_exceeded`` from the API, or the ledger refusing a request (day quota or per-run cap):
  the run stops cleanly, the window keeps its cursor and ``stop_reason``, and the next run resumes it;
- a transient answer (5xx, a gateway page, ``internal_error``, the spurious "Invalid count or cursor"): the
  client retries the same page with backoff (bounded, each retry counted: it costs quota).

Whatever a run collected before a fatal error is already archived (the client's ``on_response`` hook writes every
answer first); the caller loads it into the research tables before reporting the error.

Users: a user whose profile, followers or following answer an error (private, refused) is a warning for that
user and the run goes on; only the quota, the credentials or retries running out stop it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import MAX_COUNT, VIDEO_FIELDS, ResearchClient, query_hash
from tiklive_assets.research.errors import (
    ApiError,
    AuthFailed,
    CursorStuck,
    DailyQuotaExceeded,
    QuotaExhausted,
    SearchIdExpired,
    TransientApiError,
)
from tiklive_assets.research.pagination import DEFAULT_PAUSE, VIDEO_QUERY_PAGES, ResearchPage, ResearchPages
from tiklive_assets.research.quota import ResearchState, WindowProgress
from tiklive_assets.research.windows import Window
from tiklive_assets.tolerant import as_id, strip_nul

log = logging.getLogger(__name__)

DEFAULT_MAX_RESTARTS = 3


@dataclass(frozen=True)
class CollectOptions:
    pause: float = DEFAULT_PAUSE  # seconds between pages of one search
    max_count: int = MAX_COUNT
    fields: tuple[str, ...] = VIDEO_FIELDS
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
    video_ids: list[str] = field(default_factory=list)  # as text, in the order the pages came (comments use them)
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
    retried_before = client.meter.retried
    try:
        for window in windows:
            result = _collect_window(client, archive, state, scope, query, window, options, report, on_page)
            report.windows.append(result)
            if report.stopped:
                break
    finally:
        report.retries = client.meter.retried - retried_before
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

    def fetch(cursor: int, search_id: str | None, pacer=None):
        return client.query_videos(
            query,
            window.start,
            window.end,
            cursor=cursor or 0,
            search_id=search_id,
            max_count=options.max_count,
            fields=options.fields,
            pacer=pacer,
        )

    while True:
        archive.generation = progress.generation
        resume = progress.next_cursor > 0 and progress.search_id is not None
        pages = ResearchPages(
            fetch,
            VIDEO_QUERY_PAGES,
            start_cursor=progress.next_cursor if resume else 0,
            search_id=progress.search_id if resume else None,
            pause=options.pause,
            resumed=resume,
        )
        try:
            for page in pages.pages():
                progress.pages += 1
                progress.videos += len(page.items)
                progress.next_cursor = page.next_cursor
                progress.search_id = page.next_search_id or progress.search_id  # a page may omit it
                progress.stop_reason = None
                if not page.has_more:
                    progress.status = "done"
                state.save_window(progress)
                result.pages += 1
                result.videos += len(page.items)
                for video in page.items:
                    report.videos_by_user[strip_nul(str(video.get("username") or "?"))[0]] += 1
                    vid = as_id(video.get("id"))
                    if vid is not None:
                        report.video_ids.append(vid)
                if on_page is not None:
                    on_page(window, page)
            result.status = "done"
            return result
        except SearchIdExpired as exc:
            result.restarts += 1
            report.restarts += 1
            log.warning(
                "%s: %s; restarting the window from its first page as generation %d",
                window,
                exc.api_message,
                progress.generation + 1,
            )
            progress = WindowProgress(
                scope,
                window.key,
                generation=progress.generation + 1,
                restarts=progress.restarts + 1,
                stop_reason="search_id expired",
            )
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


# -- users -------------------------------------------------------------------------------------------------


FATAL = (AuthFailed, DailyQuotaExceeded, QuotaExhausted, TransientApiError)  # not one user's problem: stop


@dataclass
class UserReport:
    profiles: int = 0
    followers: Counter = field(default_factory=Counter)
    following: Counter = field(default_factory=Counter)
    unavailable: dict[str, str] = field(default_factory=dict)  # username -> why its profile could not be read
    warnings: dict[str, str] = field(default_factory=dict)  # "username followers" -> why that list stopped
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
    """User info, followers and following of each username (archived by the client's ``on_response`` hook).

    A refused or private user (an error answer for that user) is a warning in ``unavailable`` / ``warnings``;
    the quota stops the run cleanly (``stopped``); credentials, or retries running out, raise."""
    report = UserReport()
    retried_before = client.meter.retried
    try:
        for username in usernames:
            try:
                client.user_info(username)
            except FATAL:
                raise
            except ApiError as exc:
                report.unavailable[username] = exc.api_message or exc.code
                log.warning("user %s: profile unavailable (%s); skipped", username, exc)
                continue
            report.profiles += 1
            for wanted, factory, counter, method, kind in (
                (followers, ResearchPages.followers, report.followers, client.user_followers, "followers"),
                (following, ResearchPages.following, report.following, client.user_following, "following"),
            ):
                if not wanted:
                    continue
                pages = factory(
                    lambda cursor, _sid, pacer=None, m=method, u=username: m(
                        u, cursor=cursor, max_count=options.max_count, pacer=pacer
                    ),
                    pause=options.pause,
                )
                try:
                    for n, page in enumerate(pages.pages(), start=1):
                        counter[username] += len(page.items)
                        if max_follow_pages is not None and n >= max_follow_pages:
                            break
                except FATAL:
                    raise
                except (ApiError, CursorStuck) as exc:  # private, refused, or drifting: this user's list only
                    report.warnings[f"{username} {kind}"] = str(exc)
                    log.warning(
                        "user %s: %s stopped after %d (%s); the run goes on", username, kind, counter[username], exc
                    )
    except (DailyQuotaExceeded, QuotaExhausted) as exc:
        report.stopped = str(exc)
    finally:
        report.retries = client.meter.retried - retried_before
    return report


# -- comments ----------------------------------------------------------------------------------------------


@dataclass
class CommentReport:
    videos: int = 0  # videos whose comments were walked to the end (or the page cap)
    comments: Counter = field(default_factory=Counter)  # video id -> comments on the pages fetched
    warnings: dict[str, str] = field(default_factory=dict)  # video id -> why its comments stopped
    retries: int = 0
    stopped: str | None = None

    @property
    def total(self) -> int:
        return sum(self.comments.values())


def collect_comments(
    client: ResearchClient,
    video_ids: Sequence[str],
    *,
    max_pages: int | None = None,
    options: CollectOptions = CollectOptions(),
) -> CommentReport:
    """Comments of each video (archived by the client's ``on_response`` hook), one id at a time, ids as text.

    A video whose comments answer an error (deleted since, comments off) is a warning for that video."""
    report = CommentReport()
    retried_before = client.meter.retried
    try:
        for vid in dict.fromkeys(video_ids):  # each once, in order
            pages = ResearchPages.comments(
                lambda cursor, _sid, pacer=None, v=vid: client.video_comments(
                    v, cursor=cursor, max_count=options.max_count, pacer=pacer
                ),
                pause=options.pause,
            )
            try:
                for n, page in enumerate(pages.pages(), start=1):
                    report.comments[vid] += len(page.items)
                    if max_pages is not None and n >= max_pages:
                        break
                report.videos += 1
            except FATAL:
                raise
            except (ApiError, CursorStuck) as exc:
                report.warnings[vid] = str(exc)
                log.warning("video %s: comments stopped (%s); the run goes on", vid, exc)
    except (DailyQuotaExceeded, QuotaExhausted) as exc:
        report.stopped = str(exc)
    finally:
        report.retries = client.meter.retried - retried_before
    return report

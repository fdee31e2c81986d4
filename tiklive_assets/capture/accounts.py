"""Tracked accounts: user ids (resolved once, cached), daily profiles, followers/following and comments.

Crash-only: each walk's cursor is committed with its markers (the walk's end, the comment page whose replies are
pending) in one transaction, so a rerun after a kill resumes exactly where the archive stops and never fetches a
page the interrupted run would not have fetched.

Concurrent runs split the work: each account's profile, followers and following walk, each video's comment walk
and each handle's user id is a unit claimed in the state database before its first request (``capture/units.py``).
A unit another live run holds is left to it (``held_elsewhere``); one a stopped run held is taken over and resumed
from its saved cursor; one finished by any run is skipped.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.capture.units import WorkUnits, heartbeat_seconds
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.storage.keys import raw_key, slug_page
from tiklive_assets.tikliveapi import endpoints as api
from tiklive_assets.tikliveapi.client import ApiResponse
from tiklive_assets.tikliveapi.endpoints import Endpoint
from tiklive_assets.tikliveapi.errors import BadResponse, CursorStuck, NotFound
from tiklive_assets.tikliveapi.pagination import CommentPages, FollowPages, Page, Paginator
from tiklive_assets.tolerant import as_id, as_int, post_id, unwrap
from tiklive_assets.tracking import Account

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def resolve_user_id(session: CaptureSession, handle: str, units: WorkUnits | None = None) -> str:
    """/userid/ once per handle, ever: the id is cached in the state database.

    With ``units``, asking is a unit of its own: while another live run asks for the same handle this one waits for
    its answer (one request, not one per run); an answer that could not be cached frees the unit again."""
    cached = session.state.cached_user_id(handle)
    if cached:
        return cached
    if units is None:
        return _ask_user_id(session, handle)
    unit = f"{api.USERID.name}:{handle}"
    while True:
        claim = units.claim(unit)
        if claim.status == "mine":
            try:
                user_id = _ask_user_id(session, handle)
            except BaseException:
                units.release(unit)
                raise
            units.finish(unit)
            return user_id
        cached = session.state.cached_user_id(handle)
        if cached:
            return cached
        if claim.status == "done":  # asked today, but the cache lost it since (an erasure): ask again
            return _ask_user_id(session, handle)
        time.sleep(min(0.5, heartbeat_seconds(session) / 4))


def _ask_user_id(session: CaptureSession, handle: str) -> str:
    response = session.client.userid(handle)
    crashpoint("accounts.userid.archived")
    body = response.json()
    user_id = None
    if isinstance(body, dict):
        user = body.get("user")
        user_id = (
            as_id(body.get("id"))
            or as_id(body.get("user_id"))
            or (as_id(user.get("id")) if isinstance(user, dict) else None)
        )
    if user_id is None:  # never cache a non-answer: the next run asks again
        raise BadResponse(api.USERID.path, response.status, f"no numeric user id for @{handle} in the answer")
    session.state.cache_user_id(handle, user_id)
    return user_id


@dataclass
class AccountsReport:
    profiles: int = 0
    follow_pages: int = 0
    follow_edges: int = 0
    comment_pages: int = 0
    comments: int = 0
    unavailable: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # walks whose answers could not be read: left for the next run
    skipped_complete: Counter = field(default_factory=Counter)
    held_elsewhere: Counter = field(default_factory=Counter)  # units another live run was capturing, by kind
    taken_over: int = 0  # units of runs that stopped, resumed here from their saved cursor

    @property
    def walks_complete(self) -> int:
        """Walks a rerun found complete and did not fetch again, of every kind."""
        return sum(self.skipped_complete.values())


class WalkReport(Protocol):
    """What a report keeps of the walks that did not end well (AccountsReport, DiscoveryReport)."""

    unavailable: list[str]
    drift: list[str]
    failed: list[str]


@dataclass
class Outcome:
    """How one walk (or one answer) ended: ``left`` when its answers stayed unreadable, so it is not marked done
    and the next run asks again; ``answered`` when nothing went wrong at all."""

    answered: bool = True
    left: bool = False
    stuck: CursorStuck | None = None  # the drift, when the paginator drifted


@contextmanager
def walk_outcome(
    report: WalkReport, label: str, *, logged_as: str | None = None, labelled_drift: bool = False
) -> Iterator[Outcome]:
    """Record how a walk over ``label`` (an account, a video's comments, a listing) ended, the same way everywhere.

    A walk the API says is gone (NotFound) is ``unavailable`` and done; a paginator that drifted (CursorStuck) is
    ``drift`` and done (asking again would repeat the loop); an answer unreadable through every retry
    (BadResponse) is ``failed``, logged and left for the next run. Any other error stops the run."""
    outcome = Outcome()
    try:
        yield outcome
    except NotFound as exc:
        outcome.answered = False
        log.warning("%s is unavailable: %s", label, exc.reason)
        report.unavailable.append(f"{label}: {exc.reason}")
    except CursorStuck as exc:
        outcome.answered, outcome.stuck = False, exc
        log.warning("%s", exc)
        report.drift.append(f"{label}: {exc}" if labelled_drift else str(exc))
    except BadResponse as exc:
        outcome.answered, outcome.left = False, True
        log.warning("%s: %s (left for the next run)", logged_as or label, exc)
        report.failed.append(f"{label}: {exc}")


def resumed_pages(walk: Paginator, pages_done: int, max_pages: int, archived: str) -> Iterator[tuple[Page, int, bool]]:
    """The pages of a walk resumed after ``pages_done`` pages, each with the pages done today once it is in and
    whether it is the walk's last (no more pages, or ``max_pages`` reached); ``archived``: the crash point each page
    reaches once archived, before anything is recorded."""
    for page in walk.pages():
        crashpoint(archived)
        pages_done += 1
        yield page, pages_done, not page.has_more or pages_done >= max_pages


def _once_per_day(session: CaptureSession, task: str) -> bool:
    """True the first time ``task`` is seen for the session's day (and marks it), False on a rerun."""
    key = f"complete:{task}:{session.day.isoformat()}"
    return session.state.get_value(key) is None


def _mark_done(session: CaptureSession, task: str) -> None:
    session.state.set_value(f"complete:{task}:{session.day.isoformat()}", "1")


def _claimed(units: WorkUnits, task: str, report: AccountsReport, kind: str) -> bool:
    """Claim ``task`` for this run: False (and counted) when another run finished it or a live one holds it."""
    claim = units.claim(task)
    if claim.status == "done":
        report.skipped_complete[kind] += 1
    elif claim.status == "held":
        report.held_elsewhere[kind] += 1
    report.taken_over += int(claim.taken_over)
    return claim.status == "mine"


def _guard(units: WorkUnits | None, task: str, fetch: F) -> F:
    """``fetch`` checking first that this run still holds ``task`` (without units: ``fetch`` itself)."""
    return fetch if units is None else units.guarded(task, fetch)  # type: ignore[return-value]


def capture_profiles(session: CaptureSession, report: AccountsReport, run_id: str | None = None) -> None:
    with WorkUnits(session, run_id) as units:
        for account in session.config.accounts:
            task = f"{api.USERINFO_BY_ID.name}:{account.handle}"
            if not _once_per_day(session, task):
                report.skipped_complete["profiles"] += 1
                continue
            if not _claimed(units, task, report, "profiles"):
                continue
            with units.working(task) as left:
                with walk_outcome(report, account.handle, logged_as=f"profile of @{account.handle}") as outcome:
                    user_id = resolve_user_id(session, account.handle, units)
                    units.guarded(task, session.client.userinfo_by_id)(user_id)
                    crashpoint("accounts.profile.archived")  # archived, the day not yet marked done
                    report.profiles += 1
                left[0] = outcome.left


def capture_follow_graph(session: CaptureSession, report: AccountsReport, run_id: str | None = None) -> None:
    with WorkUnits(session, run_id) as units:
        _follow_graph(session, report, units)


def _follow_graph(session: CaptureSession, report: AccountsReport, units: WorkUnits) -> None:
    client = session.client
    for account in session.config.accounts:
        with walk_outcome(report, account.handle) as resolved:
            user_id = resolve_user_id(session, account.handle, units)
        if not resolved.answered:
            continue
        walks: list[tuple[Endpoint, Callable[..., FollowPages], Callable[[str], ApiResponse]]] = []
        if account.followers:
            walks.append((api.USER_FOLLOWERS, FollowPages, partial(client.user_followers, user_id)))
        if account.following:
            walks.append((api.USER_FOLLOWING, FollowPages.following, partial(client.user_following, user_id)))
        for endpoint, make_walk, fetch in walks:
            task = f"{endpoint.name}:{user_id}"
            if not _once_per_day(session, task):
                report.skipped_complete[endpoint.name] += 1
            elif _claimed(units, task, report, endpoint.name):
                with units.working(task) as left:
                    left[0] = _follow_walk(
                        session, report, account, user_id, endpoint, make_walk, units.guarded(task, fetch)
                    )


def _follow_walk(
    session: CaptureSession,
    report: AccountsReport,
    account: Account,
    user_id: str,
    endpoint: Endpoint,
    make_walk: Callable[..., FollowPages],
    fetch: Callable[[str], ApiResponse],
) -> bool:
    """One account's followers (or following) for the day, resumed from the ``time`` a stopped run persisted.
    True when its answers stayed unreadable (left for the next run)."""
    task = f"{endpoint.name}:{user_id}"
    scope = session.cursor_scope(endpoint.name, user_id)
    saved = session.state.get_cursor(scope)
    pages_done = (saved.pages or 0) if saved else 0
    done_key = f"complete:{task}:{session.day.isoformat()}"
    walk = make_walk(
        fetch, start=saved.value if saved else None, max_pages=max(account.follow_max_pages - pages_done, 0)
    )
    label = f"{account.handle} {endpoint.name}"
    with walk_outcome(report, label, logged_as=f"{endpoint.name} of @{account.handle}") as outcome:
        pages = resumed_pages(walk, pages_done, account.follow_max_pages, "follow.page.archived")
        for page, done, last in pages:
            report.follow_pages += 1
            report.follow_edges += len(page.items)
            # the last page's cursor and the walk's end commit together: a rerun never asks past the end
            session.state.set_cursor(scope, page.next_cursor, done, values={done_key: "1"} if last else None)
            crashpoint("follow.page.recorded")
    return outcome.left


def _archived_page(session: CaptureSession, endpoint: Endpoint, entity: str, cursor: str | int) -> Any:
    """A page of today's walk read back from the raw archive (the archive is the truth), or None if absent."""
    key = raw_key(session.day, endpoint.name, slug_page(entity, "cursor", cursor))
    if not session.store.exists(key):
        return None
    return unwrap(json.loads(gzip.decompress(session.store.get_bytes(key))))


def recent_videos(session: CaptureSession, user_id: str, limit: int) -> list[dict]:
    """The account's newest videos, read back from today's archived first /user-posts/ page.

    The archive is the truth."""
    page = _archived_page(session, api.USER_POSTS, user_id, 0) if limit > 0 else None
    videos = page.get("videos") if isinstance(page, dict) else None
    return [video for video in videos or () if isinstance(video, dict) and post_id(video)][:limit]


def _capture_replies(
    session: CaptureSession,
    report: AccountsReport,
    account: Account,
    aweme_id: str,
    comments: list[dict],
    units: WorkUnits | None = None,
) -> None:
    """The reply walks of one page of comments; each finished walk is marked so a resumed run skips it."""
    for comment in comments:
        comment_id = as_id(comment.get("id"))
        if comment_id is None:
            continue
        reply_task = f"{api.POST_COMMENT_REPLIES.name}:{aweme_id}-{comment_id}"
        if not (as_int(comment.get("reply_total")) or 0) or not _once_per_day(session, reply_task):
            continue
        task = f"{api.POST_COMMENTS.name}:{aweme_id}"
        replies = CommentPages(
            _guard(units, task, partial(session.client.post_comment_replies, comment_id, aweme_id, account.handle)),
            max_pages=account.comments.max_reply_pages,
        )
        for reply_page in replies.pages():
            crashpoint("comments.reply_page.archived")
            report.comment_pages += 1
            report.comments += len(reply_page.items)
        _mark_done(session, reply_task)


def capture_comments(session: CaptureSession, report: AccountsReport, run_id: str | None = None) -> None:
    with WorkUnits(session, run_id) as units:
        _comments(session, report, units)


def _comments(session: CaptureSession, report: AccountsReport, units: WorkUnits) -> None:
    for account in session.config.accounts:
        user_id = session.state.cached_user_id(account.handle)
        if not user_id or account.comments.recent_videos == 0:
            continue
        for video in recent_videos(session, user_id, account.comments.recent_videos):
            aweme_id = post_id(video)
            if aweme_id is None:  # recent_videos keeps only videos with an id
                continue
            task = f"{api.POST_COMMENTS.name}:{aweme_id}"
            if not _once_per_day(session, task):
                report.skipped_complete["comments"] += 1
                continue
            if not _claimed(units, task, report, "comments"):
                continue
            with units.working(task) as left:
                with walk_outcome(report, f"comments of {aweme_id}") as outcome:
                    _comment_walk(session, report, account, aweme_id, units)
                left[0] = outcome.left


def _comment_walk(
    session: CaptureSession, report: AccountsReport, account: Account, aweme_id: str, units: WorkUnits | None = None
) -> None:
    """One video's comments (and their replies) for the day.

    A walk a stopped run (credit budget, crash) left half done resumes from its persisted cursor; the page whose
    replies were cut short is read back from the raw archive, never fetched again."""
    options = account.comments
    scope = session.cursor_scope(api.POST_COMMENTS.name, aweme_id)
    replies_of = f"replies-pending:{scope}"
    walked = f"walked:{scope}"  # the walk reached its end; only replies may still be pending
    saved = session.state.get_cursor(scope)
    pages_done = (saved.pages or 0) if saved else 0
    pending = session.state.get_value(replies_of)
    if pending is not None and options.reply_depth >= 1:
        pending_page = _archived_page(session, api.POST_COMMENTS, aweme_id, pending)
        if pending_page is not None:
            page_items = [c for c in (pending_page.get("comments") or ()) if isinstance(c, dict)]
            _capture_replies(session, report, account, aweme_id, page_items, units)
    if pending is not None:
        session.state.delete_value(replies_of)
    remaining = 0 if session.state.get_value(walked) else max(options.max_pages - pages_done, 0)
    walk = CommentPages(
        _guard(
            units,
            f"{api.POST_COMMENTS.name}:{aweme_id}",
            partial(session.client.post_comments, aweme_id, account.handle),
        ),
        start=saved.value if saved else None,
        max_pages=remaining,
    )
    for page, done, last in resumed_pages(walk, pages_done, options.max_pages, "comments.page.archived"):
        report.comment_pages += 1
        report.comments += len(page.items)
        # cursor, "this page's replies are pending" and "the walk has ended" commit together
        session.state.set_cursor(
            scope,
            page.next_cursor,
            done,
            values={replies_of: page.cursor, **({walked: "1"} if last else {})},
        )
        crashpoint("comments.page.recorded")
        if options.reply_depth >= 1:
            _capture_replies(session, report, account, aweme_id, page.items, units)
        crashpoint("comments.replies.done")
        session.state.delete_value(replies_of)

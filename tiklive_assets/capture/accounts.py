"""Tracked accounts: user ids (resolved once, cached), daily profiles, followers/following and comments.

Crash-only: each walk's cursor is committed with its markers (the walk's end, the comment page whose replies are
pending) in one transaction, so a rerun after a kill resumes exactly where the archive stops and never fetches a
page the interrupted run would not have fetched.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.storage.keys import raw_key, slug_page
from tiklive_assets.tikliveapi.errors import BadResponse, CursorStuck, NotFound
from tiklive_assets.tikliveapi.pagination import CommentPages, FollowPages
from tiklive_assets.tolerant import as_id, as_int, post_id, unwrap

log = logging.getLogger(__name__)


def resolve_user_id(session: CaptureSession, handle: str) -> str:
    """/userid/ once per handle, ever: the id is cached in the state database."""
    cached = session.state.cached_user_id(handle)
    if cached:
        return cached
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
        raise BadResponse("/userid/", response.status, f"no numeric user id for @{handle} in the answer")
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


def _once_per_day(session: CaptureSession, task: str) -> bool:
    """True the first time ``task`` is seen for the session's day (and marks it), False on a rerun."""
    key = f"complete:{task}:{session.day.isoformat()}"
    return session.state.get_value(key) is None


def _mark_done(session: CaptureSession, task: str) -> None:
    session.state.set_value(f"complete:{task}:{session.day.isoformat()}", "1")


def capture_profiles(session: CaptureSession, report: AccountsReport) -> None:
    for account in session.config.accounts:
        task = f"userinfo-by-id:{account.handle}"
        if not _once_per_day(session, task):
            report.skipped_complete["profiles"] += 1
            continue
        try:
            user_id = resolve_user_id(session, account.handle)
            session.client.userinfo_by_id(user_id)
            crashpoint("accounts.profile.archived")  # archived, the day not yet marked done
            report.profiles += 1
        except NotFound as exc:
            report.unavailable.append(f"{account.handle}: {exc.reason}")
        except BadResponse as exc:  # unreadable through every retry: this account only, asked again next run
            log.warning("profile of @%s: %s (left for the next run)", account.handle, exc)
            report.failed.append(f"{account.handle}: {exc}")
            continue
        _mark_done(session, task)


def capture_follow_graph(session: CaptureSession, report: AccountsReport) -> None:
    client = session.client
    for account in session.config.accounts:
        try:
            user_id = resolve_user_id(session, account.handle)
        except NotFound as exc:
            report.unavailable.append(f"{account.handle}: {exc.reason}")
            continue
        except BadResponse as exc:
            report.failed.append(f"{account.handle}: {exc}")
            continue
        walks = []
        if account.followers:
            walks.append(("user-followers", FollowPages, lambda t, u=user_id: client.user_followers(u, t)))
        if account.following:
            walks.append(("user-following", FollowPages.following, lambda t, u=user_id: client.user_following(u, t)))
        for endpoint, make_walk, fetch in walks:
            task = f"{endpoint}:{user_id}"
            if not _once_per_day(session, task):
                report.skipped_complete[endpoint] += 1
                continue
            # Resume from the persisted ``time`` of a walk a stopped run (credit budget, crash) left half done.
            scope = session.cursor_scope(endpoint, user_id)
            saved = session.state.get_cursor(scope)
            pages_done = (saved.pages or 0) if saved else 0
            done_key = f"complete:{task}:{session.day.isoformat()}"
            walk = make_walk(
                fetch, start=saved.value if saved else None, max_pages=max(account.follow_max_pages - pages_done, 0)
            )
            try:
                for page in walk.pages():
                    crashpoint("follow.page.archived")
                    pages_done += 1
                    report.follow_pages += 1
                    report.follow_edges += len(page.items)
                    last = not page.has_more or pages_done >= account.follow_max_pages
                    # the last page's cursor and the walk's end commit together: a rerun never asks past the end
                    session.state.set_cursor(
                        scope, page.next_cursor, pages_done, values={done_key: "1"} if last else None
                    )
                    crashpoint("follow.page.recorded")
            except NotFound as exc:
                report.unavailable.append(f"{account.handle} {endpoint}: {exc.reason}")
            except CursorStuck as exc:
                report.drift.append(str(exc))
            except BadResponse as exc:  # unreadable through every retry: this walk only, resumed next run
                log.warning("%s of @%s: %s (left for the next run)", endpoint, account.handle, exc)
                report.failed.append(f"{account.handle} {endpoint}: {exc}")
                continue
            _mark_done(session, task)


def recent_videos(session: CaptureSession, user_id: str, limit: int) -> list[dict]:
    """The account's newest videos, read back from today's archived first /user-posts/ page.

    The archive is the truth."""
    key = raw_key(session.day, "user-posts", slug_page(user_id, "cursor", 0))
    if limit <= 0 or not session.store.exists(key):
        return []
    page = unwrap(json.loads(gzip.decompress(session.store.get_bytes(key))))
    videos = page.get("videos") if isinstance(page, dict) else None
    return [video for video in videos or () if isinstance(video, dict) and post_id(video)][:limit]


def _capture_replies(
    session: CaptureSession, report: AccountsReport, account, aweme_id: str, comments: list[dict]
) -> None:
    """The reply walks of one page of comments; each finished walk is marked so a resumed run skips it."""
    for comment in comments:
        comment_id = as_id(comment.get("id"))
        if comment_id is None:
            continue
        reply_task = f"post-comment-replies:{aweme_id}-{comment_id}"
        if not (as_int(comment.get("reply_total")) or 0) or not _once_per_day(session, reply_task):
            continue
        replies = CommentPages(
            lambda c, cid=comment_id: session.client.post_comment_replies(cid, aweme_id, account.handle, c),
            max_pages=account.comments.max_reply_pages,
        )
        for reply_page in replies.pages():
            crashpoint("comments.reply_page.archived")
            report.comment_pages += 1
            report.comments += len(reply_page.items)
        _mark_done(session, reply_task)


def capture_comments(session: CaptureSession, report: AccountsReport) -> None:
    client = session.client
    for account in session.config.accounts:
        options = account.comments
        user_id = session.state.cached_user_id(account.handle)
        if not user_id or options.recent_videos == 0:
            continue
        for video in recent_videos(session, user_id, options.recent_videos):
            aweme_id = post_id(video)
            task = f"post-comments:{aweme_id}"
            if not _once_per_day(session, task):
                report.skipped_complete["comments"] += 1
                continue
            # A walk a stopped run (credit budget, crash) left half done resumes from its persisted cursor; the
            # page whose replies were cut short is read back from the raw archive, never fetched again.
            scope = session.cursor_scope("post-comments", aweme_id)
            replies_of = f"replies-pending:{scope}"
            walked = f"walked:{scope}"  # the walk reached its end; only replies may still be pending
            saved = session.state.get_cursor(scope)
            pages_done = (saved.pages or 0) if saved else 0
            try:
                pending = session.state.get_value(replies_of)
                if pending is not None and options.reply_depth >= 1:
                    key = raw_key(session.day, "post-comments", slug_page(aweme_id, "cursor", pending))
                    if session.store.exists(key):
                        pending_page = unwrap(json.loads(gzip.decompress(session.store.get_bytes(key))))
                        page_items = [c for c in (pending_page.get("comments") or ()) if isinstance(c, dict)]
                        _capture_replies(session, report, account, aweme_id, page_items)
                if pending is not None:
                    session.state.delete_value(replies_of)
                remaining = 0 if session.state.get_value(walked) else max(options.max_pages - pages_done, 0)
                walk = CommentPages(
                    lambda c, a=aweme_id, h=account.handle: client.post_comments(a, h, c),
                    start=saved.value if saved else None,
                    max_pages=remaining,
                )
                for page in walk.pages():
                    crashpoint("comments.page.archived")
                    pages_done += 1
                    report.comment_pages += 1
                    report.comments += len(page.items)
                    last = not page.has_more or pages_done >= options.max_pages
                    # cursor, "this page's replies are pending" and "the walk has ended" commit together
                    session.state.set_cursor(
                        scope,
                        page.next_cursor,
                        pages_done,
                        values={replies_of: page.cursor, **({walked: "1"} if last else {})},
                    )
                    crashpoint("comments.page.recorded")
                    if options.reply_depth >= 1:
                        _capture_replies(session, report, account, aweme_id, page.items)
                    crashpoint("comments.replies.done")
                    session.state.delete_value(replies_of)
            except NotFound as exc:
                report.unavailable.append(f"comments of {aweme_id}: {exc.reason}")
            except CursorStuck as exc:
                report.drift.append(str(exc))
            except BadResponse as exc:  # an answer unreadable through every retry: this walk only, resumed next run
                log.warning("comments of %s: %s (left for the next run)", aweme_id, exc)
                report.failed.append(f"comments of {aweme_id}: {exc}")
                continue
            _mark_done(session, task)

"""Tracked accounts: user ids (resolved once, cached), daily profiles, followers/following and comments."""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.storage.keys import raw_key, slug_page
from tiklive_assets.tikliveapi.errors import CursorStuck, NotFound
from tiklive_assets.tikliveapi.pagination import CommentPages, FollowPages

log = logging.getLogger(__name__)


def resolve_user_id(session: CaptureSession, handle: str) -> str:
    """/userid/ once per handle, ever: the id is cached in the state database."""
    cached = session.state.cached_user_id(handle)
    if cached:
        return cached
    user_id = str(session.client.userid(handle).json()["id"])
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
            report.profiles += 1
        except NotFound as exc:
            report.unavailable.append(f"{account.handle}: {exc.reason}")
        _mark_done(session, task)


def capture_follow_graph(session: CaptureSession, report: AccountsReport) -> None:
    client = session.client
    for account in session.config.accounts:
        try:
            user_id = resolve_user_id(session, account.handle)
        except NotFound as exc:
            report.unavailable.append(f"{account.handle}: {exc.reason}")
            continue
        walks = []
        if account.followers:
            walks.append(("user-followers", FollowPages(lambda t, u=user_id: client.user_followers(u, t), max_pages=account.follow_max_pages)))
        if account.following:
            walks.append(("user-following", FollowPages.following(lambda t, u=user_id: client.user_following(u, t), max_pages=account.follow_max_pages)))
        for endpoint, walk in walks:
            task = f"{endpoint}:{user_id}"
            if not _once_per_day(session, task):
                report.skipped_complete[endpoint] += 1
                continue
            try:
                for page in walk.pages():
                    report.follow_pages += 1
                    report.follow_edges += len(page.items)
            except NotFound as exc:
                report.unavailable.append(f"{account.handle} {endpoint}: {exc.reason}")
            except CursorStuck as exc:
                report.drift.append(str(exc))
            _mark_done(session, task)


def recent_videos(session: CaptureSession, user_id: str, limit: int) -> list[dict]:
    """The account's newest videos, read back from today's archived first /user-posts/ page (the archive is the truth)."""
    key = raw_key(session.day, "user-posts", slug_page(user_id, "cursor", 0))
    if limit <= 0 or not session.store.exists(key):
        return []
    page = json.loads(gzip.decompress(session.store.get_bytes(key)))
    return list(page.get("videos") or [])[:limit]


def capture_comments(session: CaptureSession, report: AccountsReport) -> None:
    client = session.client
    for account in session.config.accounts:
        options = account.comments
        user_id = session.state.cached_user_id(account.handle)
        if not user_id or options.recent_videos == 0:
            continue
        for video in recent_videos(session, user_id, options.recent_videos):
            aweme_id = str(video["aweme_id"])
            task = f"post-comments:{aweme_id}"
            if not _once_per_day(session, task):
                report.skipped_complete["comments"] += 1
                continue
            try:
                walk = CommentPages(lambda c, a=aweme_id: client.post_comments(a, account.handle, c), max_pages=options.max_pages)
                for page in walk.pages():
                    report.comment_pages += 1
                    report.comments += len(page.items)
                    if options.reply_depth < 1:
                        continue
                    for comment in page.items:
                        if int(comment.get("reply_total") or 0) == 0:
                            continue
                        replies = CommentPages(
                            lambda c, cid=str(comment["id"]), a=aweme_id: client.post_comment_replies(cid, a, account.handle, c),
                            max_pages=options.max_reply_pages,
                        )
                        for reply_page in replies.pages():
                            report.comment_pages += 1
                            report.comments += len(reply_page.items)
            except NotFound as exc:
                report.unavailable.append(f"comments of {aweme_id}: {exc.reason}")
            except CursorStuck as exc:
                report.drift.append(str(exc))
            _mark_done(session, task)

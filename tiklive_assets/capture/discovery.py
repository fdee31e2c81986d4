"""Listing worker: walks the discovery endpoints into the deduplicated queue, persisting the cursor after every page.

Deduplication happens here, before a credit is spent on /post-detail/: ids go into ``archive_queue`` with
``INSERT ... ON CONFLICT DO NOTHING``. The cursor of each walk lives in the state database's ``cursors`` table,
the one authoritative place (scope ``<endpoint>:<entity>:<ingest day>``); a crashed walk resumes from it, and a
finished one is marked complete so rerunning the day spends nothing. A page's ids, the cursor, the day's count and
the complete marker are committed in one transaction: a kill leaves either all of them or none.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tiklive_assets.capture.accounts import resolve_user_id
from tiklive_assets.capture.raw_archive import keyword_entity
from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.tikliveapi.client import ApiResponse
from tiklive_assets.tikliveapi.errors import BadResponse, CursorStuck, NotFound
from tiklive_assets.tikliveapi.pagination import VideoPages
from tiklive_assets.tolerant import as_text, post_id

log = logging.getLogger(__name__)


@dataclass
class DiscoveryReport:
    pages: int = 0
    listed: int = 0
    items_without_id: int = 0  # listed items with no aweme_id/video_id/id: archived raw, counted, never queued
    new_ids: Counter = field(default_factory=Counter)  # by source
    skipped_complete: int = 0
    drift: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # sources whose answers could not be read: left for the next run

    @property
    def total_new(self) -> int:
        return sum(self.new_ids.values())


def complete_key(scope: str) -> str:
    return f"complete:{scope}"


def walk_listing(
    session: CaptureSession,
    *,
    source: str,
    endpoint: str,
    entity: str,
    fetch: Callable[[str], ApiResponse],
    max_pages: int,
    max_videos: int,
    stop_when_all_known: bool,
    report: DiscoveryReport,
) -> None:
    """Walk one listing for the session's day; resume from its persisted cursor; enqueue new ids."""
    state = session.state
    scope = session.cursor_scope(endpoint, entity)
    if state.get_value(complete_key(scope)):
        report.skipped_complete += 1
        return
    saved = state.get_cursor(scope)
    pages_done = saved.pages if saved else 0
    start = saved.value if saved else "0"
    counter = f"enqueued:{scope}"
    enqueued_today = int(state.get_value(counter) or 0)
    remaining_pages = max_pages - pages_done
    try:
        if remaining_pages > 0 and enqueued_today < max_videos:
            for page in VideoPages(fetch, start=start, max_pages=remaining_pages).pages():
                crashpoint("discovery.page.archived")  # archived, its ids not queued, the cursor not advanced
                pages_done += 1
                report.pages += 1
                report.listed += len(page.items)
                report.items_without_id += page.without_id
                rows = [
                    (aweme_id, source, _author_handle(item))
                    for item in page.items
                    if (aweme_id := post_id(item)) is not None
                ]
                # The page is archived; its ids, the cursor, the day's count and the end of the walk commit together.
                # The walk ends on its last page (no more, or max_pages), at max_videos, or (accounts) on a page of
                # posts captured on an earlier day; a rerun then never fetches a page the first run did not.
                recorded = state.record_listing_page(
                    scope,
                    rows,
                    next_cursor=page.next_cursor,
                    pages=pages_done,
                    max_videos=max_videos,
                    last_page=not page.has_more or pages_done >= max_pages,
                    stop_when_all_known=stop_when_all_known,
                    counter_key=counter,
                    complete_key=complete_key(scope),
                )
                crashpoint("discovery.page.recorded")
                enqueued_today = recorded.enqueued_today
                report.new_ids[source] += recorded.new
                if recorded.complete:
                    return
    except CursorStuck as exc:
        log.warning("%s", exc)
        report.drift.append(f"{source}: {exc}")
        state.set_value(f"drift:{scope}", str(exc))
    except NotFound as exc:
        log.warning("%s is unavailable: %s", source, exc.reason)
        report.unavailable.append(f"{source}: {exc.reason}")
    except BadResponse as exc:  # a page unreadable through every retry: this walk resumes from its cursor next run
        log.warning("%s: %s (left for the next run)", source, exc)
        report.failed.append(f"{source}: {exc}")
        return
    state.set_value(complete_key(scope), "1")


def _author_handle(item: dict) -> str | None:
    """The author's handle on a listing item (``author.unique_id``, or TikTok's ``author.uniqueId``), if any."""
    author = item.get("author")
    if isinstance(author, dict):
        return as_text(author.get("unique_id") or author.get("uniqueId"))
    return None


def discover(session: CaptureSession) -> DiscoveryReport:
    """Walk every configured account, hashtag, keyword and sound for the session's day."""
    config, client = session.config, session.client
    report = DiscoveryReport()
    for account in config.accounts:
        try:
            userid = resolve_user_id(session, account.handle)
        except NotFound as exc:
            report.unavailable.append(f"account:{account.handle}: {exc.reason}")
            continue
        except BadResponse as exc:  # unreadable through every retry: this account only, asked again next run
            log.warning("account:%s: %s (left for the next run)", account.handle, exc)
            report.failed.append(f"account:{account.handle}: {exc}")
            continue
        walk_listing(
            session,
            source=f"account:{account.handle}",
            endpoint="/user-posts/",
            entity=userid,
            fetch=lambda cursor, uid=userid: client.user_posts(uid, cursor),
            max_pages=config.max_pages(account),
            max_videos=config.max_videos(account),
            stop_when_all_known=True,
            report=report,
        )
    for tag in config.hashtags:
        walk_listing(
            session,
            source=f"hashtag:{tag.id}",
            endpoint="/challenge-posts/",
            entity=tag.id + (f"-{tag.region}" if tag.region else ""),
            fetch=lambda cursor, t=tag: client.challenge_posts(t.id, cursor, region=t.region),
            max_pages=config.max_pages(tag),
            max_videos=config.max_videos(tag),
            stop_when_all_known=False,
            report=report,
        )
    for kw in config.keywords:
        entity = keyword_entity(kw.keyword, kw.publish_time, kw.sort_by, kw.region)
        walk_listing(
            session,
            source=f"keyword:{kw.keyword}",
            endpoint="/search-video/",
            entity=entity,
            fetch=lambda cursor, k=kw: client.search_video(
                k.keyword, cursor, publish_time=k.publish_time, sort_by=k.sort_by, region=k.region
            ),
            max_pages=config.max_pages(kw),
            max_videos=config.max_videos(kw),
            stop_when_all_known=False,
            report=report,
        )
    for music in config.music:
        walk_listing(
            session,
            source=f"music:{music.id}",
            endpoint="/music-posts/",
            entity=music.id,
            fetch=lambda cursor, m=music: client.music_posts(m.id, cursor),
            max_pages=config.max_pages(music),
            max_videos=config.max_videos(music),
            stop_when_all_known=False,
            report=report,
        )
    return report

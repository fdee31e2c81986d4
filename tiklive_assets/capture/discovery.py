"""Listing worker: walks the discovery endpoints into the deduplicated queue, persisting the cursor after every page.

Deduplication happens here, before a credit is spent on /post-detail/: ids go into ``archive_queue`` with
``INSERT ... ON CONFLICT DO NOTHING``. The cursor of each walk lives in the state database's ``cursors`` table,
the one authoritative place (scope ``<endpoint>:<entity>:<ingest day>``); a crashed walk resumes from it, and a
finished one is marked complete so rerunning the day spends nothing. A page's ids, the cursor, the day's count and
the complete marker are committed in one transaction: a kill leaves either all of them or none.

Concurrent runs split the walks: each (source, day) walk is a unit claimed in the state database before its first
page (``capture/units.py``), so a walk another live run holds is left to it, and a stopped run's walk is taken over
from its saved cursor. A run whose walks are done while others still walk moves on to the video queue and drains
it as they fill it, until every walk of the day has ended: then the queue holds everything the day listed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from tiklive_assets.capture.accounts import resolve_user_id, walk_outcome
from tiklive_assets.capture.raw_archive import keyword_entity
from tiklive_assets.capture.session import CaptureSession
from tiklive_assets.capture.units import WorkUnits, heartbeat_seconds
from tiklive_assets.capture.videos import archive_pending
from tiklive_assets.crashpoints import crashpoint
from tiklive_assets.tikliveapi import endpoints as api
from tiklive_assets.tikliveapi.client import ApiResponse
from tiklive_assets.tikliveapi.endpoints import Endpoint
from tiklive_assets.tikliveapi.pagination import VideoPages
from tiklive_assets.tolerant import as_text, post_id
from tiklive_assets.tracking import Account, Hashtag, Keyword, Music

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
    held_elsewhere: int = 0  # walks another live run was walking when this one came to them
    taken_over: int = 0  # walks of runs that stopped, resumed here from their saved cursor
    videos_downloaded_while_waiting: int = 0  # queued videos this run captured while other runs still walked

    @property
    def total_new(self) -> int:
        return sum(self.new_ids.values())

    @property
    def walks_complete(self) -> int:
        """Walks a rerun found complete and did not fetch again."""
        return self.skipped_complete


def complete_key(scope: str) -> str:
    return f"complete:{scope}"


@dataclass(frozen=True)
class Listing:
    """One configured source to walk: ``source`` names it in the queue and the report (``hashtag:<id>``),
    ``entity`` in its cursor's scope; ``limits`` is the config entry whose bounds it keeps."""

    source: str
    endpoint: Endpoint
    entity: str
    fetch: Callable[[str], ApiResponse]
    limits: Account | Hashtag | Keyword | Music
    stop_when_all_known: bool = False  # an account's posts: stop at a page of posts captured on an earlier day


LISTING_ENDPOINTS = (api.USER_POSTS, api.CHALLENGE_POSTS, api.SEARCH_VIDEO, api.MUSIC_POSTS)
LISTING_UNITS = tuple(f"{endpoint.name}:" for endpoint in LISTING_ENDPOINTS)  # the units' names start so


def listing_unit(listing: Listing) -> str:
    """The unit a listing walk is claimed as: its cursor scope without the day (the claim carries the day)."""
    return f"{listing.endpoint.name}:{listing.entity}"


def walk_listing(
    session: CaptureSession, listing: Listing, report: DiscoveryReport, units: WorkUnits | None = None
) -> None:
    """Walk one listing for the session's day; resume from its persisted cursor; enqueue new ids.

    With ``units`` the walk is claimed first: one done by any run is skipped, one another live run walks is left to
    it (``held_elsewhere``), one a stopped run left is taken over from its cursor."""
    scope = session.cursor_scope(listing.endpoint.name, listing.entity)
    if session.state.get_value(complete_key(scope)):
        report.skipped_complete += 1
        return
    if units is None:
        _walk(session, listing, listing.fetch, scope, report)
        return
    unit = listing_unit(listing)
    claim = units.claim(unit)
    if claim.status == "done":
        report.skipped_complete += 1
        return
    if claim.status == "held":
        report.held_elsewhere += 1
        return
    report.taken_over += int(claim.taken_over)
    with units.working(unit) as left:
        left[0] = not _walk(session, listing, units.guarded(unit, listing.fetch), scope, report)


def _walk(
    session: CaptureSession, listing: Listing, fetch: Callable[[str], ApiResponse], scope: str, report: DiscoveryReport
) -> bool:
    """The walk itself; True when it ended for the day, False when its answers stayed unreadable (next run)."""
    state, source = session.state, listing.source
    max_pages = session.config.max_pages(listing.limits)
    max_videos = session.config.max_videos(listing.limits)
    if state.get_value(complete_key(scope)):  # a run that stopped finished it before its claim was released
        report.skipped_complete += 1
        return True
    saved = state.get_cursor(scope)
    pages_done = (saved.pages or 0) if saved else 0
    start = saved.value if saved else "0"
    counter = f"enqueued:{scope}"
    enqueued_today = int(state.get_value(counter) or 0)
    remaining_pages = max_pages - pages_done
    with walk_outcome(report, source, labelled_drift=True) as outcome:
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
                    stop_when_all_known=listing.stop_when_all_known,
                    counter_key=counter,
                    complete_key=complete_key(scope),
                )
                crashpoint("discovery.page.recorded")
                enqueued_today = recorded.enqueued_today
                report.new_ids[source] += recorded.new
                if recorded.complete:
                    return True
    if outcome.stuck is not None:
        state.set_value(f"drift:{scope}", str(outcome.stuck))
    if not outcome.left:  # a page unreadable through every retry: this walk resumes from its cursor next run
        state.set_value(complete_key(scope), "1")
    return not outcome.left


def _author_handle(item: dict) -> str | None:
    """The author's handle on a listing item (``author.unique_id``, or TikTok's ``author.uniqueId``), if any."""
    author = item.get("author")
    if isinstance(author, dict):
        return as_text(author.get("unique_id") or author.get("uniqueId"))
    return None


def listings(session: CaptureSession, report: DiscoveryReport, units: WorkUnits | None = None) -> Iterator[Listing]:
    """Every configured account, hashtag, keyword and sound as a listing to walk, in that order. An account's
    user id is resolved just before its walk (once for all runs: see ``resolve_user_id``); one that cannot be
    resolved is reported and not walked."""
    config, client = session.config, session.client
    for account in config.accounts:
        source = f"account:{account.handle}"
        with walk_outcome(report, source) as resolved:
            userid = resolve_user_id(session, account.handle, units)
        if resolved.answered:
            yield Listing(source, api.USER_POSTS, userid, partial(client.user_posts, userid), account, True)
    for tag in config.hashtags:
        entity = tag.id + (f"-{tag.region}" if tag.region else "")
        fetch = partial(client.challenge_posts, tag.id, region=tag.region)
        yield Listing(f"hashtag:{tag.id}", api.CHALLENGE_POSTS, entity, fetch, tag)
    for kw in config.keywords:
        entity = keyword_entity(kw.keyword, kw.publish_time, kw.sort_by, kw.region)
        fetch = partial(
            client.search_video, kw.keyword, publish_time=kw.publish_time, sort_by=kw.sort_by, region=kw.region
        )
        yield Listing(f"keyword:{kw.keyword}", api.SEARCH_VIDEO, entity, fetch, kw)
    for music in config.music:
        yield Listing(f"music:{music.id}", api.MUSIC_POSTS, music.id, partial(client.music_posts, music.id), music)


def discover(session: CaptureSession, run_id: str | None = None) -> DiscoveryReport:
    """Walk every configured account, hashtag, keyword and sound for the session's day, sharing the walks with
    any other run of the day: see the module's docstring."""
    report = DiscoveryReport()
    with WorkUnits(session, run_id) as units:
        by_unit: dict[str, Listing] = {}
        for listing in listings(session, report, units):
            by_unit[listing_unit(listing)] = listing
            walk_listing(session, listing, report, units)
        _while_others_walk(session, units, by_unit, report)
    return report


def _while_others_walk(
    session: CaptureSession, units: WorkUnits, by_unit: dict[str, Listing], report: DiscoveryReport
) -> None:
    """Until no other live run walks a listing of the day: drain the video queue they fill, and take over the walk
    of any run that stops. Returns at once when nobody else walks (a single run never waits)."""
    poll = min(1.0, heartbeat_seconds(session) / 4)
    draining = True  # until an id fails here: this run then leaves the queue to the video step (no retry loop)
    while True:
        for unit in units.free_unfinished(LISTING_UNITS):
            if unit in by_unit:
                walk_listing(session, by_unit[unit], report, units)
        walking = units.others_walking(LISTING_UNITS)
        if not walking:
            return
        depth = session.state.queue_depth()
        if not draining or depth["pending"] + depth["resolved"] == 0:
            time.sleep(poll)
            continue
        videos = archive_pending(session, run_id=units.owner.run_id)
        report.videos_downloaded_while_waiting += videos.downloaded
        if videos.budget_stop is not None:
            raise videos.budget_stop
        if videos.systemic_error:  # the video step meets it again and reports it; the walks are not ours
            log.warning("stopped draining the queue while other runs walk: %s", videos.systemic_error)
            return
        draining = not videos.failed
        if not (videos.resolved or videos.dead):
            time.sleep(poll)  # every queued id is claimed by the walking runs' own video workers

"""A fabricated archive day in the sandbox's exact wire shapes, written through the real store API and key layout.

Used by the warehouse and verification tests, so neither waits for a rate limiter.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import ObjectStore, cover_key, raw_key, slug_page, video_key
from tiklive_assets.storage.keys import refresh_slug

HANDLES = ["alice123", "bob"]
GONE = "7000000000000000404"


def _put(store: ObjectStore, day: date, endpoint: str, slug: str, body: object) -> str:
    key = raw_key(day, endpoint, slug)
    data = gzip.compress(json.dumps(body).encode(), mtime=0)
    store.put_bytes(key, data, content_type="application/json", content_encoding="gzip")
    return key


def put_raw(
    store: ObjectStore, day: date, endpoint: str, slug: str, body: object | bytes, *, fetched: datetime | None = None
) -> str:
    """One archived response as the capture writes it: gzip (MTIME = fetch time) of the JSON of ``body``, or of
    ``body`` itself when it is bytes (a body that is not JSON, archived raw under ``<slug>-error-notjson``)."""
    key = raw_key(day, endpoint, slug)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    moment = fetched or datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    store.put_bytes(
        key,
        gzip.compress(payload, mtime=int(moment.timestamp())),
        content_type="application/json",
        content_encoding="gzip",
    )
    return key


def put_photo_media(
    store: ObjectStore, day: date, handle: str, aweme_id: str, images: list[bytes], sound: bytes
) -> list[str]:
    """A photo post's files as the capture stores them: ``<id>-<n>.jpg`` per image (n from 1), ``<id>.mp3``."""
    stem = video_key(day, handle, aweme_id).removesuffix(".mp4")
    keys = []
    for n, data in enumerate(images, start=1):
        keys.append(f"{stem}-{n}.jpg")
        store.put_bytes(keys[-1], data, content_type="image/jpeg")
    store.put_bytes(f"{stem}.mp3", sound, content_type="audio/mpeg")
    store.put_bytes(f"{stem}.json", b"{}", content_type="application/json")
    return keys


def write_refreshes(store: ObjectStore, day: date, corpus: Corpus, now: float) -> None:
    """What the refresh archives on a day: two of alice123's posts re-resolved at their age in whole hours
    (``post-detail/<id>-refresh<N>h``), one of bob's answering 404 (a tombstone), and a profile that is gone."""
    alice, bob = corpus.account("alice123"), corpus.account("bob")
    for post in corpus.visible_posts(alice, now)[:2]:
        age = max(1, int((now - post.create_time) // 3600))
        _put(store, day, "post-detail", refresh_slug(post.aweme_id, age), corpus.detail_item(post, now))
    gone = corpus.visible_posts(bob, now)[5]
    age = max(1, int((now - gone.create_time) // 3600))
    _put(store, day, "post-detail", f"{refresh_slug(gone.aweme_id, age)}-http404", {"error": "video not found"})
    _put(store, day, "userinfo-by-id", f"6899{day:%Y%m%d}-http404", {"error": "user not found"})


def write_archive_day(store: ObjectStore, day: date, corpus: Corpus, *, refreshes: bool = False) -> None:
    """One day's capture in the sandbox's shapes: profiles, listings, details (one 404), follows, comments, MP4s;
    with ``refreshes``, what the refresh archives too (:func:`write_refreshes`)."""
    now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
    for handle in HANDLES:
        account = corpus.account(handle)
        _put(store, day, "userid", handle, {"id": account.id})
        _put(store, day, "userinfo-by-id", account.id, corpus.profile(account, now))
        posts = corpus.visible_posts(account, now)[:6]
        _put(
            store,
            day,
            "user-posts",
            slug_page(account.id, "cursor", 0),
            {"videos": [corpus.listing_item(p, now) for p in posts], "cursor": str(posts[-1].ct_ms), "hasMore": True},
        )
        for post in posts[:3]:
            _put(store, day, "post-detail", post.aweme_id, corpus.detail_item(post, now))
            key = video_key(day, handle, post.aweme_id)
            store.put_bytes(key, b"\x00\x00\x00\x20ftypisom" + post.aweme_id.encode() * 40, content_type="video/mp4")
            store.put_bytes(cover_key(day, post.aweme_id), b"\xff\xd8cover", content_type="image/jpeg")
        times, followers = corpus.follow_list(account, "followers", now)
        _put(
            store,
            day,
            "user-followers",
            slug_page(account.id, "time", 0),
            {"followers": followers[:20], "time": times[:20][-1], "hasMore": True},
        )
        times, following = corpus.follow_list(account, "following", now)
        _put(
            store,
            day,
            "user-following",
            slug_page(account.id, "time", 0),
            {"followings": following[:10], "time": times[:10][-1], "hasMore": True},
        )
        for post in posts[:2]:
            comments = corpus.comments(post.aweme_id, now)
            _put(
                store,
                day,
                "post-comments",
                slug_page(post.aweme_id, "cursor", 0),
                {
                    "comments": [corpus.comment_item(c, post.aweme_id, now) for c in comments[:20]],
                    "cursor": "20",
                    "hasMore": len(comments) > 20,
                },
            )
            for parent in [c for c in comments[:20] if any(r.ct <= now for r in c.replies)][:2]:
                replies = [r for r in parent.replies if r.ct <= now]
                _put(
                    store,
                    day,
                    "post-comment-replies",
                    slug_page(f"{post.aweme_id}-{parent.id}", "cursor", 0),
                    {
                        "comments": [corpus.comment_item(r, post.aweme_id, now, parent) for r in replies],
                        "cursor": str(len(replies)),
                        "hasMore": False,
                    },
                )
    _put(store, day, "post-detail", f"{GONE}-http404", {"error": "video not found (deleted)"})
    if refreshes:
        write_refreshes(store, day, corpus, now)

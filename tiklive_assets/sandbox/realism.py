"""Realism: the sandbox serving the payload variants that real responses of this API family show.

The clean sandbox speaks the documented wire format exactly. Real APIs do not: recorded TikTok payloads and a
public API with TikLiveAPI's vocabulary show ids under ``video_id`` or ``id`` and as JSON integers, counters as
strings or null, ``hasMore`` as ``1``/``0``, integer cursors, ``bioLink`` as an object, ``music_info`` null with
``music`` ``""``, null or integer titles, ISO ``create_time``, unknown extra fields, ``/region-list/`` as a
``{code: name}`` map, the ``{"code": 0, "msg": "success", "data": …}`` envelope, photo (slideshow) posts whose
``play`` is an MP3 and whose pictures are in ``images[]``, and, inside HTTP 200, upstream errors
(``{"code": -1, "msg": …}``) and truncated bodies. With ``realism`` on, the sandbox serves all of them.

Every choice is a deterministic function of the seed and the object's id, so a test knows which item gets which
shape (``variant_of``) and a run is reproducible. One-off faults (an upstream error, a truncated body) hit the
first request of a chosen request only; the retry gets the real answer, as with a flaky upstream.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from typing import Any

from tiklive_assets.tikliveapi.endpoints import (
    BY_PATH,
    CHALLENGE_POSTS,
    MUSIC_POSTS,
    POST_COMMENT_REPLIES,
    POST_COMMENTS,
    POST_DETAIL,
    REGION_LIST,
    SEARCH_VIDEO,
    USERINFO_BY_ID,
    USERINFO_BY_USERNAME,
    Endpoint,
)

from .media import SignedCdn


def _paths(*endpoints: Endpoint) -> frozenset[str]:
    return frozenset(e.path for e in endpoints)


COUNTERS = ("play_count", "digg_count", "comment_count", "share_count", "download_count", "collect_count")
PROFILE_STATS = ("followerCount", "followingCount", "videoCount", "heartCount", "diggCount")
ENVELOPED = _paths(MUSIC_POSTS, REGION_LIST)  # answered inside {"code": 0, "msg", "data"}
TRUNCATED = _paths(POST_COMMENTS, POST_COMMENT_REPLIES)  # one page in four cut short in transit, once
PROFILES = _paths(USERINFO_BY_ID, USERINFO_BY_USERNAME)
INT_HAS_MORE = _paths(SEARCH_VIDEO, POST_COMMENTS, POST_COMMENT_REPLIES, MUSIC_POSTS)  # hasMore as 1/0
INT_CURSOR = _paths(SEARCH_VIDEO, POST_COMMENTS, CHALLENGE_POSTS)  # a digit cursor as a JSON integer
UPSTREAM_ERROR = {"code": -1, "msg": "upstream service busy, please retry"}


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


class Realism:
    """Rewrites the clean sandbox's answers into the shapes real responses take (see the module docstring)."""

    def __init__(self, seed: int):
        self.seed = seed
        self._served: set[str] = set()  # requests whose one-off fault was already served
        self._lock = threading.Lock()

    # -- which object gets which variant (tests read these) --------------------------------------------------

    def variant_of(self, kind: str, key: object, modulo: int) -> int:
        return _h(self.seed, "realism", kind, key) % modulo

    def is_photo(self, aweme_id: str) -> bool:
        """About one post in seven is a photo (slideshow) post."""
        return self.variant_of("photo", aweme_id, 7) == 0

    def image_count(self, aweme_id: str) -> int:
        return 2 + self.variant_of("images", aweme_id, 3)

    # -- one-off faults ---------------------------------------------------------------------------------

    def _first_time(self, request: str) -> bool:
        with self._lock:
            if request in self._served:
                return False
            self._served.add(request)
            return True

    def one_off_fault(self, path: str, query: str) -> dict | bytes | None:
        """An upstream error inside a 200 (about 1 request in 12) or a truncated body (1 comment page in 4),
        served the first time that exact request arrives; None otherwise."""
        request = f"{path}?{query}"
        if path in TRUNCATED and self.variant_of("truncate", request, 4) == 0:
            if self._first_time(request):
                return b'{"comments": [{"id": "1", "text": "cut sh'  # the connection dropped mid-body
        elif self.variant_of("upstream", request, 12) == 0 and self._first_time(request):
            return dict(UPSTREAM_ERROR)
        return None

    # -- rewriting answers ------------------------------------------------------------------------------

    def answer(self, path: str, query: str, body: dict[str, Any], cdn: SignedCdn, now: float) -> dict | bytes:
        """The clean answer in the shapes real responses take, photo posts among the posts, and the one-off
        fault of this request when it has one."""
        fault = self.one_off_fault(path, query)
        if fault is not None:
            return fault
        endpoint = BY_PATH[path]
        key = endpoint.items if endpoint.parse == "post_listing" else None
        detail = endpoint is POST_DETAIL
        if detail or (key is not None and isinstance(body.get(key), list)):
            items = [body] if detail else body[str(key)]
            posts = [
                self._as_photo(item, cdn, now) if self.is_photo(str(item.get("aweme_id"))) else item for item in items
            ]
            body = posts[0] if detail else {**body, str(key): posts}
        return self.rewrite(path, body)

    def _as_photo(self, item: dict[str, Any], cdn: SignedCdn, now: float) -> dict[str, Any]:
        aweme_id = str(item["aweme_id"])
        images = [cdn.cdn_url("image", f"{aweme_id}x{n}", "jpg", now) for n in range(1, self.image_count(aweme_id) + 1)]
        music_id = (item.get("music_info") or {}).get("id")
        return self.photo(item, images, cdn.cdn_url("music", music_id, "mp3", now) if music_id else "")

    def rewrite(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The clean answer of ``path`` in the shapes real responses take."""
        endpoint = BY_PATH[path]
        key = endpoint.items
        if key is not None and isinstance(body.get(key), list):
            if endpoint.parse == "post_listing":
                body[key] = [self.post(item, listing=True) for item in body[key]]
            elif endpoint.parse == "follow_page":
                body[key] = [self.follower(item) for item in body[key]]
                if self.variant_of("time-type", body.get("time"), 2):
                    body["time"] = str(body["time"])
            elif endpoint.parse == "comment_page":
                body[key] = [self.comment(item) for item in body[key]]
        if endpoint is POST_DETAIL and ("aweme_id" in body):
            body = self.post(body, listing=False)
        if path in PROFILES and "user" in body:
            body = self.profile(body)
        if path == REGION_LIST.path and isinstance(body.get("regions"), list):
            body = {r["code"]: r["name"] for r in body["regions"]}
        if "hasMore" in body and path in INT_HAS_MORE:
            body["hasMore"] = 1 if body["hasMore"] else 0
        if path in INT_CURSOR and str(body.get("cursor", "")).isdigit():
            body["cursor"] = int(body["cursor"])
        if path in ENVELOPED:
            body = {"code": 0, "msg": "success", "processed_time": 0.12, "data": body}
        return body

    def post(self, item: dict[str, Any], *, listing: bool) -> dict[str, Any]:
        aweme_id = str(item["aweme_id"])
        out = dict(item)
        pick = self.variant_of("id-name", aweme_id, 6)
        if pick == 0:
            out["video_id"] = out.pop("aweme_id")
        elif pick == 1:
            out["aweme_id"] = int(aweme_id)
        elif pick == 2:
            out["id"] = int(out.pop("aweme_id"))
        if self.variant_of("str-counters", aweme_id, 3) == 0:
            for name in COUNTERS:
                if out.get(name) is not None:
                    out[name] = str(out[name])
        if self.variant_of("null-plays", aweme_id, 10) == 1:
            out["play_count"] = None
        if self.variant_of("no-music", aweme_id, 5) == 0:
            out["music_info"] = None
            out["music"] = ""
        title = self.variant_of("title", aweme_id, 13)
        if title == 0:
            out["title"] = None
        elif title == 1:
            out["title"] = 1000 + self.variant_of("title-int", aweme_id, 9000)
        if self.variant_of("iso-time", aweme_id, 8) == 0 and isinstance(out.get("create_time"), int):
            out["create_time"] = datetime.fromtimestamp(out["create_time"], UTC).isoformat().replace("+00:00", "Z")
        if listing and self.variant_of("no-author", aweme_id, 11) == 0:
            out.pop("author", None)
        out.update(
            {
                "anchors": None,
                "commerce_info": {"adv_promotable": False, "auction_ad_invited": False},
                "is_top": self.variant_of("top", aweme_id, 2),
                "size": 1_000_000 + self.variant_of("size", aweme_id, 10**6),
                "is_ad": False,
                "item_comment_settings": 0,
                "mentioned_users": "",
            }
        )
        return out

    def photo(self, item: dict[str, Any], images: list[str], sound: str) -> dict[str, Any]:
        """A photo post: ``images[]``, duration 0, and ``play``/``wmplay`` pointing at the sound (an MP3)."""
        out = dict(item)
        out.pop("hdplay", None)
        out.update({"images": images, "duration": 0, "play": sound, "wmplay": sound})
        return out

    def profile(self, body: dict[str, Any]) -> dict[str, Any]:
        user, stats = dict(body["user"]), dict(body.get("stats") or {})
        key = user.get("id")
        link = user.get("bioLink")
        shape = self.variant_of("bio", key, 3)
        if shape == 0 or not link:
            user["bioLink"] = {
                "link": (link or f"https://example.com/{user.get('uniqueId')}").removeprefix("https://"),
                "risk": 3,
            }
        elif shape == 1:
            user.pop("bioLink", None)
        user["verified"] = 1 if user.get("verified") else 0
        user.update({"commerceUserInfo": {"commerceUser": False}, "ftc": False, "relation": 0, "openFavorite": False})
        if self.variant_of("stats-v2", key, 2) == 0:
            body = {**body, "statsV2": {name: str(value) for name, value in stats.items()}}
            stats = {name: str(value) for name, value in stats.items()}
        return {**body, "user": user, "stats": stats}

    def follower(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        if self.variant_of("follower-id", item.get("id"), 2) == 0:
            out["id"] = int(out["id"])
        if out.get("follower_count") is not None:
            out["follower_count"] = str(out["follower_count"])
        out["ins_id"] = ""
        return out

    def comment(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        if self.variant_of("comment-id", item.get("id"), 2) == 0:
            out["id"] = int(out["id"])
        out["reply_total"] = str(out.get("reply_total") or 0)
        out["is_author_digged"] = False
        return out

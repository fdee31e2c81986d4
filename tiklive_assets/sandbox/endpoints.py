"""The sandbox's TikLiveAPI endpoints: one handler per declared endpoint, answering from the corpus.

The paths served, the parameters each one requires and the key of a page's list are the declarations' in
``tiklive_assets/tikliveapi/endpoints.py``: a request that lacks a required parameter is refused (400, naming the
first one missing in declared order) before its handler runs, and the sandbox refuses to start when a declared
endpoint has no handler here or a handler has no declaration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs

from tiklive_assets.tikliveapi.endpoints import ENDPOINTS, Endpoint

from .corpus import Corpus
from .faults import ApiError
from .world import HASHTAG_IDS, HASHTAGS, MUSIC, REGIONS, Account, Post, _h

_VIDEO_RE = re.compile(r"/video/(\d+)")
_PUBLISH_TIMES = {0, 1, 7, 30, 90, 180}
T = TypeVar("T")


def query_params(query: str) -> dict[str, str]:
    """A query string's parameters, the last value of each (blank values kept)."""
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


def parse_aweme_id(url: str | None) -> str | None:
    if not url:
        return None
    m = _VIDEO_RE.search(url)
    return m.group(1) if m else None


class Params:
    """One request's query parameters, read and validated as the endpoint ``endpoint`` reads them."""

    def __init__(self, query: str, endpoint: Endpoint) -> None:
        self.q = query_params(query)
        self.endpoint = endpoint

    def required(self, name: str) -> str:
        v = self.q.get(name)
        if v is None or v == "":
            raise ApiError(400, f"missing parameter: {name}")
        return v

    def optional(self, name: str, default: str | None = None) -> str | None:
        v = self.q.get(name)
        return default if v in (None, "") else v

    def integer(self, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        """The integer ``name`` (``default`` when absent), clamped to ``[lo, hi]``; 400 when it is no integer."""
        raw = self.q.get(name)
        if raw in (None, ""):
            return default
        try:
            v = int(raw)
        except ValueError:
            raise ApiError(400, f"invalid parameter: {name} must be an integer") from None
        if lo is not None and v < lo:
            v = lo
        if hi is not None and v > hi:
            v = hi
        return v

    def window(self, default: int, most: int) -> tuple[int, int]:
        """``(offset, count)`` of an offset-paged answer: ``cursor`` is the offset, ``count`` at most ``most``."""
        count = self.integer("count", default, 1, most)
        return self.integer("cursor", 0, 0), count

    def page(self, items: Sequence[T], window: tuple[int, int], render: Callable[[T], dict]) -> dict:
        """The ``window`` of ``items``, rendered, under the endpoint's list key, with the next offset."""
        offset, count = window
        page = items[offset : offset + count]
        end = offset + len(page)
        assert self.endpoint.items is not None  # an offset-paged endpoint declares its list key
        return {self.endpoint.items: [render(x) for x in page], "cursor": str(end), "hasMore": end < len(items)}


# ---------------------------------------------------------------------- the parameters that name things


def _account(c: Corpus, p: Params, name: str = "userid") -> Account:
    a = c.account_by_id(p.required(name))
    if a is None:
        raise ApiError(404, "user not found")
    return a


def _account_by_username(c: Corpus, p: Params) -> Account:
    a = c.account(p.required("username"))
    if a is None:
        raise ApiError(404, "user not found")
    return a


def _check_public(c: Corpus, a: Account) -> None:
    if a.handle in c.private:
        raise ApiError(404, "account is private")


def _video(c: Corpus, p: Params, now: float) -> Post:
    aid = parse_aweme_id(p.required("url"))
    if aid is None:
        raise ApiError(400, "invalid parameter: url (expected https://www.tiktok.com/@handle/video/<id>)")
    post = c.find_post(aid)
    if post is None or not c.is_visible(post, now):
        raise ApiError(404, "video not found")
    if aid in c.deleted:
        raise ApiError(404, "video not found (deleted)")
    if c.author_of(post).handle in c.private:
        raise ApiError(404, "video is private")
    return post


def _region(p: Params) -> str | None:
    region = p.optional("region")
    if region is not None:
        region = region.upper()
        if region not in {r["code"] for r in REGIONS}:
            raise ApiError(400, f"invalid parameter: region (unsupported region {region!r})")
    return region


def _videos_page(c: Corpus, p: Params, posts: list[Post], now: float) -> dict:
    return p.page(posts, p.window(30, 30), lambda x: c.listing_item(x, now))


# ---------------------------------------------------------------------- handlers


def _userid(c: Corpus, p: Params, now: float) -> dict:
    return {"id": _account_by_username(c, p).id}


def _userinfo_by_username(c: Corpus, p: Params, now: float) -> dict:
    return c.profile(_account_by_username(c, p), now)


def _userinfo_by_id(c: Corpus, p: Params, now: float) -> dict:
    return c.profile(_account(c, p), now)


def _user_posts(c: Corpus, p: Params, now: float) -> dict:
    a = _account(c, p)
    count = p.integer("count", 30, 1, 30)
    cursor = p.integer("cursor", 0, 0)
    _check_public(c, a)
    posts = c.visible_posts(a, now)
    if cursor > 0:
        posts = [x for x in posts if x.ct_ms < cursor]
    page = posts[:count]
    return {
        str(p.endpoint.items): [c.listing_item(x, now) for x in page],
        "cursor": str(page[-1].ct_ms) if page else str(cursor),
        "hasMore": len(posts) > len(page),
    }


def _follow(kind: str) -> Callable[[Corpus, Params, float], dict]:
    def handler(c: Corpus, p: Params, now: float) -> dict:
        a = _account(c, p)
        count = p.integer("count", 50, 1, 50)
        t = p.integer("time", 0, 0)
        _check_public(c, a)
        times, items = c.follow_list(a, kind, now)
        if t > 0:
            keep = [i for i, ft in enumerate(times) if ft < t]
            times, items = [times[i] for i in keep], [items[i] for i in keep]
        page = items[:count]
        return {str(p.endpoint.items): page, "time": times[:count][-1] if page else t, "hasMore": len(items) > count}

    return handler


def _post_detail(c: Corpus, p: Params, now: float) -> dict:
    return c.detail_item(_video(c, p, now), now)


def _download_video(c: Corpus, p: Params, now: float) -> dict:
    post = _video(c, p, now)
    return {
        "video": c.cdn_url("play", post.aweme_id, "mp4", now),
        "video_hd": c.cdn_url("hdplay", post.aweme_id, "mp4", now) if post.has_hd else None,
    }


def _post_comments(c: Corpus, p: Params, now: float) -> dict:
    post = _video(c, p, now)
    window = p.window(20, 50)
    return p.page(c.comments(post.aweme_id, now), window, lambda x: c.comment_item(x, post.aweme_id, now))


def _post_comment_replies(c: Corpus, p: Params, now: float) -> dict:
    cid = p.required("comment_id")
    post = _video(c, p, now)
    window = p.window(20, 50)
    parent = next((x for x in c.comments(post.aweme_id, now) if x.id == cid), None)
    if parent is None:
        raise ApiError(404, "comment not found")
    replies = [r for r in parent.replies if r.ct <= now]
    return p.page(replies, window, lambda r: c.comment_item(r, post.aweme_id, now, parent))


def _challenge_posts(c: Corpus, p: Params, now: float) -> dict:
    cid = p.required("challenge_id")
    _region(p)  # validated; the hashtag feed is global in the sandbox
    name = HASHTAGS.get(cid)
    if name is None:
        raise ApiError(404, "challenge not found")
    return _videos_page(c, p, [x for x in c.discoverable_posts(now) if name in x.hashtags], now)


def _music_posts(c: Corpus, p: Params, now: float) -> dict:
    mid = p.required("music_id")
    if mid not in MUSIC:
        raise ApiError(404, "music not found")
    return _videos_page(c, p, [x for x in c.discoverable_posts(now) if x.music_id == mid], now)


def _search_video(c: Corpus, p: Params, now: float) -> dict:
    kw = p.required("keyword").strip().lower().lstrip("#")
    if not kw:
        raise ApiError(400, "missing parameter: keyword")
    publish_time = p.integer("publish_time", 0)
    if publish_time not in _PUBLISH_TIMES:
        raise ApiError(400, "invalid parameter: publish_time (one of 0, 1, 7, 30, 90, 180)")
    sort_by = p.integer("sort_by", 0)
    if sort_by not in (0, 1, 2):
        raise ApiError(400, "invalid parameter: sort_by (0 relevance, 1 likes, 2 date)")
    region = _region(p)
    since_ms = int((now - publish_time * 86400) * 1000) if publish_time else None
    hits = []
    for x in c.discoverable_posts(now):
        if since_ms is not None and x.ct_ms < since_ms:
            continue
        if region is not None and x.region != region:
            continue
        a = c.author_of(x)
        n = f"{x.title} {a.handle} {a.nickname}".lower().count(kw)
        if n:
            hits.append((n, x))
    if sort_by == 1:
        hits.sort(key=lambda h: (c.digg_count(h[1], now), h[1].aweme_id), reverse=True)
    elif sort_by == 2:
        hits.sort(key=lambda h: (h[1].ct_ms, h[1].aweme_id), reverse=True)
    else:
        hits.sort(key=lambda h: (-h[0], _h(c.seed, "relevance", kw, h[1].aweme_id)))
    return _videos_page(c, p, [x for _, x in hits], now)


def _region_list(c: Corpus, p: Params, now: float) -> dict:
    return {"regions": [dict(r) for r in REGIONS]}


def _challenge_info_id(c: Corpus, p: Params, now: float) -> dict:
    cid = p.required("challenge_id")
    if cid not in HASHTAGS:
        raise ApiError(404, "challenge not found")
    return c.challenge_info(cid, now)


def _challenge_info_name(c: Corpus, p: Params, now: float) -> dict:
    cid = HASHTAG_IDS.get(p.required("challenge_name").strip().lstrip("#").lower())
    if cid is None:
        raise ApiError(404, "challenge not found")
    return c.challenge_info(cid, now)


def _search_user(c: Corpus, p: Params, now: float) -> dict:
    kw = p.required("keyword").strip().lower().lstrip("@")
    window = p.window(10, 30)
    users = [a for a in c.all_authors() if kw in a.handle.lower() or kw in a.nickname.lower()]
    return p.page(users, window, lambda a: c.profile(a, now))


Respond = Callable[[Corpus, Params, float], dict]
# one handler per declared endpoint, by name; the paths served and the parameters they require are the declarations'
_HANDLERS: dict[str, Respond] = {
    "userid": _userid,
    "userinfo-by-username": _userinfo_by_username,
    "userinfo-by-id": _userinfo_by_id,
    "user-posts": _user_posts,
    "user-followers": _follow("followers"),
    "user-following": _follow("following"),
    "post-detail": _post_detail,
    "download-video": _download_video,
    "post-comments": _post_comments,
    "post-comment-replies": _post_comment_replies,
    "challenge-posts": _challenge_posts,
    "search-video": _search_video,
    "music-posts": _music_posts,
    "region-list": _region_list,
    "challenge-info-id": _challenge_info_id,
    "challenge-info-name": _challenge_info_name,
    "search-user": _search_user,
}
if set(_HANDLERS) != {e.name for e in ENDPOINTS}:  # every declared endpoint served, nothing else
    raise RuntimeError(
        f"sandbox handlers without a declaration: {sorted(set(_HANDLERS) - {e.name for e in ENDPOINTS})}"
        f"; declarations without a handler: {sorted({e.name for e in ENDPOINTS} - set(_HANDLERS))}"
    )
ROUTES: dict[str, tuple[Endpoint, Respond]] = {e.path: (e, _HANDLERS[e.name]) for e in ENDPOINTS}
API_ENDPOINTS = tuple(ROUTES)


def respond(corpus: Corpus, path: str, query: str, now: float) -> dict[str, Any]:
    """The clean answer of the served ``path`` to ``query`` at ``now``; raises :class:`ApiError` for an error."""
    declared, handler = ROUTES[path]
    params = Params(query, declared)
    for name in declared.required:  # in declared order: the first one missing is the one named
        params.required(name)
    return handler(corpus, params, now)

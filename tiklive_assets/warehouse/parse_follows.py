"""Follows: a page of /user-followers/ or /user-following/ -> ``follow_edges`` rows, one per account on the page.

Which list a page holds, and the direction of its edges, come from the endpoint declarations; an item is a flat
TikLiveAPI user (``follower_count``, ``aweme_count``) or TikTok web's ``{user, stats}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiklive_assets.storage.keys import parse_page_slug
from tiklive_assets.tikliveapi.endpoints import ENDPOINTS
from tiklive_assets.tolerant import FOLLOWER_ITEM_KEYS, FOLLOWING_ITEM_KEYS, as_id, first_present, stats_object

from .archive_index import child_role, item_role, node_rows
from .raw import ShapeError, a_list, is_id

if TYPE_CHECKING:
    from .parse import DayParser

_DIRECTIONS = {"followers": "follower", "followings": "following"}  # a follow page's list -> the edges' direction
# every follow page names its list (items): one without would be a KeyError here, at import
FOLLOW_ENDPOINTS = {e.name: (e.items or "", _DIRECTIONS[e.items or ""]) for e in ENDPOINTS if e.parse == "follow_page"}
FOLLOW_ITEMS = {"followers": FOLLOWER_ITEM_KEYS, "followings": FOLLOWING_ITEM_KEYS}  # the endpoint's own name first


def follow_page(p: DayParser, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
    items_key, direction = FOLLOW_ENDPOINTS[endpoint]
    page = parse_page_slug(slug)
    if page is None:
        raise ShapeError(f"slug {slug!r} does not name a time page")
    items = first_present(body, *FOLLOW_ITEMS[items_key])
    if items is None:
        return
    # the archive index: the items are followers or followings (and so is the user of a {user, stats} item); no
    # name of FOLLOW_ITEMS has a role of its own, so the items' role is the endpoint's
    role = item_role(endpoint)
    user_role = child_role(role, role, "user", False)
    add = p.found.append
    for item in a_list(items, f"{items_key} is"):
        if type(item) is not dict:  # noqa: E721
            p.items_without_id += 1
            continue
        p.dicts += 1
        node_rows(item, key, role, "", add)
        user, stats = item, item
        if type(item.get("user")) is dict:  # noqa: E721 - TikTok web: {user: {...}, stats: {...}}
            user = item["user"]
            p.dicts += 1
            node_rows(user, key, user_role, "", add)
            found = stats_object(item)
            if found is not None:
                p.dicts += 1
                node_rows(found, key, "user", "", add)
            stats = found or {}
        other = user.get("id")
        if not is_id(other):
            other = as_id(other)
            if other is None:
                p.items_without_id += 1
                continue
        followers = stats.get("follower_count") if stats is item else stats.get("followerCount")
        posts = stats.get("aweme_count") if stats is item else stats.get("videoCount")
        p.keep(
            p.rows["follow_edges"],
            (page.entity, direction, other),
            (captured, key),
            (
                page.entity,
                direction,
                other,
                p.read_text(first_present(user, "unique_id", "uniqueId"), "follow.unique_id"),
                p.read_text(user.get("nickname"), "follow.nickname"),
                followers if type(followers) is int else p.read_int(followers, "follow.follower_count"),  # noqa: E721
                posts if type(posts) is int else p.read_int(posts, "follow.aweme_count"),  # noqa: E721
                captured,
                p.day,
            ),
        )

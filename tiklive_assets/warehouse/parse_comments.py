"""Comments: a page of a post's comments or of a comment's replies -> ``comments`` rows.

The page's slug names the post (and, for replies, the parent comment) when the items do not carry them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiklive_assets.storage.keys import parse_page_slug
from tiklive_assets.tolerant import as_id, first_present

from .archive_index import child_role, item_role, node_rows
from .raw import a_list

if TYPE_CHECKING:
    from .parse import DayParser


def comment_page(p: DayParser, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
    page = parse_page_slug(slug)
    entity = page.entity if page else slug
    aweme_from_slug, _, parent_from_slug = entity.partition("-")
    items = body.get("comments")
    if items is None:
        return
    # the archive index: each comment and its user in the commenter's role, a reply_to_user mentioned
    items_role = item_role(endpoint)
    role = child_role(items_role, "user", "comments", True)
    user_role = child_role(items_role, role, "user", False)
    reply_role = child_role(items_role, role, "reply_to_user", False)
    add = p.found.append
    for item in a_list(items, "comments is"):
        if type(item) is not dict:  # noqa: E721
            p.items_without_id += 1
            continue
        p.dicts += 1
        node_rows(item, key, role, "", add)
        user = item.get("user")
        if type(user) is dict:  # noqa: E721
            p.dicts += 1
            node_rows(user, key, user_role, "", add)
        else:
            user = {}
        reply_to = item.get("reply_to_user")
        if type(reply_to) is dict:  # noqa: E721
            p.dicts += 1
            node_rows(reply_to, key, reply_role, "", add)
        comment_id = as_id(item.get("id")) or as_id(item.get("cid"))
        if comment_id is None:
            p.items_without_id += 1
            continue
        p.keep(
            p.rows["comments"],
            comment_id,
            (captured, key),
            (
                comment_id,
                as_id(item.get("aweme_id")) or aweme_from_slug,
                as_id(item.get("reply_to_id")) or parent_from_slug or None,
                p.tally.id(first_present(user, "id", "uid"), "comment.user.id"),
                p.read_text(first_present(user, "unique_id", "uniqueId"), "comment.user.unique_id"),
                p.read_text(item.get("text"), "comment.text"),
                p.read_int(item.get("digg_count"), "comment.digg_count"),
                p.read_int(item.get("reply_total"), "comment.reply_total"),
                p.read_time(item.get("create_time"), "comment.create_time"),
                captured,
                p.day,
            ),
        )

"""The archive index by user: which archived objects are about, or mention, which TikTok users.

Erasure (GDPR Art. 17) must find every object that refers to one user; scanning the whole archive for that
reads every object. The index is recorded while a day is parsed, so an erasure reads only the objects it names.
It is a pure function of the archive (a replay rebuilds it) and has one row per (object, user reference):

* ``user_id`` / ``handle`` (lowercase, without ``@``): who is referred to (``''`` when the object does not say);
* ``key``: the archived object; ``role``: how it refers to them; ``aweme_id``: the post the row is about
  (``''`` when none): the rows of a post's own objects let an erasure find the per-post objects (comment pages,
  media) of the user's posts, which need not name the user at all.

Roles: ``subject`` (the key is about the user: their profile, post listing, follower pages, ``userid/<handle>``;
or the body's top-level user), ``author`` (a post by the user: a detail, a listing item, a media file),
``follower`` / ``following`` (an item of a follow page), ``commenter`` (a comment's user), ``user`` (another
user object), ``mention`` (``@handle`` in any text, or a user id under a user-id field such as ``author_user_id``
or ``reply_to_userid``), ``post`` (an object keyed by a post: its detail, comment pages, download answer).

What the index records, so what erasure through it can find: every dict that is a user object (it has a
``unique_id``, ``uniqueId``, ``username``, ``sec_uid``, ``secUid`` or ``nickname``) with its ids and handles,
every ``@handle`` in any string, ids under user-id fields, and the subjects the key itself names (from the
endpoint declarations). A user id that appears only inside free text or under another field name is not
recorded: ``tiklive erase --verify-scan`` and the weekly index check scan the archive and report any such object.

The warehouse keeps the rows of ``tiklive-raw/`` and ``videos/`` (what a day's parse reads) in the
``archive_index`` table; the copy exported beside the archive (:mod:`.archive_index_store`) adds the Research
API's ``research-raw/`` objects, which name users by username.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from tiklive_assets.research.endpoints import archive_names as research_names
from tiklive_assets.storage.keys import RAW_PREFIX, RESEARCH_PREFIX, split_raw_key, split_video_key
from tiklive_assets.tikliveapi.endpoints import ENDPOINTS, endpoint_names
from tiklive_assets.tolerant import as_id, post_id

TABLE = "archive_index"
# the keys that make a dict a user object, where its ids and handles are (the erasure matcher reads the same)
USER_MARKERS = frozenset(("unique_id", "uniqueId", "username", "sec_uid", "secUid", "nickname"))
ID_KEYS = frozenset(("id", "uid", "user_id", "userId"))
HANDLE_KEYS = frozenset(("unique_id", "uniqueId", "username"))
OWNER_KEYS = frozenset(("author", "owner"))
# fields holding a user id outside a user object (TikTok's and TikLiveAPI's names)
USER_ID_FIELDS = frozenset(
    (
        "uid",
        "user_id",
        "userId",
        "author_id",
        "authorId",
        "author_user_id",
        "owner_id",
        "reply_to_userid",
        "reply_to_user_id",
        "reply_to_uid",
    )
)
MENTION = re.compile(rb"@([A-Za-z0-9._]+)")

USER_ID_SUBJECTS = endpoint_names(subject="user_id")
HANDLE_SUBJECTS = endpoint_names(subject="handle")
RESEARCH_HANDLE_SUBJECTS = research_names(subject="handle")
POST_SUBJECTS = endpoint_names(subject="post") | research_names(subject="post")

_PARSE_OF = {e.name: e.parse for e in ENDPOINTS}
# the role of the user objects inside a page, by endpoint (the Research API's follow pages by their archive name)
_ITEM_ROLE = {
    **{name: "commenter" for name, parse in _PARSE_OF.items() if parse == "comment_page"},
    "user-followers": "follower",
    "user-following": "following",
}
_ITEM_ROLES = frozenset(_ITEM_ROLE.values())
_CHILD_ROLE = {"author": "author", "owner": "author", "user": "user", "reply_to_user": "mention"}

Row = tuple[str, str, str, str, str]  # user_id, handle, key, role, aweme_id
Add = Callable[[Row], None]


def key_rows(key: str, add: Add) -> None:
    """The rows an object's key alone gives: the user or post its slug names (by the endpoint declarations), and
    the author and post of a media file under ``videos/``."""
    if key.startswith(RAW_PREFIX + "/"):
        parts = split_raw_key(key, RAW_PREFIX)
        if parts is None:
            return
        endpoint, entity = parts.endpoint, parts.entity
        if endpoint in USER_ID_SUBJECTS:
            add((entity, "", key, "subject", ""))
        elif endpoint in HANDLE_SUBJECTS:
            add(("", entity.lower(), key, "subject", ""))
        elif endpoint in POST_SUBJECTS:
            add(("", "", key, "post", entity))
    elif key.startswith(RESEARCH_PREFIX + "/"):
        parts = split_raw_key(key, RESEARCH_PREFIX)
        if parts is None:
            return
        if parts.endpoint in RESEARCH_HANDLE_SUBJECTS:
            add(("", parts.entity.lower(), key, "subject", ""))
        elif parts.endpoint in POST_SUBJECTS:
            add(("", "", key, "post", parts.entity))
    else:
        media = split_video_key(key)
        if media is not None:
            add(("", media[0].lower(), key, "author", media[1]))


def _scalar_id(value: Any) -> str | None:
    if value is None or type(value) is bool or isinstance(value, dict | list):  # noqa: E721
        return None
    return str(value)


def _user_rows(node: dict, key: str, role: str, aweme: str, add: Add) -> None:
    """The rows of one user object: each of its ids with each of its handles."""
    ids = [found for k in ID_KEYS.intersection(node) if (found := _scalar_id(node[k])) is not None]
    handles = [v.lstrip("@").lower() for k in HANDLE_KEYS.intersection(node) if type(v := node[k]) is str]  # noqa: E721
    if not ids and not handles:
        return
    for uid in ids or [""]:
        for handle in handles or [""]:
            add((uid, handle, key, role, aweme))


def mention_rows(key: str, text: bytes, add: Add) -> None:
    """``@handle`` mentions anywhere in an object's JSON text (or in a body that is not JSON: a gateway page, a
    truncated answer). The text is searched as it is stored, which finds every mention any string holds."""
    if b"@" in text:
        for match in MENTION.finditer(text):
            add(("", match[1].decode("ascii").lower(), key, "mention", ""))


_SHAPES: dict[tuple[tuple, tuple], tuple[bool, tuple[str, ...], bool, tuple[tuple[str, bool], ...]]] = {}
_MAX_SHAPES = 100_000


def _shape_plan(names: tuple, kinds: tuple) -> tuple[bool, tuple[str, ...], bool, tuple[tuple[str, bool], ...]]:
    """What the walk does with a dict of these keys and value types (they repeat from object to object): whether it
    is a user object, its user-id fields holding a str or int, whether it owns a post, and its containers."""
    if len(_SHAPES) >= _MAX_SHAPES:
        _SHAPES.clear()
    plan = (
        not USER_MARKERS.isdisjoint(names),
        tuple(n for n, k in zip(names, kinds, strict=True) if n in USER_ID_FIELDS and (k is str or k is int)),
        not OWNER_KEYS.isdisjoint(names),
        tuple((n, k is list) for n, k in zip(names, kinds, strict=True) if k is dict or k is list),
    )
    _SHAPES[(names, kinds)] = plan
    return plan


class _Walker:
    """One body's walk: user objects, ``@handle`` mentions and user-id fields, with the role each appears in."""

    def __init__(self, key: str, endpoint: str, add: Add) -> None:
        self.key = key
        self.add = add
        self.item_role = _ITEM_ROLE.get(endpoint, "user")

    def visit(self, node: Any, role: str, aweme: str) -> None:
        kind = type(node)
        if kind is dict:
            self.visit_dict(node, role, aweme)
        elif kind is list:
            for item in node:
                if type(item) is dict or type(item) is list:  # noqa: E721
                    self.visit(item, role, aweme)

    def visit_dict(self, node: dict, role: str, aweme: str) -> None:
        shape = (tuple(node), tuple(map(type, node.values())))
        plan = _SHAPES.get(shape)
        if plan is None:
            plan = _shape_plan(*shape)
        users, id_fields, owner, children = plan
        if users:
            if role == "user" and type(node.get("username")) is str:  # noqa: E721 - a Research API video
                video = as_id(node.get("id"))
                if video is not None:
                    role, aweme = "author", video
            _user_rows(node, self.key, role, aweme, self.add)
        for name in id_fields:
            value = node[name]
            if type(value) is int or value.isdigit():  # noqa: E721
                self.add((str(value), "", self.key, "mention", ""))
        owned = (post_id(node) or "") if owner else ""
        for name, is_list in children:
            self.visit(node[name], *self.child(name, is_list, role, owned))

    def child(self, name: str, is_list: bool, role: str, owned: str) -> tuple[str, str]:
        """(role, post) of the value under ``name`` of a dict seen in ``role``; ``owned``: that dict's post."""
        child_role = _CHILD_ROLE.get(name, self.item_role if is_list else "user")
        if name == "user" and (role in _ITEM_ROLES or self.item_role == "commenter"):
            child_role = role if role in _ITEM_ROLES else self.item_role  # {user, stats} items, a comment's user
        return child_role, owned if child_role == "author" else ""


def body_rows(key: str, endpoint: str, body: Any, add: Add) -> None:
    """The rows a decoded body gives (see the module docstring): user objects and user ids under user-id fields
    (``@handle`` mentions come from the text: :func:`mention_rows`). ``endpoint`` chooses the role of the user
    objects a page lists."""
    walker = _Walker(key, endpoint, add)
    if _PARSE_OF.get(endpoint) == "user_id" and type(body) is dict:  # noqa: E721 - {"id": <the handle's user id>}
        parts = split_raw_key(key, RAW_PREFIX)
        found = as_id(body.get("id"))
        if parts is not None and found is not None:
            add((found, parts.entity.lower(), key, "subject", ""))
    if type(body) is dict and not USER_MARKERS.isdisjoint(body):  # noqa: E721 - the body is a user
        walker.visit_dict(body, "subject", "")
    elif type(body) is dict and type(body.get("user")) is dict:  # noqa: E721 - a profile: {user, stats}
        _user_rows(body["user"], key, "subject", "", add)
        walker.visit_dict({k: v for k, v in body.items() if k != "user"}, "user", "")
    else:
        walker.visit(body, walker.item_role if type(body) is list else "user", "")  # noqa: E721


class IndexRows:
    """A day's index rows, each once, in the warehouse table's column order (``dt`` first)."""

    def __init__(self, day: date) -> None:
        self.day = day
        self.rows: dict[Row, None] = {}

    def add(self, row: Row) -> None:
        self.rows[row] = None

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.rows[row] = None

    def table_rows(self) -> list[tuple]:
        day = self.day
        return [(day, *row) for row in self.rows]

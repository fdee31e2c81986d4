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

Who records the rows: the typed parsers (posts, listings, profiles, follow and comment pages) add the rows of
each dict they read, in the role the generic walk gives it (:func:`node_rows`, :func:`child_role`), and count
those dicts; when the count is not the number of ``{`` in the object's text (a JSON object the parser did not read,
an unexpected shape, an envelope, an error), or the endpoint has no parser, the generic walk (:func:`body_rows`)
indexes the whole body. So the rows are always the walk's (a test checks both ways on real captures and on
payloads reshaped at random), and the walk runs only for what no parser understands.

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
WALK_KEYS = USER_MARKERS | USER_ID_FIELDS  # a dict without any of these gives no rows of its own
UNACCOUNTED = -(1 << 40)  # the count of dicts a typed parser sets to leave an object to the generic walk
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


def user_rows(node: dict, key: str, role: str, aweme: str, add: Add) -> None:
    """The rows of one user object: each of its ids with each of its handles."""
    _user_rows(node, ID_KEYS.intersection(node), HANDLE_KEYS.intersection(node), key, role, aweme, add)


def _user_rows(node: dict, id_keys: Iterable, handle_keys: Iterable, key: str, role: str, aweme: str, add: Add) -> None:
    ids = [found for k in id_keys if (found := _scalar_id(node[k])) is not None]
    handles = [v.lstrip("@").lower() for k in handle_keys if type(v := node[k]) is str]  # noqa: E721
    if not ids and not handles:
        return
    for uid in ids or [""]:
        for handle in handles or [""]:
            add((uid, handle, key, role, aweme))


# what node_rows does with a dict of these keys: None (nothing: no user marker, no user-id field), or (whether it
# is a user object, its id keys, its handle keys, its user-id fields, and (id key, handle key) when it has one of
# each: the common user object, whose row is built inline)
_Plan = tuple[bool, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, str] | None]
_NODE_PLANS: dict[tuple, _Plan | None] = {}
_UNSEEN: Any = object()


def _node_plan(names: tuple) -> _Plan | None:
    if len(_NODE_PLANS) >= _MAX_SHAPES:
        _NODE_PLANS.clear()
    plan: _Plan | None = None
    if not WALK_KEYS.isdisjoint(names):
        id_keys = tuple(n for n in names if n in ID_KEYS)
        handle_keys = tuple(n for n in names if n in HANDLE_KEYS)
        plan = (
            not USER_MARKERS.isdisjoint(names),
            id_keys,
            handle_keys,
            tuple(n for n in names if n in USER_ID_FIELDS),
            (id_keys[0], handle_keys[0]) if len(id_keys) == 1 and len(handle_keys) == 1 else None,
        )
    _NODE_PLANS[names] = plan
    return plan


def node_rows(node: dict, key: str, role: str, aweme: str, add: Add) -> None:
    """The rows the generic walk gives for the dict ``node`` itself, met in ``role`` about post ``aweme`` (what it
    gives for the dicts inside is the caller's to add): the typed parsers call it for each dict they read, with the
    role :func:`child_role` gives it, so their rows are the walk's."""
    names = tuple(node)
    plan = _NODE_PLANS.get(names, _UNSEEN)
    if plan is _UNSEEN:
        plan = _node_plan(names)
    if plan is None:
        return
    users, id_keys, handle_keys, id_fields, single = plan
    if users:
        if role == "user" and type(node.get("username")) is str:  # noqa: E721 - a Research API video
            video = as_id(node.get("id"))
            if video is not None:
                role, aweme = "author", video
        if single is not None:  # one id, one handle: when both are strings, the one row, built here
            uid, handle = node[single[0]], node[single[1]]
            if type(uid) is str and type(handle) is str:  # noqa: E721
                add((uid, handle.lstrip("@").lower(), key, role, aweme))
            else:
                _user_rows(node, id_keys, handle_keys, key, role, aweme, add)
        else:
            _user_rows(node, id_keys, handle_keys, key, role, aweme, add)
    for name in id_fields:
        value = node[name]
        if type(value) is int or (type(value) is str and value.isdigit()):  # noqa: E721
            add((str(value), "", key, "mention", ""))


def count_dicts(value: Any) -> int:
    """How many JSON objects ``value`` is and holds, at any depth."""
    kind = type(value)
    if kind is dict:
        return 1 + sum(count_dicts(v) for v in value.values() if type(v) is dict or type(v) is list)  # noqa: E721
    if kind is list:
        return sum(count_dicts(v) for v in value if type(v) is dict or type(v) is list)  # noqa: E721
    return 0


def item_role(endpoint: str) -> str:
    """The role of the user objects an endpoint's pages list (their items, a comment's user)."""
    return _ITEM_ROLE.get(endpoint, "user")


def child_role(items: str, role: str, name: str, is_list: bool) -> str:
    """The walk's role for the value under ``name`` of a dict met in ``role``, on a page whose items are in role
    ``items`` (:func:`item_role`): an author or owner is the author, a ``reply_to_user`` is mentioned, the ``user``
    of an item or a comment is that item's, lists are items, any other dict is another user."""
    found = _CHILD_ROLE.get(name, items if is_list else "user")
    if name == "user" and (role in _ITEM_ROLES or items == "commenter"):
        found = role if role in _ITEM_ROLES else items  # {user, stats} items, a comment's user
    return found


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
            user_rows(node, self.key, role, aweme, self.add)
        for name in id_fields:
            value = node[name]
            if type(value) is int or value.isdigit():  # noqa: E721
                self.add((str(value), "", self.key, "mention", ""))
        owned = (post_id(node) or "") if owner else ""
        for name, is_list in children:
            self.visit(node[name], *self.child(name, is_list, role, owned))

    def child(self, name: str, is_list: bool, role: str, owned: str) -> tuple[str, str]:
        """(role, post) of the value under ``name`` of a dict seen in ``role``; ``owned``: that dict's post."""
        found = child_role(self.item_role, role, name, is_list)
        return found, owned if found == "author" else ""


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
        user_rows(body["user"], key, "subject", "", add)
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

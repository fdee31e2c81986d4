"""The TikTok Research API's endpoints, each declared once: what to send, how it pages, where it is archived, whom
it is about, and which research table reads it.

Everything that needs a fact about an endpoint derives it from the declaration below instead of restating it: the
client takes each path, method, body fields and ``fields`` list from it, the raw archive names each response's
folder and slug from ``archive`` and ``slug``, the warehouse maps ``archive`` back to the table in ``parse``,
erasure reads ``subject``, and the sandbox serves exactly the declared paths. This module is pure data (standard
library only, and the checks both APIs' declarations share), so the warehouse and the sandbox can read it without
importing the client.

How a response is archived (``research-raw/YYYY/MM/DD/<archive>/<slug>.json.gz``): the ``slug`` parts joined by
``-``, each rendered from the request as below, then ``-cursor<N>`` for a paginated endpoint (N the cursor sent,
0 when the first page sends none), then ``-<code>-<sha256[:8] of the body>`` for an error answer.

* ``username``: the body's ``username``, a TikTok handle as it is (refused otherwise);
* ``video_id``: the body's ``video_id`` in decimal digits;
* ``window``: ``start_date-end_date`` (``YYYYMMDD-YYYYMMDD``, the create-date window);
* ``query``: ``q`` + ten hex digits naming the query and the ``fields`` asked for (``client.query_hash``);
* ``generation``: ``g`` + the window's generation (it grows when a window restarts or is collected again).

How to add an endpoint
----------------------
1. Declare it here and add it to ``ENDPOINTS``: ``path``; ``body``, the body fields in the order the client sends
   them (``required`` among them); ``fields``, the values the ``fields`` query parameter may take; ``pages``;
   ``items``; ``archive`` and ``slug``; ``subject`` (``"handle"`` or ``"post"``: the first slug part names them);
   ``parse``, the research table it feeds.
2. Give the client a thin typed method that posts to it (``research/client.py``).
3. Give the sandbox a handler keyed by the endpoint's archive name (``sandbox/research.py``, ``_ROUTES``): the
   sandbox refuses to start without one.
4. Pin its archive keys in ``tiklive_assets_tests/test_archive_slugs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tiklive_assets.declared import only_declared, page_items

Method = Literal["POST"]
Encoding = Literal["json", "form"]
# ``search``: an offset cursor into a frozen result list named by ``search_id``, pages paced (the video query);
# ``offset``: an offset cursor that increases; ``time``: a Unix-time cursor that decreases (follows on or before it)
Pages = Literal["none", "search", "offset", "time"]
SlugPart = Literal["username", "video_id", "window", "query", "generation"]
Subject = Literal["handle", "post"]

SLUG_PARTS: tuple[str, ...] = ("username", "video_id", "window", "query", "generation")
SUBJECT_FIELDS: dict[str, str] = {"handle": "username", "post": "video_id"}  # the body field naming the subject

MAX_COUNT = 100  # the largest ``max_count`` any listing takes

VIDEO_FIELDS: tuple[str, ...] = (
    "id",
    "video_description",
    "create_time",
    "region_code",
    "share_count",
    "view_count",
    "like_count",
    "comment_count",
    "music_id",
    "hashtag_names",
    "username",
    "effect_ids",
    "playlist_id",
    "voice_to_text",
)
USER_FIELDS: tuple[str, ...] = (
    "display_name",
    "bio_description",
    "avatar_url",
    "is_verified",
    "follower_count",
    "following_count",
    "likes_count",
    "video_count",
)
COMMENT_FIELDS: tuple[str, ...] = (
    "id",
    "video_id",
    "text",
    "like_count",
    "reply_count",
    "parent_comment_id",
    "create_time",
)
# a video query's conditions: {"operation": one of OPERATIONS, "field_name": one of QUERY_FIELDS, "field_values"}
QUERY_FIELDS: tuple[str, ...] = ("username", "hashtag_name", "keyword", "region_code", "video_id", "music_id")
OPERATIONS: tuple[str, ...] = ("EQ", "IN")


@dataclass(frozen=True)
class Endpoint:
    """One Research API endpoint. See the module docstring for what each field drives."""

    path: str
    body: tuple[str, ...] = ()  # the body fields, in the order the client sends them
    required: tuple[str, ...] = ()  # those the API refuses a request without
    method: Method = "POST"
    encoding: Encoding = "json"
    fields: tuple[str, ...] = ()  # what the ``fields`` query parameter may ask for (none: it takes no fields)
    default_fields: tuple[str, ...] = ()  # what the API answers when ``fields`` is not sent
    default_count: int | None = None  # the API's ``max_count`` when none is sent
    pages: Pages = "none"
    items: str | None = None  # the key of a page's list inside ``data``
    archive: str | None = None  # the archive folder (None: never archived, the token)
    slug: tuple[SlugPart, ...] = ()
    subject: Subject | None = None  # whom an archived object is about, for erasure (None: no one in particular)
    parse: str | None = None  # the research table it feeds
    quota: bool = True  # whether a request costs the day's quota

    def __post_init__(self) -> None:
        if not (self.path.startswith("/v2/") and self.path.endswith("/")):
            raise ValueError(f"endpoint path {self.path!r} must start with '/v2/' and end with '/'")
        if len(set(self.body)) != len(self.body) or not set(self.required) <= set(self.body):
            raise ValueError(f"{self.path}: a body field is declared twice, or a required one is not a body field")
        if self.pages != "none" and ("cursor" not in self.body or self.items is None):
            raise ValueError(f"{self.path}: a paginated endpoint sends a cursor and names its items")
        if not set(self.default_fields) <= set(self.fields):
            raise ValueError(f"{self.path}: a default field is not one of its fields")
        if (self.archive is None) != (not self.slug):
            raise ValueError(f"{self.path}: an archived endpoint names its slug, and only an archived one")
        for part in self.slug:
            if part not in SLUG_PARTS:
                raise ValueError(f"{self.path}: unknown slug part {part!r}")
        if self.subject is not None and (not self.slug or self.slug[0] != SUBJECT_FIELDS[self.subject]):
            raise ValueError(f"{self.path}: subject {self.subject!r} must be named by the slug's first part")
        if self.parse is not None and self.archive is None:
            raise ValueError(f"{self.path}: the warehouse reads the archive only; parse needs an archive name")

    @property
    def name(self) -> str:
        """The endpoint as the archive names its folder (``video-query``); the path for the unarchived token."""
        return self.archive or self.path

    @property
    def subject_field(self) -> str | None:
        """The body field (and first slug part) that names whom an archived object is about."""
        return None if self.subject is None else SUBJECT_FIELDS[self.subject]

    @property
    def paginated(self) -> bool:
        return self.pages != "none"

    @property
    def items_key(self) -> str:
        """The key of a page's list inside ``data``; a paginated endpoint's only (else ValueError)."""
        return page_items(self.path, self.items)

    def request(self, body: dict[str, object]) -> dict[str, object]:
        """``body`` as it is, once every name is a declared body field (else TypeError)."""
        return only_declared(self.path, body, self.body, "body field")


# the client-credentials token: a form, not JSON; costs no quota (assumed: no public recording says otherwise)
TOKEN = Endpoint(
    "/v2/oauth/token/",
    ("client_key", "client_secret", "grant_type"),
    ("client_key", "client_secret", "grant_type"),
    encoding="form",
    quota=False,
)
VIDEO_QUERY = Endpoint(
    "/v2/research/video/query/",
    ("query", "max_count", "start_date", "end_date", "cursor", "search_id"),
    ("query", "start_date", "end_date"),
    fields=VIDEO_FIELDS,
    default_fields=("id",),
    default_count=20,
    pages="search",
    items="videos",
    archive="video-query",
    slug=("window", "query", "generation"),
    parse="research_videos",  # and research_video_counters, from the same pages
)
USER_INFO = Endpoint(
    "/v2/research/user/info/",
    ("username",),
    ("username",),
    fields=USER_FIELDS,
    default_fields=USER_FIELDS,
    archive="user-info",
    slug=("username",),
    subject="handle",
    parse="research_users",
)


def _follow_list(path: str, items: str, archive: str) -> Endpoint:
    """An account's followers or following: a Unix-time cursor, archived and erased by the username."""
    return Endpoint(
        path,
        ("username", "max_count", "cursor"),
        ("username",),
        default_count=20,
        pages="time",
        items=items,
        archive=archive,
        slug=("username",),
        subject="handle",
        parse="research_follows",
    )


USER_FOLLOWERS = _follow_list("/v2/research/user/followers/", "user_followers", "user-followers")
USER_FOLLOWING = _follow_list("/v2/research/user/following/", "user_following", "user-following")
VIDEO_COMMENTS = Endpoint(
    "/v2/research/video/comment/list/",
    ("video_id", "max_count", "cursor"),
    ("video_id",),
    fields=COMMENT_FIELDS,
    default_fields=("id", "text"),
    default_count=10,
    pages="offset",
    items="comments",
    archive="video-comments",
    slug=("video_id",),
    subject="post",
    parse="research_comments",
)

ENDPOINTS: tuple[Endpoint, ...] = (TOKEN, VIDEO_QUERY, USER_INFO, USER_FOLLOWERS, USER_FOLLOWING, VIDEO_COMMENTS)
ARCHIVED: tuple[Endpoint, ...] = tuple(e for e in ENDPOINTS if e.archive is not None)
BY_PATH: dict[str, Endpoint] = {e.path: e for e in ENDPOINTS}
BY_ARCHIVE: dict[str, Endpoint] = {e.name: e for e in ARCHIVED}
PARSE_TARGETS: frozenset[str] = frozenset(e.parse for e in ENDPOINTS if e.parse is not None)


def archive_names(**where: object) -> frozenset[str]:
    """The archive names of the archived endpoints whose fields equal ``where`` (``archive_names(subject="post")``)."""
    return frozenset(e.name for e in ARCHIVED if all(getattr(e, k) == v for k, v in where.items()))


__all__ = [
    "ARCHIVED",
    "BY_ARCHIVE",
    "BY_PATH",
    "COMMENT_FIELDS",
    "ENDPOINTS",
    "Endpoint",
    "MAX_COUNT",
    "OPERATIONS",
    "PARSE_TARGETS",
    "QUERY_FIELDS",
    "TOKEN",
    "USER_FIELDS",
    "USER_FOLLOWERS",
    "USER_FOLLOWING",
    "USER_INFO",
    "VIDEO_COMMENTS",
    "VIDEO_FIELDS",
    "VIDEO_QUERY",
    "archive_names",
]

"""TikLiveAPI's endpoints, each declared once: what to send, how it pages, where it is archived, whom it is about,
and which warehouse parser reads it.

Everything that needs a fact about an endpoint derives it from the declaration below instead of restating it: the
client's methods take their path and parameter names from it, the raw archive builds each response's key from its
slug template, the warehouse maps its parse target to a parse function, erasure reads its subject, and the sandbox
serves exactly the declared paths and refuses a request that lacks a required parameter. This module is pure data
(standard library only), so the warehouse and the sandbox can read it without importing the client.

How to add an endpoint
----------------------
1. Declare it here: ``path``; the ``required`` and ``optional`` query parameters in the order the client sends
   them; ``pages`` (``"cursor"`` or ``"time"`` when the answer pages on that parameter, else ``"none"``); ``slug``,
   the parameters that name the archived object (a paginated slug ends in ``-cursorN`` or ``-timeN`` by itself),
   or a fixed name when there are no parameters; ``items``, the key of a page's list; ``subject``, whom the object
   is about for erasure (``"user_id"``, ``"handle"`` or ``"post"``: the first slug part names them), and
   ``personal_data=False`` when an answer never carries anyone's data; ``parse``, the warehouse parse target, or
   None when the warehouse keeps the answer in the archive only; ``page_size``, a paginated endpoint's largest
   ``count`` (the client's default). Add the declaration to ``ENDPOINTS``.
2. Give the client a thin typed method that calls ``self._call(<DECLARATION>, name=value, ...)``.
3. Give the sandbox a handler (``sandbox/endpoints.py``, ``_HANDLERS``), keyed by the endpoint's name: the sandbox
   refuses to start without one.
4. If ``parse`` names a new target, map it to a parse function in ``warehouse/parse.py`` (``PARSERS``).
5. Add a row to ``tiklive_assets_tests/test_archive_slugs.py``: its archive key is then pinned forever (a key that
   changes orphans every object archived under the old one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tiklive_assets.declared import only_declared, page_items

Pages = Literal["none", "cursor", "time"]
Subject = Literal["user_id", "handle", "post"]
Check = Literal["handle", "id", "post", "text", "lower"]
When = Literal["always", "given", "truthy"]

CHECKS: tuple[str, ...] = ("handle", "id", "post", "text", "lower")
SUBJECTS: tuple[str, ...] = ("user_id", "handle", "post")


@dataclass(frozen=True)
class Part:
    """One piece of an archive slug's entity: the value of the request parameter ``param``, made key-safe by ``check``.

    * ``handle``: a TikTok handle as it is; ``id``: decimal digits as they are (both refused otherwise);
    * ``post``: the aweme id inside a TikTok video URL; ``text``: free text through ``safe_slug``;
    * ``lower``: a filter value, lowercased, through ``safe_slug``, after ``tag`` (``publish_time=7`` -> ``pt7``).

    ``when``: ``always`` (the parameter must be there), ``given`` (skipped when absent or None) or ``truthy``
    (skipped when absent or empty as well).
    """

    param: str
    check: Check
    tag: str = ""
    when: When = "always"


@dataclass(frozen=True)
class Endpoint:
    """One TikLiveAPI endpoint. See the module docstring for what each field drives."""

    path: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    pages: Pages = "none"
    slug: tuple[Part, ...] | str = ()
    items: str | None = None
    subject: Subject | None = None
    personal_data: bool = True
    parse: str | None = None
    page_size: int | None = None  # a paginated endpoint's largest ``count``: what the client asks for by default

    def __post_init__(self) -> None:
        name = self.path.strip("/")
        if self.path != f"/{name}/" or not name or "/" in name:
            raise ValueError(f"endpoint path {self.path!r} must be one segment between slashes, such as '/user-posts/'")
        params = self.params
        if len(set(params)) != len(params):
            raise ValueError(f"{self.path}: a parameter is declared twice")
        if self.pages != "none" and self.pages not in self.optional:
            raise ValueError(f"{self.path}: pages on {self.pages!r}, which must be an optional parameter")
        if isinstance(self.slug, str):
            if not self.slug or self.pages != "none":
                raise ValueError(f"{self.path}: a fixed slug must be non-empty and is for an unpaginated endpoint")
        else:
            if not self.slug:
                raise ValueError(f"{self.path}: no slug: name the parameters that identify the object")
            for part in self.slug:
                if part.check not in CHECKS:
                    raise ValueError(f"{self.path}: unknown slug check {part.check!r}")
                where = self.required if part.when == "always" else params
                if part.param not in where:
                    raise ValueError(f"{self.path}: slug part {part.param!r} is not a declared parameter")
        if self.subject is not None and (self.subject not in SUBJECTS or isinstance(self.slug, str)):
            raise ValueError(f"{self.path}: subject {self.subject!r} must be one of {SUBJECTS} and named by the slug")
        paged = self.pages != "none"
        if (self.page_size is not None, self.items is not None) != (paged, paged):
            raise ValueError(f"{self.path}: a paginated endpoint (and only one) names its items and page size")

    @property
    def name(self) -> str:
        """The endpoint as the archive names its folder: the path without slashes (``user-posts``)."""
        return self.path.strip("/")

    @property
    def params(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def items_key(self) -> str:
        """The key of a page's list; a paginated endpoint's only (else ValueError)."""
        return page_items(self.path, self.items)

    def count(self, count: int | None) -> int:
        """``count``, or the endpoint's page size when None (a paginated endpoint's only, else ValueError)."""
        if count is not None:
            return count
        if self.page_size is None:
            raise ValueError(f"{self.path} does not page")
        return self.page_size

    def request(self, params: dict[str, object]) -> dict[str, object]:
        """``params`` as they are, once every name is a declared parameter of this endpoint (else TypeError)."""
        return only_declared(self.path, params, self.params, "parameter")


def _id(param: str) -> tuple[Part, ...]:
    return (Part(param, "id"),)


def _cursor_listing(
    path: str,
    required: tuple[str, ...],
    slug: tuple[Part, ...],
    items: str,
    filters: tuple[str, ...] = (),
    *,
    subject: Subject | None = None,
    parse: str | None = None,
    page_size: int = 30,
) -> Endpoint:
    """A listing paged on ``cursor``: ``count`` and ``cursor`` are optional, then the ``filters``, in that order."""
    optional = ("count", "cursor", *filters)
    return Endpoint(path, required, optional, "cursor", slug, items, subject=subject, parse=parse, page_size=page_size)


def _follow_list(path: str, items: str) -> Endpoint:
    """An account's followers or followings: paged on ``time``, archived and erased by the account's user id."""
    return Endpoint(
        path,
        ("userid",),
        ("count", "time"),
        "time",
        _id("userid"),
        items,
        subject="user_id",
        parse="follow_page",
        page_size=50,
    )


_POST = (Part("url", "post"),)
_HANDLE = (Part("username", "handle"),)

USERID = Endpoint("/userid/", ("username",), slug=_HANDLE, subject="handle", parse="user_id")
USERINFO_BY_USERNAME = Endpoint(
    "/userinfo-by-username/", ("username",), slug=_HANDLE, subject="handle", parse="profile"
)
USERINFO_BY_ID = Endpoint("/userinfo-by-id/", ("userid",), slug=_id("userid"), subject="user_id", parse="profile")
USER_POSTS = _cursor_listing(
    "/user-posts/", ("userid",), _id("userid"), "videos", subject="user_id", parse="post_listing"
)
USER_FOLLOWERS = _follow_list("/user-followers/", "followers")
USER_FOLLOWING = _follow_list("/user-following/", "followings")
POST_DETAIL = Endpoint("/post-detail/", ("url",), slug=_POST, subject="post", parse="post_detail")
# its answer is two CDN URLs that expire in minutes: archived as paid for, nothing in it is worth a table
DOWNLOAD_VIDEO = Endpoint("/download-video/", ("url",), slug=_POST, subject="post")
POST_COMMENTS = _cursor_listing(
    "/post-comments/", ("url",), _POST, "comments", subject="post", parse="comment_page", page_size=50
)
POST_COMMENT_REPLIES = _cursor_listing(
    "/post-comment-replies/",
    ("comment_id", "url"),
    (Part("url", "post"), Part("comment_id", "id")),
    "comments",
    subject="post",
    parse="comment_page",
    page_size=50,
)
CHALLENGE_POSTS = _cursor_listing(
    "/challenge-posts/",
    ("challenge_id",),
    (Part("challenge_id", "id"), Part("region", "lower", when="truthy")),
    "videos",
    ("region",),
    parse="post_listing",
)
SEARCH_VIDEO = _cursor_listing(
    "/search-video/",
    ("keyword",),
    (
        Part("keyword", "text"),
        Part("publish_time", "lower", "pt", "given"),
        Part("sort_by", "lower", "sb", "given"),
        Part("region", "lower", when="given"),
    ),
    "videos",
    ("publish_time", "sort_by", "region"),
    parse="post_listing",
)
MUSIC_POSTS = _cursor_listing("/music-posts/", ("music_id",), _id("music_id"), "videos", parse="post_listing")
# the three below are archived only: reference data (regions, hashtag facts) that no table holds yet
REGION_LIST = Endpoint("/region-list/", slug="regions", personal_data=False)
CHALLENGE_INFO_ID = Endpoint("/challenge-info-id/", ("challenge_id",), slug=_id("challenge_id"), personal_data=False)
CHALLENGE_INFO_NAME = Endpoint(
    "/challenge-info-name/", ("challenge_name",), slug=(Part("challenge_name", "text"),), personal_data=False
)
# accounts by keyword, archived only; erasure takes a keyword equal to the subject's handle as about them
SEARCH_USER = _cursor_listing("/search-user/", ("keyword",), (Part("keyword", "text"),), "user_list", subject="handle")

ENDPOINTS: tuple[Endpoint, ...] = (
    USERID,
    USERINFO_BY_USERNAME,
    USERINFO_BY_ID,
    USER_POSTS,
    USER_FOLLOWERS,
    USER_FOLLOWING,
    POST_DETAIL,
    DOWNLOAD_VIDEO,
    POST_COMMENTS,
    POST_COMMENT_REPLIES,
    CHALLENGE_POSTS,
    SEARCH_VIDEO,
    MUSIC_POSTS,
    REGION_LIST,
    CHALLENGE_INFO_ID,
    CHALLENGE_INFO_NAME,
    SEARCH_USER,
)
BY_NAME: dict[str, Endpoint] = {e.name: e for e in ENDPOINTS}
BY_PATH: dict[str, Endpoint] = {e.path: e for e in ENDPOINTS}
PARSE_TARGETS: frozenset[str] = frozenset(e.parse for e in ENDPOINTS if e.parse is not None)


def endpoint_names(**where: object) -> frozenset[str]:
    """The names of the endpoints whose fields equal ``where`` (``endpoint_names(subject="post")``)."""
    return frozenset(e.name for e in ENDPOINTS if all(getattr(e, k) == v for k, v in where.items()))

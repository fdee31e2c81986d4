"""Archive slugs pinned byte for byte: the table below was computed by ``slug_for`` as it stood before the endpoint
declarations existed, so deriving the slugs from the declarations is proven to keep every archive key."""

from __future__ import annotations

import pytest

from tiklive_assets.capture.raw_archive import keyword_entity, slug_for
from tiklive_assets.storage.keys import HANDLE_RULE, ID_RULE, PAGE_VALUE_RULE, InvalidKeyPart

URL = "https://www.tiktok.com/@alice_1/video/7387261234567890123"

# (endpoint, params) -> slug
SLUGS = [
    ("/userid/", {"username": "cristiano"}, "cristiano"),
    ("/userid/", {"username": "a.b_c9"}, "a.b_c9"),
    ("/userinfo-by-username/", {"username": "Alice.B"}, "Alice.B"),
    ("/userinfo-by-id/", {"userid": "107955"}, "107955"),
    ("/userinfo-by-id/", {"userid": 107955}, "107955"),
    ("/user-posts/", {"userid": "107955", "count": 30, "cursor": 0}, "107955-cursor0"),
    ("/user-posts/", {"userid": "107955", "count": 30}, "107955-cursor0"),
    ("/user-posts/", {"userid": "107955", "count": 30, "cursor": "1716998400000"}, "107955-cursor1716998400000"),
    ("/user-posts/", {"userid": "107955", "cursor": None}, "107955-cursor0"),
    ("/user-followers/", {"userid": "107955", "count": 50, "time": 0}, "107955-time0"),
    ("/user-followers/", {"userid": "107955", "count": 50, "time": 1716998400}, "107955-time1716998400"),
    ("/user-following/", {"userid": "107955", "count": 50, "time": 0}, "107955-time0"),
    ("/user-following/", {"userid": "107955", "time": "1716998401"}, "107955-time1716998401"),
    ("/post-detail/", {"url": URL}, "7387261234567890123"),
    ("/download-video/", {"url": URL}, "7387261234567890123"),
    ("/post-comments/", {"url": URL, "count": 50, "cursor": 0}, "7387261234567890123-cursor0"),
    ("/post-comments/", {"url": URL, "count": 50, "cursor": "40"}, "7387261234567890123-cursor40"),
    (
        "/post-comment-replies/",
        {"comment_id": "7390000000000000001", "url": URL, "count": 50, "cursor": 0},
        "7387261234567890123-7390000000000000001-cursor0",
    ),
    (
        "/post-comment-replies/",
        {"comment_id": "7390000000000000001", "url": URL, "count": 50, "cursor": 20},
        "7387261234567890123-7390000000000000001-cursor20",
    ),
    ("/challenge-posts/", {"challenge_id": "1234", "count": 30, "cursor": 0}, "1234-cursor0"),
    ("/challenge-posts/", {"challenge_id": "1234", "count": 30, "cursor": 30, "region": "US"}, "1234-us-cursor30"),
    ("/challenge-posts/", {"challenge_id": "1234", "cursor": 0, "region": ""}, "1234-cursor0"),
    ("/challenge-posts/", {"challenge_id": "1234", "cursor": 0, "region": "Gb!"}, "1234-gb-7e0cfbce-cursor0"),
    ("/search-video/", {"keyword": "cats", "count": 30, "cursor": 0}, "cats-cursor0"),
    (
        "/search-video/",
        {"keyword": "cats", "count": 30, "cursor": 60, "publish_time": 7, "sort_by": 2, "region": "US"},
        "cats-pt7-sb2-us-cursor60",
    ),
    ("/search-video/", {"keyword": "cats", "cursor": 0, "publish_time": 0}, "cats-pt0-cursor0"),
    ("/search-video/", {"keyword": "cats", "cursor": 0, "sort_by": 0}, "cats-sb0-cursor0"),
    ("/search-video/", {"keyword": "cats", "cursor": 0, "region": "br"}, "cats-br-cursor0"),
    ("/search-video/", {"keyword": "Cats!", "cursor": 0}, "cats-5e28d52f-cursor0"),
    (
        "/search-video/",
        {"keyword": "funny cats", "cursor": 0, "publish_time": 30, "region": "DE"},
        "funny-cats-87e20613-pt30-de-cursor0",
    ),
    ("/search-video/", {"keyword": "#日本", "cursor": 0}, "16f5087e-cursor0"),
    ("/search-video/", {"keyword": "x" * 100, "cursor": 0}, "x" * 55 + "-50e48369-cursor0"),
    ("/music-posts/", {"music_id": "6800000000000000000", "count": 30, "cursor": 0}, "6800000000000000000-cursor0"),
    ("/music-posts/", {"music_id": "6800000000000000000", "count": 30, "cursor": "90"}, "6800000000000000000-cursor90"),
    ("/region-list/", {}, "regions"),
    ("/challenge-info-id/", {"challenge_id": "1234"}, "1234"),
    ("/challenge-info-name/", {"challenge_name": "fyp"}, "fyp"),
    ("/challenge-info-name/", {"challenge_name": "FYP Dance"}, "fyp-dance-a223f6f4"),
    ("/search-user/", {"keyword": "alice", "count": 30, "cursor": 0}, "alice-cursor0"),
    ("/search-user/", {"keyword": "Alice Smith", "count": 30, "cursor": 10}, "alice-smith-99b060e1-cursor10"),
    ("user-posts", {"userid": "107955", "cursor": 30}, "107955-cursor30"),
]
# (endpoint, params) -> the error, as slug_for raised it
ERRORS = [
    (
        "/userid/",
        {"username": "../etc"},
        "InvalidKeyPart",
        "invalid handle '../etc' for an object key: allowed is " + HANDLE_RULE,
    ),
    (
        "/userid/",
        {"username": "..."},
        "InvalidKeyPart",
        "invalid handle '...' for an object key: allowed is " + HANDLE_RULE,
    ),
    (
        "/userinfo-by-id/",
        {"userid": "12a"},
        "InvalidKeyPart",
        "invalid userid '12a' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/user-posts/",
        {"userid": "107955", "cursor": "-1"},
        "InvalidKeyPart",
        "invalid cursor '-1' for an object key: allowed is " + PAGE_VALUE_RULE,
    ),
    (
        "/user-posts/",
        {"userid": "1/2", "cursor": 0},
        "InvalidKeyPart",
        "invalid userid '1/2' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/user-followers/",
        {"userid": "107955", "time": "abc"},
        "InvalidKeyPart",
        "invalid time 'abc' for an object key: allowed is " + PAGE_VALUE_RULE,
    ),
    (
        "/post-detail/",
        {"url": "https://www.tiktok.com/@a/photo/1"},
        "InvalidKeyPart",
        "invalid aweme_id '' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/post-comment-replies/",
        {"comment_id": "x", "url": URL, "cursor": 0},
        "InvalidKeyPart",
        "invalid comment_id 'x' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/challenge-posts/",
        {"challenge_id": "#fyp", "cursor": 0},
        "InvalidKeyPart",
        "invalid challenge_id '#fyp' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/search-video/",
        {"keyword": "", "cursor": 0},
        "InvalidKeyPart",
        "invalid keyword '' for an object key: allowed is a non-empty string",
    ),
    (
        "/search-video/",
        {"keyword": "cats", "cursor": 0, "region": ""},
        "InvalidKeyPart",
        "invalid keyword '' for an object key: allowed is a non-empty string",
    ),
    (
        "/music-posts/",
        {"music_id": "m1", "cursor": 0},
        "InvalidKeyPart",
        "invalid music_id 'm1' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/challenge-info-id/",
        {"challenge_id": "a"},
        "InvalidKeyPart",
        "invalid challenge_id 'a' for an object key: allowed is " + ID_RULE,
    ),
    (
        "/unknown-endpoint/",
        {},
        "ValueError",
        "no archive slug is defined for endpoint '/unknown-endpoint/'; add one to slug_for()",
    ),
    ("/userid/", {}, "KeyError", "'username'"),
]


@pytest.mark.parametrize(("endpoint", "params", "slug"), SLUGS)
def test_the_archive_slug_of_every_endpoint_is_pinned(endpoint, params, slug):
    assert slug_for(endpoint, params) == slug


@pytest.mark.parametrize(("endpoint", "params", "kind", "message"), ERRORS)
def test_a_value_that_cannot_go_into_a_key_is_refused_as_before(endpoint, params, kind, message):
    errors = {"InvalidKeyPart": InvalidKeyPart, "ValueError": ValueError, "KeyError": KeyError}
    with pytest.raises(errors[kind]) as caught:
        slug_for(endpoint, params)
    assert type(caught.value) is errors[kind]
    text = str(caught.value)
    # an undeclared endpoint's message names where to declare it; only that hint may change
    assert text.startswith(message.split("; ")[0]) if kind == "ValueError" else text == message


def test_a_search_entity_names_the_keyword_and_every_filter():
    assert keyword_entity("cats", 7, 2, "US") == "cats-pt7-sb2-us"
    assert keyword_entity("Cats!") == "cats-5e28d52f"
    assert keyword_entity("a", 0, 0, "us") == "a-pt0-sb0-us"


def test_every_declared_endpoint_has_a_pinned_slug():
    from tiklive_assets.tikliveapi.endpoints import ENDPOINTS

    pinned = {endpoint.strip("/") for endpoint, _params, _slug in SLUGS}
    assert pinned == {e.name for e in ENDPOINTS}


# -- the Research API's raw archive (research-raw/) -------------------------------------------------------------
# (endpoint path, request body, fields asked for, generation, HTTP status, body) -> key: computed by
# ``ResearchArchive.key_for`` as it stood before the Research API's endpoint declarations existed.
_OK = b'{"data":{},"error":{"code":"ok"}}'
_WINDOW = {"max_count": 100, "start_date": "20240101", "end_date": "20240130"}
_DAY = "research-raw/2025/06/01"
RESEARCH_KEYS = [
    ("/v2/research/video/query/", {**_WINDOW}, (), 1, 200, _OK, "video-query/20240101-20240130-q89a79f704d-g1-cursor0"),
    (
        "/v2/research/video/query/",
        {**_WINDOW, "cursor": 200, "search_id": "abc"},
        "VIDEO_FIELDS",
        3,
        200,
        _OK,
        "video-query/20240101-20240130-q89a79f704d-g3-cursor200",
    ),
    (
        "/v2/research/video/query/",
        {**_WINDOW, "cursor": 100},
        ("id", "username"),
        2,
        200,
        _OK,
        "video-query/20240101-20240130-q267fcb223f-g2-cursor100",
    ),
    (
        "/v2/research/video/query/",
        {**_WINDOW},
        "VIDEO_FIELDS",
        1,
        500,
        b'{"error":{"code":"internal_error","message":"x"}}',
        "video-query/20240101-20240130-q89a79f704d-g1-cursor0-internal_error-997c9f21",
    ),
    (
        "/v2/research/video/query/",
        {**_WINDOW},
        "VIDEO_FIELDS",
        1,
        504,
        b"<html>504</html>",
        "video-query/20240101-20240130-q89a79f704d-g1-cursor0-bad_response-fbfa6ed9",
    ),
    ("/v2/research/user/info/", {"username": "tagesschau"}, "USER_FIELDS", 1, 200, _OK, "user-info/tagesschau"),
    (
        "/v2/research/user/followers/",
        {"username": "tagesschau", "max_count": 100},
        (),
        1,
        200,
        _OK,
        "user-followers/tagesschau-cursor0",
    ),
    (
        "/v2/research/user/followers/",
        {"username": "tagesschau", "max_count": 100, "cursor": 1735600000},
        (),
        1,
        200,
        _OK,
        "user-followers/tagesschau-cursor1735600000",
    ),
    (
        "/v2/research/user/following/",
        {"username": "a.b_c9", "max_count": 100},
        (),
        1,
        403,
        b'{"error":{"code":"scope_not_authorized","message":"private"}}',
        "user-following/a.b_c9-cursor0-scope_not_authorized-d1e5c5a2",
    ),
    (
        "/v2/research/video/comment/list/",
        {"video_id": 7387261234567890123, "max_count": 100, "cursor": 0},
        "COMMENT_FIELDS",
        1,
        200,
        _OK,
        "video-comments/7387261234567890123-cursor0",
    ),
    (
        "/v2/research/video/comment/list/",
        {"video_id": 7387261234567890123, "max_count": 100, "cursor": 50},
        "COMMENT_FIELDS",
        1,
        200,
        _OK,
        "video-comments/7387261234567890123-cursor50",
    ),
]


def _research_response(path, body, fields, status, payload):
    from datetime import UTC, datetime

    from tiklive_assets.research import endpoints as rep
    from tiklive_assets.research.client import ResearchResponse, build_query

    fields = getattr(rep, fields) if isinstance(fields, str) else fields
    request = {"query": build_query(["tagesschau"]), **body} if path == rep.VIDEO_QUERY.path else body
    return ResearchResponse(path, request, status, payload, datetime.now(UTC), 1, tuple(fields))


@pytest.mark.parametrize(("path", "body", "fields", "generation", "status", "payload", "key"), RESEARCH_KEYS)
def test_research_archive_keys_are_pinned(tmp_path, path, body, fields, generation, status, payload, key):
    from datetime import date

    from tiklive_assets.research.archive import ResearchArchive
    from tiklive_assets.storage import LocalStore

    archive = ResearchArchive(LocalStore(tmp_path), date(2025, 6, 1))
    archive.generation = generation
    assert archive.key_for(_research_response(path, body, fields, status, payload)) == f"{_DAY}/{key}.json.gz"


@pytest.mark.parametrize(("path", "body", "fields", "generation", "status", "payload", "key"), RESEARCH_KEYS)
def test_research_declarations_describe_the_pinned_keys(path, body, fields, generation, status, payload, key):
    """The declared archive name and slug parts, rendered as the module docstring of research/endpoints.py says,
    give every pinned key (the error suffix aside)."""
    from tiklive_assets.research.client import query_hash
    from tiklive_assets.research.endpoints import BY_PATH, VIDEO_FIELDS

    endpoint = BY_PATH[path]
    response = _research_response(path, body, fields, status, payload)
    req = response.request
    render = {
        "username": lambda: str(req["username"]),
        "video_id": lambda: str(int(req["video_id"])),
        "window": lambda: f"{req['start_date']}-{req['end_date']}",
        "query": lambda: "q" + query_hash(req["query"], response.fields or VIDEO_FIELDS),
        "generation": lambda: f"g{generation}",
    }
    slug = "-".join(render[part]() for part in endpoint.slug)
    if endpoint.paginated:
        slug += f"-cursor{int(req.get('cursor') or 0)}"
    assert key == f"{endpoint.archive}/{slug}" or key.startswith(f"{endpoint.archive}/{slug}-")


def test_every_archived_research_endpoint_has_a_pinned_key():
    from tiklive_assets.research.endpoints import ARCHIVED

    assert {path for path, *_ in RESEARCH_KEYS} == {e.path for e in ARCHIVED}

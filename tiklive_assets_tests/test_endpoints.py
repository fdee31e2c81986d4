"""Each TikLiveAPI endpoint is declared once; the client, the warehouse's parsers, erasure and the sandbox follow the
declarations (the archive slugs are pinned in test_archive_slugs.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tiklive_assets.compliance import erasure
from tiklive_assets.sandbox import API_ENDPOINTS, DEFAULT_API_KEY
from tiklive_assets.tikliveapi import endpoints as ep
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tikliveapi.endpoints import ENDPOINTS, Endpoint, Part
from tiklive_assets.warehouse import parse

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


def test_every_endpoint_is_declared_once_by_path_and_by_name():
    assert len(ENDPOINTS) == 17
    assert len({e.path for e in ENDPOINTS}) == len({e.name for e in ENDPOINTS}) == len(ENDPOINTS)
    assert ep.BY_PATH["/user-posts/"] is ep.USER_POSTS and ep.BY_NAME["user-posts"] is ep.USER_POSTS


def test_the_declarations_module_is_pure_data():
    """The warehouse and the sandbox read it: it must never pull in the client, the store or anything else (only
    the checks both APIs' declarations share, standard library only)."""
    code = (
        "import sys; import tiklive_assets.tikliveapi.endpoints;"
        "print(sorted(m for m in sys.modules if m.startswith('tiklive_assets')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == str(
        [
            "tiklive_assets",
            "tiklive_assets.declared",
            "tiklive_assets.tikliveapi",
            "tiklive_assets.tikliveapi.endpoints",
        ]
    )


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"path": "user-posts"}, "one segment between slashes"),
        ({"path": "/a/b/"}, "one segment between slashes"),
        ({"path": "/x/", "required": ("a",), "optional": ("a",)}, "declared twice"),
        ({"path": "/x/", "required": ("a",), "pages": "cursor", "slug": (Part("a", "id"),)}, "must be an optional"),
        ({"path": "/x/", "required": ("a",)}, "no slug"),
        ({"path": "/x/", "optional": ("a",), "slug": (Part("a", "id"),)}, "not a declared parameter"),
        ({"path": "/x/", "required": ("a",), "slug": (Part("b", "id", when="given"),)}, "not a declared parameter"),
        ({"path": "/x/", "required": ("a",), "slug": (Part("a", "hex"),)}, "unknown slug check"),  # type: ignore[arg-type]
        ({"path": "/x/", "optional": ("cursor",), "pages": "cursor", "slug": "fixed"}, "unpaginated"),
        ({"path": "/x/", "slug": "fixed", "subject": "post"}, "named by the slug"),
        ({"path": "/x/", "required": ("a",), "slug": (Part("a", "id"),), "subject": "account"}, "must be one of"),
        (
            {"path": "/x/", "required": ("a",), "optional": ("cursor",), "pages": "cursor", "slug": (Part("a", "id"),)},
            "names its items and page size",
        ),
        ({"path": "/x/", "required": ("a",), "slug": (Part("a", "id"),), "page_size": 30}, "names its items"),
    ],
)
def test_a_declaration_that_contradicts_itself_is_refused_at_import(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        Endpoint(**kwargs)


def test_a_request_with_an_undeclared_parameter_is_refused_before_it_is_sent():
    assert ep.USER_POSTS.request({"userid": "1", "count": 30, "cursor": 0}) == {"userid": "1", "count": 30, "cursor": 0}
    with pytest.raises(TypeError, match="takes no parameter time"):
        ep.USER_POSTS.request({"userid": "1", "time": 0})


def test_every_parse_target_has_a_parser_and_every_parser_a_declared_endpoint():
    assert set(parse.PARSERS) == ep.PARSE_TARGETS
    assert {e.name for e in ENDPOINTS if e.parse is None} == {
        "download-video",
        "region-list",
        "challenge-info-id",
        "challenge-info-name",
        "search-user",
    }  # archived only; a new endpoint must choose a parser or say so here
    assert parse.FOLLOW_ENDPOINTS == {
        "user-followers": ("followers", "follower"),
        "user-following": ("followings", "following"),
    }


def test_erasure_finds_the_subject_in_the_keys_the_declarations_name():
    assert {"userinfo-by-id", "user-posts", "user-followers", "user-following"} == erasure._USER_ID_ENDPOINTS
    assert {"userid", "userinfo-by-username", "search-user"} == erasure._HANDLE_ENDPOINTS
    assert {
        "post-detail",
        "download-video",
        "post-comments",
        "post-comment-replies",
        "video-comments",
    } == erasure._AWEME_ENDPOINTS
    assert {"region-list", "challenge-info-id", "challenge-info-name"} == erasure._NO_USER_DATA
    for e in ENDPOINTS:  # the subject is the slug's first part, which erasure reads back from the key
        if e.subject is not None:
            first = e.slug[0]
            assert (e.subject, first.check) in {
                ("user_id", "id"),
                ("handle", "handle"),
                ("handle", "text"),
                ("post", "post"),
            }, e.path


def _sample_params(client: TikLiveClient) -> dict[str, str]:
    """Real values for every required parameter, found through the sandbox's own answers."""
    user_id = client.userid("cristiano").json()["id"]
    video = client.user_posts(user_id).json()["videos"][0]
    aweme_id, handle = video["aweme_id"], video["author"]["unique_id"]
    comment_id = client.post_comments(aweme_id, handle).json()["comments"][0]["id"]
    challenge_id = client.challenge_info_name("cooking").json()["id"]
    return {
        "username": "cristiano",
        "userid": user_id,
        "url": f"https://www.tiktok.com/@{handle}/video/{aweme_id}",
        "comment_id": comment_id,
        "challenge_id": challenge_id,
        "challenge_name": "cooking",
        "music_id": video["music_info"]["id"],
        "keyword": "cris",
    }


def test_the_sandbox_serves_every_declared_endpoint_and_requires_its_required_parameters(sandbox):
    assert tuple(e.path for e in ENDPOINTS) == API_ENDPOINTS
    client = TikLiveClient(DEFAULT_API_KEY, sandbox.base_url, **FAST)
    values = _sample_params(client)
    session = requests.Session()
    session.headers["X-Api-Key"] = DEFAULT_API_KEY
    for e in ENDPOINTS:
        params = {name: values[name] for name in e.required}
        answer = session.get(sandbox.base_url + e.path, params=params, timeout=10)
        assert answer.status_code == 200, (e.path, answer.text)
        assert isinstance(answer.json(), dict) and answer.json(), e.path
        if e.items is not None:
            assert isinstance(answer.json()[e.items], list), e.path
        for missing in e.required:
            answer = session.get(sandbox.base_url + e.path, params={**params, missing: ""}, timeout=10)
            assert (answer.status_code, answer.json()) == (400, {"error": f"missing parameter: {missing}"}), e.path
    client.close()


def test_every_client_method_sends_its_declared_path_and_parameters(sandbox):
    sent = []
    client = TikLiveClient(DEFAULT_API_KEY, sandbox.base_url, on_response=sent.append, **FAST)
    values = _sample_params(client)
    aweme_id = values["url"].rsplit("/", 1)[1]
    handle = values["url"].split("@")[1].split("/")[0]
    sent.clear()
    calls = {
        "userid": lambda: client.userid("cristiano"),
        "userinfo-by-username": lambda: client.userinfo_by_username("cristiano"),
        "userinfo-by-id": lambda: client.userinfo_by_id(values["userid"]),
        "user-posts": lambda: client.user_posts(values["userid"]),
        "user-followers": lambda: client.user_followers(values["userid"]),
        "user-following": lambda: client.user_following(values["userid"]),
        "post-detail": lambda: client.post_detail(aweme_id, handle),
        "download-video": lambda: client.download_video(aweme_id, handle),
        "post-comments": lambda: client.post_comments(aweme_id, handle),
        "post-comment-replies": lambda: client.post_comment_replies(values["comment_id"], aweme_id, handle),
        "challenge-posts": lambda: client.challenge_posts(values["challenge_id"], region="US"),
        "search-video": lambda: client.search_video("cris", publish_time=30, sort_by=1, region="US"),
        "music-posts": lambda: client.music_posts(values["music_id"]),
        "region-list": client.region_list,
        "challenge-info-id": lambda: client.challenge_info_id(values["challenge_id"]),
        "challenge-info-name": lambda: client.challenge_info_name("cooking"),
        "search-user": lambda: client.search_user("cris"),
    }
    assert set(calls) == set(ep.BY_NAME)
    for name, call in calls.items():
        declared = ep.BY_NAME[name]
        response = call()
        assert response.endpoint == declared.path
        assert list(response.params) == list(declared.params), name  # every declared parameter, in declared order
    assert [r.endpoint for r in sent] == [ep.BY_NAME[n].path for n in calls]
    client.close()


# -- the Research API's declarations (tiklive_assets/research/endpoints.py) -------------------------------------


def test_the_research_declarations_module_is_pure_data():
    code = (
        "import sys; import tiklive_assets.research.endpoints;"
        "print(sorted(m for m in sys.modules if m.startswith('tiklive_assets')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == str(
        ["tiklive_assets", "tiklive_assets.declared", "tiklive_assets.research", "tiklive_assets.research.endpoints"]
    )


def test_each_research_endpoint_is_declared_once_and_client_and_sandbox_use_the_declarations():
    from tiklive_assets.research import client as rclient
    from tiklive_assets.research import endpoints as rep
    from tiklive_assets.sandbox import research as rsandbox

    assert len({e.path for e in rep.ENDPOINTS}) == len({e.name for e in rep.ENDPOINTS}) == len(rep.ENDPOINTS) == 6
    assert rclient.VIDEO_FIELDS is rep.VIDEO_FIELDS is rsandbox.VIDEO_FIELDS
    video_query, token = rep.VIDEO_QUERY, rep.TOKEN
    assert video_query.path == rclient.VIDEO_QUERY and token.path == rclient.TOKEN_PATH
    assert set(rsandbox.RESEARCH_ENDPOINTS) == {e.path for e in rep.ENDPOINTS}
    assert {e.archive for e in rep.ARCHIVED} == {
        "video-query",
        "user-info",
        "user-followers",
        "user-following",
        "video-comments",
    }
    assert rep.archive_names(subject="handle") == {"user-info", "user-followers", "user-following"}
    assert rep.archive_names(subject="post") == {"video-comments"}
    targets = rep.PARSE_TARGETS
    assert targets == {"research_videos", "research_users", "research_follows", "research_comments"}


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"path": "/research/x/"}, "must start with '/v2/'"),
        ({"path": "/v2/x/", "body": ("a",), "required": ("b",)}, "required one is not a body field"),
        ({"path": "/v2/x/", "pages": "offset", "items": "xs"}, "sends a cursor"),
        ({"path": "/v2/x/", "archive": "x"}, "names its slug"),
        ({"path": "/v2/x/", "body": ("username",), "archive": "x", "slug": ("nope",)}, "unknown slug part"),
        (
            {"path": "/v2/x/", "body": ("video_id",), "archive": "x", "slug": ("video_id",), "subject": "handle"},
            "first part",
        ),
        ({"path": "/v2/x/", "fields": ("a",), "default_fields": ("b",)}, "default field"),
    ],
)
def test_a_research_declaration_that_contradicts_itself_is_refused(kwargs, problem):
    from tiklive_assets.research.endpoints import Endpoint as ResearchEndpoint

    with pytest.raises(ValueError, match=problem):
        ResearchEndpoint(**kwargs)


def test_a_research_request_with_an_undeclared_body_field_is_refused():
    from tiklive_assets.research.endpoints import USER_INFO

    assert USER_INFO.request({"username": "a"}) == {"username": "a"}
    with pytest.raises(TypeError, match="takes no body field cursor"):
        USER_INFO.request({"username": "a", "cursor": 1})


def test_a_listing_asks_for_its_declared_page_size_unless_told_otherwise(sandbox):
    sent = []
    client = TikLiveClient(DEFAULT_API_KEY, sandbox.base_url, on_response=sent.append, **FAST)
    values = _sample_params(client)
    aweme_id = values["url"].rsplit("/", 1)[1]
    handle = values["url"].split("@")[1].split("/")[0]
    sent.clear()
    client.user_posts(values["userid"])
    client.post_comments(aweme_id, handle)
    client.user_followers(values["userid"], count=7)
    assert [r.params["count"] for r in sent] == [ep.USER_POSTS.page_size, ep.POST_COMMENTS.page_size, 7]
    assert (ep.USER_POSTS.page_size, ep.POST_COMMENTS.page_size, ep.USER_FOLLOWERS.page_size) == (30, 50, 50)
    client.close()

"""Bodies for the archive index tests: the wire variants the warehouse reads (as test_warehouse_variants and
benchmarks/replay_day.py write them), and what the unknown-shape test puts where no parser expects it."""

from __future__ import annotations

from tiklive_assets.storage import slug_page

SAM = {"id": "7111111111111111111", "unique_id": "sam.the.fan", "nickname": "Sam"}
USER = "6800000000000000001"
AUTHOR = {"id": USER, "unique_id": "alice123", "nickname": "Alice"}


def _post(aweme_id: object = "7100000000000000001", *, id_field: str = "aweme_id", **fields: object) -> dict:
    post = {
        id_field: aweme_id,
        "region": "US",
        "title": "hello #cats with @Bob.b",
        "play_count": 10,
        "digg_count": 2,
        "comment_count": 1,
        "share_count": 0,
        "create_time": 1_780_000_000,
        "duration": 12,
        "author": AUTHOR,
        "music_info": {"id": "9001", "title": "Song", "author": "Band"},
    }
    post.update(fields)
    return {k: v for k, v in post.items() if v is not _GONE}


_GONE = object()
WEB_POST = {
    "id": "7100000000000000009",
    "desc": "web post #dance",
    "createTime": 1_780_000_000,
    "author": {"id": USER, "uniqueId": "Alice123", "nickname": "Alice"},
    "stats": {"playCount": 50, "diggCount": 5, "commentCount": 2, "shareCount": 1},
    "statsV2": {"playCount": "50"},
    "music": {"id": "9002", "title": "Tune", "authorName": "DJ"},
    "video": {"duration": 9},
}
PROFILE = {
    "user": {"id": USER, "uniqueId": "alice123", "nickname": "Alice", "secUid": "MS4wLjAB", "verified": 1},
    "stats": {"followerCount": "100", "followingCount": 5, "videoCount": None, "heartCount": 40},
}
COMMENT = {"id": "9100000000000000001", "text": "hi @sam.the.fan", "digg_count": 1, "create_time": 1, "user": SAM}
# (endpoint, slug, body): the wire variants the warehouse reads (test_warehouse_variants, benchmarks/replay_day.py)
VARIANTS: list[tuple[str, str, object]] = [
    ("post-detail", "7100000000000000001", _post()),
    ("post-detail", "7100000000000000002", _post("7100000000000000002", id_field="video_id", play_count="12")),
    ("post-detail", "7100000000000000003", _post(7100000000000000003, music_info=None, music="")),
    ("post-detail", "7100000000000000004", _post("7100000000000000004", images=["https://cdn/1.jpg"], duration=0)),
    ("post-detail", "7100000000000000005", _post("7100000000000000005", author="alice123", author_id=USER)),
    ("post-detail", "7100000000000000006", {"code": 0, "msg": "success", "data": _post("7100000000000000006")}),
    ("post-detail", "7100000000000000007", _post("7100000000000000007", title="a {brace} in a title")),
    ("post-detail", "7100000000000000008", _post(None)),
    ("post-detail", "7100000000000000009", WEB_POST),
    ("post-detail", "7100000000000000405-http404", {"error": "video not found", "author": AUTHOR}),
    ("post-detail", "7100000000000000010-error-upstream", {"code": -1, "msg": "busy", "user": AUTHOR}),
    ("post-detail", "7100000000000000011-error-notjson", b"<html>502 Bad Gateway @gateway</html>"),
    ("post-detail", "7100000000000000012", b'{"aweme_id": "7100000000000000012", "author": {"id": "1"'),
    ("user-posts", slug_page(USER, "cursor", 0), {"videos": [_post(), _post(None), "not an object", WEB_POST]}),
    ("user-posts", slug_page(USER, "cursor", 30), {"videos": [{"id": "7100000000000000013", "author": "alice123"}]}),
    ("user-posts", slug_page(USER, "cursor", 60), {"videos": None, "cursor": 0, "hasMore": 0}),
    ("search-video", "cats-cursor0", {"videos": [{**_post(), "owner_id": 55, "author_id": "x1"}]}),
    ("userinfo-by-id", USER, PROFILE),
    ("userinfo-by-id", "6800000000000000002", {**PROFILE, "user": {**PROFILE["user"], "bioLink": {"link": "x"}}}),
    ("userinfo-by-username", "alice123", {"userInfo": PROFILE}),
    ("userinfo-by-username", "alice123_2", {"user": "alice123", "stats": {}}),
    ("userinfo-by-username", "bob", {"message": "Insufficient balance"}),
    ("userid", "alice123", {"id": USER}),
    ("userid", "bob", {"user_id": 6800000000000000002}),
    (
        "user-followers",
        slug_page(USER, "time", 0),
        {
            "followers": [
                {"user": {"id": "42", "uniqueId": "fan"}, "stats": {"followerCount": 3, "videoCount": 1}},
                {"id": 43, "unique_id": "@Fan2", "follower_count": "8", "aweme_count": 0},
                {"unique_id": "no-id"},
                {"user": {"id": "44", "uid": 44}, "statsV2": {}},
            ],
            "time": 1_780_000_000,
            "hasMore": 0,
        },
    ),
    ("user-following", slug_page(USER, "time", 0), {"followings": [AUTHOR, SAM], "time": 1, "hasMore": False}),
    (
        "post-comments",
        slug_page("7100000000000000001", "cursor", 0),
        {
            "comments": [
                COMMENT,
                {**COMMENT, "id": "9100000000000000002", "reply_to_userid": "7111111111111111111"},
                {**COMMENT, "id": "9100000000000000003", "reply_to_user": AUTHOR, "aweme_id": 7100000000000000001},
                {"text": "no id", "user": AUTHOR},
                {**COMMENT, "cid": "9100000000000000004", "id": None, "user": None},
            ],
            "cursor": 5,
            "hasMore": 1,
        },
    ),
    ("post-comment-replies", slug_page("7100000000000000001-9100000000000000001", "cursor", 0), {"comments": []}),
    ("download-video", "7100000000000000001", {"play": "https://cdn/x.mp4", "author": AUTHOR}),
    ("search-user", "alice-cursor0", {"user_list": [{"user_info": AUTHOR}], "cursor": 1}),
]


INJECTED_NAMES = ("user", "author", "owner", "reply_to_user", "stats", "extra", "items", "uid", "author_id")
INJECTED_VALUES = (
    {"id": "123", "unique_id": "@Zed"},
    {"uid": 77, "nickname": "n"},
    {"username": "research.user", "id": 5},
    {"reply_to_userid": "88", "note": {"sec_uid": "MS4", "userId": "89"}},
    [{"uniqueId": "listed", "id": 90}, "text"],
    "91",
    92,
    True,
)

"""Tests of the TikLiveAPI sandbox itself, over real HTTP with ``requests``."""

from __future__ import annotations

import hashlib
import http.client
import json
import re

import pytest
import requests

from tiklive_assets.sandbox import (
    DEFAULT_API_KEY,
    Corpus,
    SandboxConfig,
    SandboxServer,
    cover_bytes,
    post_url,
    video_bytes,
)

NOW = 1795500000.0  # 2026-11-24T05:20:00Z


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _session(key: str = DEFAULT_API_KEY) -> requests.Session:
    s = requests.Session()
    s.headers["X-Api-Key"] = key
    return s


@pytest.fixture(scope="module")
def shared():
    """A read-only sandbox at a fixed clock, shared by the shape tests."""
    with SandboxServer(SandboxConfig(clock=FakeClock())) as sb:
        yield sb


@pytest.fixture()
def fresh():
    """A private sandbox with a controllable clock, for tests that mutate state."""
    clock = FakeClock()
    with SandboxServer(SandboxConfig(clock=clock, video_size=20_000)) as sb:
        sb.test_clock = clock  # type: ignore[attr-defined]
        yield sb


@pytest.fixture(scope="module")
def api(shared):
    s = _session()
    base = shared.base_url

    def get(path: str, **params):
        return s.get(base + path, params=params, timeout=10)

    yield get
    s.close()


def _walk(get, path, key, cursor_key="cursor", **params):
    items, pages, cursor = [], 0, None
    while True:
        q = dict(params)
        if cursor is not None:
            q[cursor_key] = cursor
        r = get(path, **q)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body[key])
        pages += 1
        assert pages < 200, "paginator never ends"
        if not body["hasMore"]:
            return items, pages
        assert body[cursor_key] != cursor, "cursor did not advance"
        cursor = body[cursor_key]


# ----------------------------------------------------------------------------- corpus facts


def test_fixed_handles_and_ids(shared):
    accts = {a.handle: a.id for a in shared.corpus.accounts}
    assert accts == {
        "alice123": "6800000000000000001",
        "bob": "6800000000000000002",
        "cristiano": "107955",
        "dana_dances": "6800000000000000004",
        "eli.cooks": "6800000000000000005",
        "fern_travel": "6800000000000000006",
    }
    assert shared.corpus.hashtags["1001"] == "cats"
    assert shared.corpus.music_ids[0] == "9001" and len(shared.corpus.music_ids) == 10


def test_corpus_is_deterministic_and_seeded():
    a = Corpus(seed=7, clock=lambda: NOW)
    b = Corpus(seed=7, clock=lambda: NOW)
    c = Corpus(seed=8, clock=lambda: NOW)
    assert a.post_ids_for("alice123") == b.post_ids_for("alice123")
    assert a.post_ids_for("alice123") != c.post_ids_for("alice123")
    ids = a.all_post_ids()
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"\d{19}", i) for i in ids)
    for acct in a.accounts:
        assert 100 <= len(a.post_ids_for(acct.handle)) <= 600
    # detail() decodes ids without a lookup table
    aid = a.post_ids_for("bob")[5]
    assert a.detail(aid)["aweme_id"] == aid
    assert a.detail("7000000000000000001") is None


# ----------------------------------------------------------------------------- shapes


def test_userid_and_userinfo_shapes(api):
    r = api("/userid/", username="cristiano")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"id": "107955"}
    assert api("/userid/", username="nobody_here").status_code == 404

    for body in (
        api("/userinfo-by-username/", username="alice123").json(),
        api("/userinfo-by-id/", userid="6800000000000000001").json(),
    ):
        assert set(body) == {"user", "stats"}
        assert set(body["user"]) == {
            "id",
            "uniqueId",
            "nickname",
            "avatarLarger",
            "secUid",
            "verified",
            "privateAccount",
            "bioLink",
        }
        assert set(body["stats"]) == {"followerCount", "followingCount", "videoCount", "heartCount", "diggCount"}
        assert body["user"]["uniqueId"] == "alice123" and body["user"]["privateAccount"] is False


POST_KEYS = {
    "aweme_id",
    "region",
    "title",
    "cover",
    "play",
    "wmplay",
    "play_count",
    "digg_count",
    "comment_count",
    "share_count",
    "create_time",
    "duration",
    "author",
    "music_info",
}


def _check_post_item(v):
    assert set(v) >= POST_KEYS
    assert re.fullmatch(r"\d{19}", v["aweme_id"])
    assert set(v["author"]) == {"id", "unique_id", "nickname", "avatar"}
    assert set(v["music_info"]) == {"id", "title", "author"}
    assert isinstance(v["create_time"], int)


def test_user_posts_walk(api, shared):
    uid = "6800000000000000002"
    info = api("/userinfo-by-id/", userid=uid).json()
    first = api("/user-posts/", userid=uid, count=100).json()  # count clamps to 30
    assert set(first) == {"videos", "cursor", "hasMore"} and len(first["videos"]) == 30
    assert first["cursor"].isdigit() and first["hasMore"] is True
    for v in first["videos"]:
        _check_post_item(v)
        assert "#" in v["title"]
    items, pages = _walk(api, "/user-posts/", "videos", userid=uid, count=30)
    ids = [v["aweme_id"] for v in items]
    assert len(ids) == len(set(ids)) == info["stats"]["videoCount"] > 30
    assert ids == shared.corpus.post_ids_for("bob")
    times = [v["create_time"] for v in items]
    assert times == sorted(times, reverse=True)
    assert all(t <= NOW for t in times)
    # the cursor is the oldest item's create time in ms
    assert int(first["cursor"]) // 1000 == first["videos"][-1]["create_time"]


def test_post_detail_and_download_video(api, shared):
    aid = shared.corpus.post_ids_for("cristiano")[0]
    d = api("/post-detail/", url=post_url("cristiano", aid)).json()
    for k in (
        "aweme_id",
        "play",
        "wmplay",
        "cover",
        "origin_cover",
        "ai_dynamic_cover",
        "music",
        "music_info",
        "author",
        "play_count",
        "digg_count",
        "comment_count",
        "share_count",
        "download_count",
        "collect_count",
        "create_time",
        "duration",
        "region",
        "title",
    ):
        assert k in d, k
    assert "data" not in d and d["aweme_id"] == aid
    assert d["play"].startswith(shared.base_url + f"/cdn/play/{aid}.mp4?expires=")
    dl = api("/download-video/", url=post_url("cristiano", aid)).json()
    assert set(dl) == {"video", "video_hd"}
    assert (dl["video_hd"] is not None) == ("hdplay" in d)
    # hdplay for roughly 70% of videos
    ids = shared.corpus.post_ids_for("alice123")[:200]
    hd = sum("hdplay" in shared.corpus.detail(i) for i in ids)
    assert 0.55 * len(ids) < hd < 0.85 * len(ids)
    assert api("/post-detail/", url=post_url("cristiano", "7000000000000000001")).json() == {"error": "video not found"}
    r = api("/post-detail/")
    assert r.status_code == 400 and "url" in r.json()["error"]


def test_comments_and_replies(api, shared):
    c = shared.corpus
    # find a video with several pages of comments and one with replies
    target = next(
        p
        for p in c.visible_posts("alice123")
        if len(c.comments(p.aweme_id)) > 25 and any(cm.replies for cm in c.comments(p.aweme_id))
    )
    url = post_url("alice123", target.aweme_id)
    items, pages = _walk(api, "/post-comments/", "comments", url=url, count=10)
    assert pages >= 3
    assert len({i["id"] for i in items}) == len(items) == len(c.comments(target.aweme_id))
    for i in items:
        assert {"id", "text", "digg_count", "reply_total", "create_time", "aweme_id", "user"} <= set(i)
        assert "cid" not in i
    parent = next(i for i in items if i["reply_total"] > 0)
    replies, _ = _walk(api, "/post-comment-replies/", "comments", comment_id=parent["id"], url=url, count=3)
    assert len(replies) == parent["reply_total"]
    assert all(r["reply_to_id"] == parent["id"] for r in replies)
    total = len(items) + sum(i["reply_total"] for i in items)
    assert api("/post-detail/", url=url).json()["comment_count"] == total


def test_followers_and_following_time_pagination(api):
    uid = "107955"
    first = api("/user-followers/", userid=uid, count=50).json()
    assert set(first) == {"followers", "time", "hasMore"} and isinstance(first["time"], int)
    assert set(first["followers"][0]) == {"id", "unique_id", "sec_uid", "nickname", "follower_count", "aweme_count"}
    items, pages = _walk(api, "/user-followers/", "followers", cursor_key="time", userid=uid, count=50)
    assert pages >= 2 and 60 <= len(items) <= 150 and len({i["id"] for i in items}) == len(items)
    fw = api("/user-following/", userid=uid).json()
    assert "followings" in fw and "following" not in fw
    items, _ = _walk(api, "/user-following/", "followings", cursor_key="time", userid=uid, count=50)
    assert len(items) == api("/userinfo-by-id/", userid=uid).json()["stats"]["followingCount"]


def test_discovery_endpoints(api, shared):
    c = shared.corpus
    vids, pages = _walk(api, "/challenge-posts/", "videos", challenge_id="1003", count=30)
    assert pages > 1 and all("#travel" in v["title"] for v in vids)
    authors = {v["author"]["unique_id"] for v in vids}
    tracked = {a.handle for a in c.accounts}
    assert authors & tracked and authors - tracked  # overlaps tracked accounts and finds new authors
    r = api("/challenge-posts/", challenge_id="1003", region="US")
    assert r.status_code == 200
    assert api("/challenge-posts/", challenge_id="1003", region="XX").status_code == 400

    m = api("/music-posts/", music_id="9003", count=30).json()
    assert m["videos"] and all(v["music_info"]["id"] == "9003" for v in m["videos"])

    s = api("/search-video/", keyword="cats", publish_time=7, sort_by=2, region="US", count=30).json()
    assert s["videos"]
    ts = [v["create_time"] for v in s["videos"]]
    assert ts == sorted(ts, reverse=True) and min(ts) >= NOW - 7 * 86400
    assert all(v["region"] == "US" and "cats" in v["title"] for v in s["videos"])
    likes = api("/search-video/", keyword="cats", sort_by=1, count=30).json()["videos"]
    diggs = [v["digg_count"] for v in likes]
    assert diggs == sorted(diggs, reverse=True)
    assert api("/search-video/", keyword="cats", publish_time=3).status_code == 400
    assert api("/search-video/").status_code == 400

    regions = api("/region-list/").json()["regions"]
    assert {"code": "US", "name": "United States"} in regions and len(regions) >= 10
    ci = api("/challenge-info-id/", challenge_id="1001").json()
    assert set(ci) == {"id", "cha_name", "view_count", "user_count"} and ci["cha_name"] == "cats"
    assert api("/challenge-info-name/", challenge_name="cats").json()["id"] == "1001"
    su = api("/search-user/", keyword="cristiano").json()
    assert set(su) == {"user_list", "cursor", "hasMore"}
    assert su["user_list"][0]["user"]["id"] == "107955"


# ----------------------------------------------------------------------------- errors and auth


def test_auth_and_errors(shared):
    base = shared.base_url
    r = requests.get(base + "/userid/", params={"username": "bob"}, headers={"X-Api-Key": "s3cret-wrong"})
    assert r.status_code == 401 and r.json() == {"error": "invalid or missing API key"}
    assert "s3cret-wrong" not in r.text
    assert requests.get(base + "/userid/", params={"username": "bob"}).status_code == 401
    s = _session()
    r = s.get(base + "/no-such-endpoint/")
    assert r.status_code == 404 and r.json() == {"error": "unknown endpoint"}
    r = s.get(base + "/user-posts/")
    assert r.status_code == 400 and "userid" in r.json()["error"]
    r = s.get(base + "/user-posts/", params={"userid": "107955", "count": "lots"})
    assert r.status_code == 400 and "count" in r.json()["error"]


def test_keep_alive(shared):
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/region-list/", headers={"X-Api-Key": DEFAULT_API_KEY})
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(resp.read())
    conn.close()


def test_rate_limit_429_and_retry_after(fresh):
    sb, clock = fresh, fresh.test_clock
    sb.faults.rate_limit = 3
    sb.faults.rate_window_seconds = 10
    s = _session()
    url = sb.base_url + "/region-list/"
    for _ in range(3):
        assert s.get(url).status_code == 200
        clock.advance(1)
    r = s.get(url)
    assert r.status_code == 429 and r.json() == {"error": "rate limit exceeded"}
    assert r.headers["Retry-After"] == "7"  # oldest at t0, leaves at t0+10, now t0+3
    clock.advance(7)
    assert s.get(url).status_code == 200
    st = sb.stats()
    assert st["api_requests"] == 5 and st["rate_limited"] == 1 and st["by_status"] == {"200": 4, "429": 1}
    assert st["max_in_window"] == 4 and sb.max_in_window(1) == 1
    assert [a[2] for a in sb.arrivals()] == [200, 200, 200, 429, 200]


def test_cdn_bytes_expiry_and_signature(fresh):
    sb, clock = fresh, fresh.test_clock
    s = _session()
    aid = sb.corpus.post_ids_for("eli.cooks")[3]
    d = s.get(sb.base_url + "/post-detail/", params={"url": post_url("eli.cooks", aid)}).json()
    r = requests.get(d["play"])
    assert r.status_code == 200 and r.headers["Content-Type"] == "video/mp4"
    assert r.content[4:8] == b"ftyp"
    expected = video_bytes(aid, "play", sb.corpus.video_size(aid, "play"))
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(expected).digest()
    assert 10_000 <= len(r.content) <= 30_000
    assert requests.get(d["wmplay"]).content != r.content
    c = requests.get(d["cover"])
    assert c.headers["Content-Type"] == "image/jpeg" and c.content[:3] == b"\xff\xd8\xff"
    assert c.content == cover_bytes(aid)
    bad = requests.get(d["play"].replace("sig=", "sig=0"))
    assert bad.status_code == 403 and bad.json() == {"error": "URL expired"}
    assert sb.stats()["cdn_requests"] == 4 and sb.stats()["api_requests"] == 1
    clock.advance(301)
    r = requests.get(d["play"])
    assert r.status_code == 403 and r.json() == {"error": "URL expired"}


def test_cdn_streams_large_video():
    with SandboxServer(SandboxConfig(clock=FakeClock(), video_size=3_000_000)) as sb:
        aid = sb.corpus.post_ids_for("bob")[0]
        url = sb.corpus.detail(aid)["play"]
        h = hashlib.sha256()
        with requests.get(url, stream=True) as r:
            n = 0
            for chunk in r.iter_content(1 << 16):
                h.update(chunk)
                n += len(chunk)
        size = sb.corpus.video_size(aid, "play")
        assert n == size and h.digest() == hashlib.sha256(video_bytes(aid, "play", size)).digest()


def test_fail_next_and_error_rate(fresh):
    sb = fresh
    s = _session()
    url = sb.base_url + "/userid/"
    sb.fail_next(2, status=503, retry_after=3)
    r1, r2, r3 = (s.get(url, params={"username": "bob"}) for _ in range(3))
    assert (r1.status_code, r2.status_code, r3.status_code) == (503, 503, 200)
    assert r1.headers["Retry-After"] == "3"
    sb.faults.error_rate = 1.0
    codes = {s.get(url, params={"username": "bob"}).status_code for _ in range(20)}
    assert codes <= {500, 502, 503} and len(codes) >= 2
    sb.faults.error_rate = 0.0
    assert sb.stats()["api_requests"] == 23


def test_latency(fresh):
    import time

    fresh.faults.latency_ms = 150
    s = _session()
    t0 = time.perf_counter()
    assert s.get(fresh.base_url + "/region-list/").status_code == 200
    assert time.perf_counter() - t0 >= 0.14


def test_delete_private_publish_drift(fresh):
    sb = fresh
    s = _session()
    base = sb.base_url
    c = sb.corpus
    aid = c.post_ids_for("dana_dances")[2]
    url = post_url("dana_dances", aid)
    play = s.get(base + "/post-detail/", params={"url": url}).json()["play"]
    sb.delete_video(aid)
    r = s.get(base + "/post-detail/", params={"url": url})
    assert r.status_code == 404 and r.json() == {"error": "video not found (deleted)"}
    assert s.get(base + "/post-comments/", params={"url": url}).status_code == 404
    listed = s.get(base + "/user-posts/", params={"userid": "6800000000000000004"}).json()["videos"]
    assert aid in [v["aweme_id"] for v in listed]
    assert requests.get(play).status_code == 200  # issued before deletion: still valid until expiry
    assert sb.stats()["detail_requests_by_id"][aid] == 2

    # publish: a brand new newest post
    new = sb.publish_video("bob")
    first = s.get(base + "/user-posts/", params={"userid": "6800000000000000002"}).json()["videos"][0]
    assert first["aweme_id"] == new and new not in Corpus(seed=7, clock=lambda: NOW).all_post_ids()
    assert s.get(base + "/post-detail/", params={"url": post_url("bob", new)}).status_code == 200

    # private
    sb.make_private("fern_travel")
    info = s.get(base + "/userinfo-by-username/", params={"username": "fern_travel"}).json()
    assert info["user"]["privateAccount"] is True
    for ep in ("/user-posts/", "/user-followers/", "/user-following/"):
        r = s.get(base + ep, params={"userid": "6800000000000000006"})
        assert r.status_code == 404 and r.json() == {"error": "account is private"}
    faid = c.post_ids_for("fern_travel")[0]
    r = s.get(base + "/post-detail/", params={"url": post_url("fern_travel", faid)})
    assert r.status_code == 404 and r.json() == {"error": "video is private"}

    # drift: same page, same cursor, hasMore forever
    sb.set_drift("/user-posts/")
    p1 = s.get(base + "/user-posts/", params={"userid": "107955"}).json()
    p2 = s.get(base + "/user-posts/", params={"userid": "107955", "cursor": p1["cursor"]}).json()
    assert p1["cursor"] == p2["cursor"] == "0" and p2["hasMore"] is True
    assert [v["aweme_id"] for v in p1["videos"]] == [v["aweme_id"] for v in p2["videos"]]
    sb.set_drift(None)
    p3 = s.get(base + "/user-posts/", params={"userid": "107955"}).json()
    assert p3["cursor"] != "0"


def test_http_controls(fresh):
    sb = fresh
    base = sb.base_url
    s = requests.Session()  # no API key needed for controls
    r = s.post(
        base + "/__sandbox__/faults",
        json={"fail_next": {"n": 1, "status": 429, "retry_after": 2}, "cdn_ttl_seconds": 60, "private": ["bob"]},
    )
    assert r.status_code == 200 and sb.faults.cdn_ttl_seconds == 60
    r = _session().get(base + "/region-list/")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    new = s.post(base + "/__sandbox__/publish", json={"handle": "alice123"}).json()["aweme_id"]
    assert new in sb.corpus.post_ids_for("alice123")
    st = s.get(base + "/__sandbox__/stats").json()
    assert st["api_requests"] == 1 and st["rate_limited"] == 1 and st["by_endpoint"] == {"/region-list/": 1}
    assert s.post(base + "/__sandbox__/reset-stats").status_code == 200
    assert s.get(base + "/__sandbox__/stats").json()["api_requests"] == 0
    s.post(base + "/__sandbox__/faults", json={"drift": "/user-followers/", "delete": [new]})
    assert "/user-followers/" in sb.faults.drift and new in sb.corpus.deleted
    assert s.post(base + "/__sandbox__/faults", data="not json").status_code == 400


def test_counters_and_profiles_grow_over_time(fresh):
    sb, clock = fresh, fresh.test_clock
    s = _session()
    base = sb.base_url
    aid = sb.corpus.post_ids_for("alice123")[0]
    url = post_url("alice123", aid)
    before = s.get(base + "/post-detail/", params={"url": url}).json()
    prof0 = s.get(base + "/userinfo-by-username/", params={"username": "alice123"}).json()["stats"]
    clock.advance(3 * 86400)
    after = s.get(base + "/post-detail/", params={"url": url}).json()
    prof1 = s.get(base + "/userinfo-by-username/", params={"username": "alice123"}).json()["stats"]
    for k in ("play_count", "digg_count", "share_count", "collect_count"):
        assert after[k] >= before[k]
    assert after["play_count"] > before["play_count"]
    assert prof1["followerCount"] > prof0["followerCount"]
    assert prof1["videoCount"] > prof0["videoCount"]  # alice posts daily
    json.dumps(after)  # serialisable

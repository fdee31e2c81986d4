"""The paginators over real HTTP against the sandbox: complete walks, exact request counts, resumption, drift."""

from __future__ import annotations

from collections import Counter

import pytest

from tiklive_assets.sandbox import SandboxConfig, SandboxServer
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tikliveapi.errors import CursorStuck
from tiklive_assets.tikliveapi.pagination import CommentPages, FollowPages, Page, Paginator, VideoPages

NOW = 1756684800.0  # 2025-09-01T00:00:00Z: a corpus small enough to walk every listing to its end
KEY = "pagination-test-key"


@pytest.fixture
def sb():
    """A sandbox frozen at NOW, so the corpus the test compares against is exactly what the server serves."""
    with SandboxServer(SandboxConfig(api_key=KEY, clock=lambda: NOW)) as server:
        yield server


@pytest.fixture
def client(sb):
    c = TikLiveClient(KEY, sb.base_url, max_attempts=1)
    yield c
    c.close()


def _walk(
    sb: SandboxServer,
    client: TikLiveClient,
    paginator: Paginator,
    endpoint: str,
    cursor_param: str,
    expected_ids: list[str],
    id_key: str,
) -> list[Page]:
    """Walk to the end; check each item once, the cursor chain, and that pages == requests (server and client)."""
    pages = list(paginator.pages())
    ids = [str(item[id_key]) for page in pages for item in page.items]
    assert len(pages) >= 2, "the listing must span several pages to test pagination"
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates == []
    assert sorted(ids) == sorted(expected_ids)
    assert len(ids) == len(expected_ids)
    # each page carries the cursor that fetched it, and the next page was fetched with the previous next_cursor
    assert pages[0].cursor == "0"
    for page in pages:
        assert page.endpoint == endpoint
        assert str(page.response.params[cursor_param]) == page.cursor
    for before, after in zip(pages, pages[1:], strict=False):
        assert before.has_more is True
        assert after.cursor == before.next_cursor
    assert pages[-1].has_more is False
    stats = sb.stats()
    assert stats["by_endpoint"] == {endpoint: len(pages)}
    assert stats["by_status"] == {"200": len(pages)}
    assert client.credits.by_endpoint[endpoint] == len(pages)
    assert client.credits.total == len(pages)
    return pages


def test_user_posts_walks_every_post_once(sb, client):
    alice = sb.corpus.account("alice123")
    expected = sb.corpus.post_ids_for("alice123", NOW)
    pages = _walk(
        sb, client, VideoPages(lambda c: client.user_posts(alice.id, c)), "/user-posts/", "cursor", expected, "aweme_id"
    )
    # newest first, exactly as the corpus orders them
    assert [v["aweme_id"] for p in pages for v in p.items] == expected


def test_challenge_posts_walks_every_post_once(sb, client):
    expected = [p.aweme_id for p in sb.corpus.discoverable_posts(NOW) if "cats" in p.hashtags]
    _walk(
        sb,
        client,
        VideoPages(lambda c: client.challenge_posts("1001", c)),
        "/challenge-posts/",
        "cursor",
        expected,
        "aweme_id",
    )


def test_music_posts_walks_every_post_once(sb, client):
    expected = [p.aweme_id for p in sb.corpus.discoverable_posts(NOW) if p.music_id == "9001"]
    _walk(
        sb,
        client,
        VideoPages(lambda c: client.music_posts("9001", c, count=20)),
        "/music-posts/",
        "cursor",
        expected,
        "aweme_id",
    )


def test_search_video_walks_every_hit_once(sb, client):
    corpus = sb.corpus
    expected = []
    for post in corpus.discoverable_posts(NOW):
        author = corpus.author_of(post)
        if "cooking" in f"{post.title} {author.handle} {author.nickname}".lower():
            expected.append(post.aweme_id)
    pages = _walk(
        sb,
        client,
        VideoPages(lambda c: client.search_video("cooking", c, sort_by=2)),
        "/search-video/",
        "cursor",
        expected,
        "aweme_id",
    )
    assert pages[0].response.params["sort_by"] == 2


def _post_with_comments_and_replies(sb: SandboxServer):
    alice = sb.corpus.account("alice123")
    for post in sb.corpus.visible_posts(alice, NOW):
        comments = sb.corpus.comments(post.aweme_id, NOW)
        for comment in comments:
            replies = [r for r in comment.replies if r.ct <= NOW]
            if len(comments) > 30 and len(replies) >= 5:
                return post.aweme_id, comments, comment, replies
    raise AssertionError("the corpus has no post with >30 comments and a comment with >=5 replies")


def test_comments_walk_every_comment_once(sb, client):
    aweme_id, comments, _, _ = _post_with_comments_and_replies(sb)
    _walk(
        sb,
        client,
        CommentPages(lambda c: client.post_comments(aweme_id, "alice123", c, count=20)),
        "/post-comments/",
        "cursor",
        [c.id for c in comments],
        "id",
    )


def test_replies_walk_every_reply_once(sb, client):
    aweme_id, _, parent, replies = _post_with_comments_and_replies(sb)
    pages = _walk(
        sb,
        client,
        CommentPages(lambda c: client.post_comment_replies(parent.id, aweme_id, "alice123", c, count=2)),
        "/post-comment-replies/",
        "cursor",
        [r.id for r in replies],
        "id",
    )
    assert {item["reply_to_id"] for p in pages for item in p.items} == {parent.id}


def test_followers_walk_every_follower_once(sb, client):
    alice = sb.corpus.account("alice123")
    _, items = sb.corpus.follow_list(alice, "followers", NOW)
    pages = _walk(
        sb,
        client,
        FollowPages(lambda t: client.user_followers(alice.id, t)),
        "/user-followers/",
        "time",
        [i["id"] for i in items],
        "id",
    )
    assert pages[1].cursor == str(pages[0].response.json()["time"])  # the `time` envelope, not `cursor`


def test_following_walk_every_followed_account_once(sb, client):
    alice = sb.corpus.account("alice123")
    _, items = sb.corpus.follow_list(alice, "following", NOW)
    _walk(
        sb,
        client,
        FollowPages.following(lambda t: client.user_following(alice.id, t, count=20)),
        "/user-following/",
        "time",
        [i["id"] for i in items],
        "id",
    )


def test_following_without_the_followings_key_sees_nothing(sb, client):
    """Guard against the wire format's trap: /user-following/ puts its items under `followings`."""
    bob = sb.corpus.account("bob")
    assert len(sb.corpus.follow_list(bob, "following", NOW)[0]) > 50
    wrong = list(FollowPages(lambda t: client.user_following(bob.id, t), max_pages=1).items())
    right = list(FollowPages.following(lambda t: client.user_following(bob.id, t), max_pages=1).items())
    assert wrong == []
    assert len(right) == 50


@pytest.mark.parametrize("kind", ["video", "follow"])
def test_resume_from_a_page_cursor_continues_without_repeats(sb, client, kind):
    alice = sb.corpus.account("alice123")
    if kind == "video":

        def make(**kw):
            return VideoPages(lambda c: client.user_posts(alice.id, c, count=10), **kw)

        id_key, endpoint = "aweme_id", "/user-posts/"
    else:

        def make(**kw):
            return FollowPages(lambda t: client.user_followers(alice.id, t, count=20), **kw)

        id_key, endpoint = "id", "/user-followers/"
    full = list(make().pages())
    assert len(full) >= 4
    sb.reset_stats()
    k = 2
    resumed = list(make(start=full[k].cursor).pages())
    # exactly the remaining pages, same cursors, same items; no request for the pages before k
    assert [p.cursor for p in resumed] == [p.cursor for p in full[k:]]
    assert [p.items for p in resumed] == [p.items for p in full[k:]]
    assert sb.stats()["by_endpoint"] == {endpoint: len(full) - k}
    before = {str(i[id_key]) for p in full[:k] for i in p.items}
    after = [str(i[id_key]) for p in resumed for i in p.items]
    assert before.isdisjoint(after)
    assert len(after) == len(set(after))
    assert len(before) + len(after) == sum(len(p.items) for p in full)
    # resuming after a page (from its next_cursor) starts at the page that followed it
    sb.reset_stats()
    after_k = next(make(start=full[k].next_cursor).pages())
    assert after_k.cursor == full[k + 1].cursor
    assert after_k.items == full[k + 1].items
    assert sb.stats()["api_requests"] == 1


def test_max_pages_stops_after_exactly_that_many_requests(sb, client):
    alice = sb.corpus.account("alice123")
    pages = list(VideoPages(lambda c: client.user_posts(alice.id, c, count=5), max_pages=3).pages())
    assert len(pages) == 3
    assert pages[-1].has_more is True
    assert sb.stats()["by_endpoint"] == {"/user-posts/": 3}


def test_drift_on_user_posts_raises_cursor_stuck_at_once(sb, client):
    alice = sb.corpus.account("alice123")
    sb.set_drift("/user-posts/")
    walked = []
    with pytest.raises(CursorStuck) as info:
        for page in VideoPages(lambda c: client.user_posts(alice.id, c)).pages():
            walked.append(page)
    assert len(walked) <= 2
    requests_sent = sb.stats()["by_endpoint"]["/user-posts/"]
    assert requests_sent <= 2
    assert requests_sent == len(walked)
    assert info.value.endpoint == "/user-posts/"
    assert info.value.cursor == "0"
    assert "/user-posts/" in str(info.value)
    assert "'0'" in str(info.value)


def test_drift_starting_mid_walk_stops_within_two_pages(sb, client):
    alice = sb.corpus.account("alice123")
    pages = VideoPages(lambda c: client.user_posts(alice.id, c, count=10)).pages()
    first = next(pages)
    sb.set_drift("/user-posts/")
    with pytest.raises(CursorStuck) as info:
        for _ in pages:
            pass
    assert sb.stats()["by_endpoint"]["/user-posts/"] == 2
    assert info.value.endpoint == "/user-posts/"
    assert info.value.cursor == first.next_cursor
    assert first.next_cursor in str(info.value)


def test_drift_on_followers_time_raises_cursor_stuck(sb, client):
    alice = sb.corpus.account("alice123")
    sb.set_drift("/user-followers/")
    with pytest.raises(CursorStuck) as info:
        list(FollowPages(lambda t: client.user_followers(alice.id, t)).pages())
    assert sb.stats()["by_endpoint"]["/user-followers/"] <= 2
    assert info.value.endpoint == "/user-followers/"
    assert "time did not advance" in str(info.value)


def test_page_guard_stops_a_long_listing_after_exactly_guard_pages(sb, client):
    alice = sb.corpus.account("alice123")
    walked = []
    with pytest.raises(CursorStuck) as info:
        for page in VideoPages(lambda c: client.user_posts(alice.id, c, count=5), page_guard=3).pages():
            walked.append(page)
    assert len(walked) == 3
    assert sb.stats()["by_endpoint"] == {"/user-posts/": 3}
    assert client.credits.total == 3
    assert info.value.endpoint == "/user-posts/"
    assert info.value.cursor == walked[-1].next_cursor
    assert "more than 3 pages" in str(info.value)


def test_page_guard_equal_to_the_listing_length_does_not_trip(sb, client):
    alice = sb.corpus.account("alice123")
    full = list(VideoPages(lambda c: client.user_posts(alice.id, c, count=30)).pages())
    again = list(VideoPages(lambda c: client.user_posts(alice.id, c, count=30), page_guard=len(full)).pages())
    assert [p.cursor for p in again] == [p.cursor for p in full]


def test_a_comment_page_served_twice_raises_cursor_stuck(sb, client):
    """A server that ignores the cursor serves page one again: caught on the second page, not looped on."""
    aweme_id, _, _, _ = _post_with_comments_and_replies(sb)
    walked = []
    with pytest.raises(CursorStuck) as info:
        for page in CommentPages(lambda c: client.post_comments(aweme_id, "alice123", 0, count=20)).pages():
            walked.append(page)
    assert len(walked) == 1
    assert sb.stats()["by_endpoint"] == {"/post-comments/": 2}
    assert info.value.endpoint == "/post-comments/"
    assert "the same page came back twice" in str(info.value)


def test_a_page_made_only_of_items_already_returned_is_drift_even_with_a_new_cursor():
    from datetime import UTC, datetime

    from tiklive_assets.tikliveapi.client import ApiResponse
    from tiklive_assets.tikliveapi.errors import CursorStuck
    from tiklive_assets.tikliveapi.pagination import VideoPages

    pages = {
        "0": {"videos": [{"aweme_id": "1"}, {"aweme_id": "2"}], "cursor": "10", "hasMore": True},
        "10": {"videos": [{"aweme_id": "2"}, {"aweme_id": "1"}], "cursor": "20", "hasMore": True},  # reshuffled
    }

    def fetch(cursor: str) -> ApiResponse:
        import json

        return ApiResponse(
            "/user-posts/", {"cursor": cursor}, 200, json.dumps(pages[cursor]).encode(), datetime.now(UTC)
        )

    walk = VideoPages(fetch).pages()
    assert [item["aweme_id"] for item in next(walk).items] == ["1", "2"]
    with pytest.raises(CursorStuck, match="already returned"):
        next(walk)

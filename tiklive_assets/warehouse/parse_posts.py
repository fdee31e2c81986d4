"""Posts: a /post-detail/ answer, and the items of every listing (a user's posts, trending, search, a sound's or
a hashtag's posts) -> the ``posts``, ``post_metrics_history`` and ``music`` rows, and the author's ``users`` row.

Every wire variant of a post is read in one pass (:func:`post`): its id as ``aweme_id``, ``video_id`` or ``id``;
the author as an object or a handle; counters at the top level, in ``stats`` or in ``statsV2``; the sound as
``music_info`` or TikTok web's ``music`` object. A detail outranks a listing item of the same post.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiklive_assets.storage.keys import parse_page_slug
from tiklive_assets.tikliveapi.endpoints import endpoint_names
from tiklive_assets.tolerant import LISTING_ITEM_KEYS, as_id, first_present, image_list, post_id, stats_object

from .archive_index import WALK_KEYS, item_role, node_rows
from .raw import ShapeError, a_list

if TYPE_CHECKING:
    from .parse import DayParser

DETAIL, LISTING = 2, 1  # a post's rank: its /post-detail/ answer over a listing item
_COUNTERS = ("play_count", "digg_count", "comment_count", "share_count", "download_count", "collect_count")
_OWNED_LISTINGS = endpoint_names(parse="post_listing", subject="user_id")  # the slug names the account the posts are by


def post_detail(p: DayParser, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
    if not post(p, body, key, captured, DETAIL, endpoint, None):
        raise ShapeError("no post id (aweme_id, video_id or id)")


def listing(p: DayParser, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
    items = first_present(body, *LISTING_ITEM_KEYS)
    if items is None:
        return  # an empty page
    owner = None
    if endpoint in _OWNED_LISTINGS:  # the slug names the account: the author of items that carry no author id
        page = parse_page_slug(slug)
        owner = page.entity if page and page.entity.isdigit() else None
    role = item_role(endpoint)  # the items' role in the archive index (their dicts are counted in p.dicts)
    for item in a_list(items, "the items are"):
        if type(item) is not dict:  # noqa: E721
            p.items_without_id += 1
            continue
        p.dicts += 1
        if not item.keys().isdisjoint(WALK_KEYS):
            node_rows(item, key, role, "", p.found.append)
        if not post(p, item, key, captured, LISTING, endpoint, owner):
            p.items_without_id += 1


# the per-post hot path of every replay (every wire variant of a post in one pass), kept inline for speed: the
# common, well-typed case is a few dict lookups and type checks, the tolerant readers are called only off it
def post(  # noqa: C901
    p: DayParser,
    item: dict,
    key: str,
    captured: int,
    priority: int,
    source: str,
    owner: str | None,
) -> bool:
    get = item.get
    aweme_id = get("aweme_id")
    if not (type(aweme_id) is str and aweme_id.isdigit() and aweme_id.isascii()):  # noqa: E721
        aweme_id = post_id(item)
        if aweme_id is None:
            return False
    author = get("author")
    nickname = None
    if type(author) is dict:  # noqa: E721
        p.dicts += 1  # the archive index: the author of the post (the caller indexed the post's own dict)
        node_rows(author, key, "author", aweme_id, p.found.append)
        author_id = author.get("id")
        if not (type(author_id) is str and author_id.isdigit() and author_id.isascii()):  # noqa: E721
            author_id = p.tally.id(author_id, "author.id")
        handle = author.get("unique_id")
        if handle is None:
            handle = author.get("uniqueId")
        if type(handle) is not str:  # noqa: E721
            handle = p.read_text(handle, "author.unique_id")
        nickname = author.get("nickname")
        if type(nickname) is not str:  # noqa: E721
            nickname = p.read_text(nickname, "author.nickname")
    else:
        author_id = None
        handle = author if type(author) is str else p.read_text(author, "author")  # noqa: E721 - web: the handle
    if author_id is None:
        author_id = as_id(get("author_id")) or owner
    play, digg, comment, share = get("play_count"), get("digg_count"), get("comment_count"), get("share_count")
    download, collect = get("download_count"), get("collect_count")
    if play is None and digg is None and comment is None and share is None:
        stats = stats_object(item)  # TikTok web: counters in stats (ints) or statsV2 (strings)
        if stats is not None:
            play, digg, comment = stats.get("playCount"), stats.get("diggCount"), stats.get("commentCount")
            share, collect = stats.get("shareCount"), stats.get("collectCount")
    if not (  # the common case: all of them integers
        type(play) is int  # noqa: E721
        and type(digg) is int  # noqa: E721
        and type(comment) is int  # noqa: E721
        and type(share) is int  # noqa: E721
        and type(download) is int  # noqa: E721
        and type(collect) is int  # noqa: E721
    ):
        play, digg, comment, share, download, collect = (
            value if type(value) is int else p.read_int(value, name)  # noqa: E721
            for value, name in zip((play, digg, comment, share, download, collect), _COUNTERS, strict=True)
        )
    music = get("music_info")
    if type(music) is not dict:  # noqa: E721
        music = get("music")  # TikTok web: an object; TikLiveAPI: the sound's URL (or "")
        music = music if type(music) is dict else None  # noqa: E721
    if music is not None:
        p.dicts += 1
        if not music.keys().isdisjoint(WALK_KEYS):
            node_rows(music, key, "user", "", p.found.append)
    rank = (priority, captured, key)
    rows = p.rows
    posts = rows["posts"]
    current = posts.get(aweme_id)
    if current is None or rank > current[0]:
        title = get("title")
        if type(title) is not str:  # noqa: E721
            title = p.read_text(title if title is not None else get("desc"), "title")
        elif "\x00" in title:
            title = title.replace("\x00", "")
        region = get("region")
        if type(region) is not str:  # noqa: E721
            region = p.read_text(region, "region")
        duration = get("duration")
        if type(duration) is not int:  # noqa: E721
            if duration is None and type(get("video")) is dict:  # noqa: E721
                duration = item["video"].get("duration")
            duration = duration if type(duration) is int else p.read_int(duration, "duration")  # noqa: E721
        created = get("create_time")
        if type(created) is not int or created >= 10**11:  # noqa: E721
            created = p.read_time(created if created is not None else get("createTime"), "create_time")
        music_id = None
        if music is not None:
            music_id = music.get("id")
            if not (type(music_id) is str and music_id.isdigit() and music_id.isascii()):  # noqa: E721
                music_id = p.tally.id(music_id, "music_info.id")
        images = get("images")
        if images is None:
            images = image_list(item)  # TikTok's imagePost / image_post_info, or a video post
        elif type(images) is not list or not images:  # noqa: E721
            images = None
        # in the posts table's column order; storage_key, bytes and archived_at (None here) are filled in by
        # tables() for the few posts whose media the day archived
        day = p.day
        photos = 0 if images is None else len(images)
        row = (
            aweme_id,
            author_id,
            handle,
            title,
            region,
            duration,
            created,
            play,
            digg,
            comment,
            share,
            music_id,
            None,
            None,
            None,
            day,
            "video" if images is None else "photo",
            photos,
        )
        posts[aweme_id] = (rank, row)
        if music is not None and music_id is not None:
            _sound(p, rows["music"], music, music_id, captured, key)
    else:
        day = p.day
    history = rows["post_metrics_history"]
    metrics_key = (aweme_id, captured)
    metrics_rank = (priority, key)
    current = history.get(metrics_key)
    if current is None or metrics_rank > current[0]:
        history[metrics_key] = (
            metrics_rank,
            (aweme_id, captured, play, digg, comment, share, download, collect, source, key, day),
        )
    if author_id is not None:
        users = rows["users"]
        current = users.get(author_id)
        if current is None or rank > current[0]:
            users[author_id] = (rank, (author_id, handle, nickname, None, None, None, None, "author", captured, day))
    return True


def _sound(p: DayParser, sounds: dict, music: dict, music_id: str, captured: int, key: str) -> None:
    """The post's sound, its latest description of the day kept (its text is read only when it is kept)."""
    rank = (captured, key)
    current = sounds.get(music_id)
    if current is None or rank > current[0]:
        author = music.get("author") if "author" in music else music.get("authorName")
        title = music.get("title")
        if type(title) is not str or "\x00" in title:  # noqa: E721
            title = p.read_text(title, "music_info.title")
        if type(author) is not str or "\x00" in author:  # noqa: E721
            author = p.read_text(author, "music_info.author")
        sounds[music_id] = (rank, (music_id, title, author, p.day))

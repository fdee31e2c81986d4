"""The sandbox's wire objects: posts, profiles, comments and hashtags rendered as TikLiveAPI returns them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .world import HASHTAGS, MUSIC, Account, Comment, Post, _h


class WireObjects:
    """The JSON objects of the API's responses at a given ``now``.

    Mixed into Corpus, whose model (posts, engagement, comments, follow lists) and signed CDN URLs it reads.
    """

    if TYPE_CHECKING:  # what it reads, provided by Corpus (the model) and SignedCdn (the URLs)
        seed: int
        private: set[str]
        _by_index: dict[int, Account]

        def now(self) -> float: ...
        def _day(self, now: float) -> int: ...
        def _visible(self, a: Account, now: float | None = None) -> list[Post]: ...
        def visible_posts(self, handle_or_account: str | Account, now: float | None = None) -> list[Post]: ...
        def find_post(self, aweme_id: str | int) -> Post | None: ...
        def is_visible(self, p: Post, now: float | None = None) -> bool: ...
        def play_count(self, p: Post, now: float | None = None) -> int: ...
        def comment_total(self, p: Post, now: float | None = None) -> int: ...
        def _follower_count(self, handle: str, day: int) -> int: ...
        def follow_list(self, a: Account, kind: str, now: float | None = None) -> tuple[list[int], list[dict]]: ...
        def cdn_url(self, variant: str, key: str, ext: str, now: float | None = None) -> str: ...

    def counters(self, p: Post, now: float | None = None) -> dict[str, int]:
        now = self.now() if now is None else now
        play = self.play_count(p, now)
        return {
            "play_count": play,
            "digg_count": int(play * p.r_digg),
            "comment_count": self.comment_total(p, now),
            "share_count": int(play * p.r_share),
            "download_count": int(play * p.r_download),
            "collect_count": int(play * p.r_collect),
        }

    def _author_obj(self, a: Account, now: float) -> dict:
        return {
            "id": a.id,
            "unique_id": a.handle,
            "nickname": a.nickname,
            "avatar": self.cdn_url("avatar", a.id, "jpg", now),
        }

    def _music_info(self, music_id: str) -> dict:
        title, author = MUSIC[music_id]
        return {"id": music_id, "title": title, "author": author}

    def listing_item(self, p: Post, now: float | None = None) -> dict:
        now = self.now() if now is None else now
        a = self._by_index[p.author_index]
        c = self.counters(p, now)
        return {
            "aweme_id": p.aweme_id,
            "region": p.region,
            "title": p.title,
            "cover": self.cdn_url("cover", p.aweme_id, "jpg", now),
            "play": self.cdn_url("play", p.aweme_id, "mp4", now),
            "wmplay": self.cdn_url("wmplay", p.aweme_id, "mp4", now),
            "play_count": c["play_count"],
            "digg_count": c["digg_count"],
            "comment_count": c["comment_count"],
            "share_count": c["share_count"],
            "create_time": p.create_time,
            "duration": p.duration,
            "author": self._author_obj(a, now),
            "music_info": self._music_info(p.music_id),
        }

    def detail_item(self, p: Post, now: float | None = None) -> dict:
        now = self.now() if now is None else now
        a = self._by_index[p.author_index]
        c = self.counters(p, now)
        d: dict[str, Any] = {
            "aweme_id": p.aweme_id,
            "region": p.region,
            "title": p.title,
            "play": self.cdn_url("play", p.aweme_id, "mp4", now),
            "wmplay": self.cdn_url("wmplay", p.aweme_id, "mp4", now),
        }
        if p.has_hd:
            d["hdplay"] = self.cdn_url("hdplay", p.aweme_id, "mp4", now)
        d.update(
            {
                "cover": self.cdn_url("cover", p.aweme_id, "jpg", now),
                "origin_cover": self.cdn_url("origin_cover", p.aweme_id, "jpg", now),
                "ai_dynamic_cover": self.cdn_url("ai_dynamic_cover", p.aweme_id, "jpg", now),
                "music": self.cdn_url("music", p.music_id, "mp3", now),
                "music_info": self._music_info(p.music_id),
                "author": self._author_obj(a, now),
                **c,
                "create_time": p.create_time,
                "duration": p.duration,
            }
        )
        return d

    def posts_for(self, handle: str, now: float | None = None) -> list[dict]:
        """Visible posts of ``handle`` as listing items, newest first."""
        now = self.now() if now is None else now
        return [self.listing_item(p, now) for p in self.visible_posts(handle, now)]

    def detail(self, aweme_id: str | int, now: float | None = None) -> dict | None:
        """The ``/post-detail/`` object of a visible video (ignores deletion/privacy), else None."""
        now = self.now() if now is None else now
        p = self.find_post(aweme_id)
        if p is None or not self.is_visible(p, now):
            return None
        return self.detail_item(p, now)

    def profile(self, a: Account, now: float | None = None) -> dict:
        now = self.now() if now is None else now
        day = self._day(now)
        posts = self._visible(a, now)
        hb = _h(self.seed, "hearts", a.handle)
        return {
            "user": {
                "id": a.id,
                "uniqueId": a.handle,
                "nickname": a.nickname,
                "avatarLarger": self.cdn_url("avatar", a.id, "jpg", now),
                "secUid": a.sec_uid,
                "verified": a.verified,
                "privateAccount": a.handle in self.private,
                "bioLink": f"https://example.com/{a.handle}" if hb % 3 else "",
            },
            "stats": {
                "followerCount": self._follower_count(a.handle, day),
                "followingCount": len(self.follow_list(a, "following", now)[0]),
                "videoCount": len(posts),
                "heartCount": (hb % 10**6) * (100 if a.verified else 1) + max(0, day) * (1 + hb % 997),
                "diggCount": hb % 5000 + max(0, day) * (hb % 7),
            },
        }

    def comment_item(self, c: Comment, aweme_id: str, now: float, parent: Comment | None = None) -> dict:
        d: dict[str, Any] = {
            "id": c.id,
            "text": c.text,
            "digg_count": c.digg_count,
            "reply_total": sum(1 for r in c.replies if r.ct <= now),
            "create_time": c.ct,
            "aweme_id": aweme_id,
            "user": {"id": c.user[0], "unique_id": c.user[1], "nickname": c.user[2]},
        }
        if parent is not None:
            d["reply_to_id"] = parent.id
        return d

    def challenge_info(self, challenge_id: str, now: float | None = None) -> dict:
        now = self.now() if now is None else now
        day = max(0, self._day(now))
        hv = _h(self.seed, "challenge", challenge_id)
        return {
            "id": challenge_id,
            "cha_name": HASHTAGS[challenge_id],
            "view_count": 10**8 + hv % 10**9 + day * (50_000 + hv % 50_000),
            "user_count": 10**5 + hv % 10**6 + day * (100 + hv % 400),
        }

"""Deterministic synthetic TikTok corpus served by the sandbox: the model of its accounts, posts, comments and
follow graph.

Everything here is a pure function of ``(seed, clock time)`` plus three explicit overlays that the
sandbox controls mutate (``deleted`` ids, ``private`` handles, ``published`` posts).  Randomness comes
from ``random.Random`` instances seeded with stable per-entity hashes (blake2b of the seed and the
entity's key), never from Python's ``hash()``, so two processes with the same seed agree byte for byte.

The world's fixed facts and entity types are in ``world``, the CDN's bytes and signed URLs in ``media``, and the
wire objects of the responses in ``render``; ``Corpus`` combines them.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

# Imported from here by the package, the sandbox server and tests (the corpus was one module before).
from .media import CHUNK, SignedCdn, cover_bytes, iter_video_bytes, music_bytes, video_bytes  # noqa: F401
from .render import WireObjects
from .world import (  # noqa: F401
    _COMMENT_WORDS,
    _FIXED_ACCOUNTS,
    _WORDS,
    CREATOR_BASE_INDEX,
    FOLLOW_START,
    HASHTAG_IDS,
    HASHTAGS,
    MUSIC,
    N_CREATORS,
    REGION_CODES,
    REGIONS,
    START,
    Account,
    Comment,
    Post,
    _h,
    _rng,
    _sec_uid,
    _synthetic_user,
    post_url,
)


@dataclass
class _Schedule:
    posts: list[Post] = field(default_factory=list)
    ct_ms: list[int] = field(default_factory=list)
    horizon_ms: int = 0


class Corpus(WireObjects, SignedCdn):
    """The synthetic world: accounts, their posts, comments and follow graph, with its wire objects and CDN.

    ``now`` arguments default to ``clock()``.  ``base_url``, ``secret`` and ``ttl`` are used to sign CDN
    URLs; the sandbox server sets them.
    """

    def __init__(
        self,
        seed: int = 7,
        clock: Callable[[], float] = time.time,
        accounts: int = 6,
        video_size: int = 50_000,
        base_url: str = "http://127.0.0.1",
        secret: bytes | None = None,
        ttl: Callable[[], float] | float = 300.0,
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.video_size_base = video_size
        self.base_url = base_url
        self.secret = secret if secret is not None else hashlib.sha256(f"sandbox-secret:{seed}".encode()).digest()
        if callable(ttl):
            self._ttl = ttl
        else:
            fixed_ttl = float(ttl)
            self._ttl = lambda: fixed_ttl
        self.hashtags: dict[str, str] = dict(HASHTAGS)
        self.music_ids: list[str] = list(MUSIC)
        self.regions = [dict(r) for r in REGIONS]
        # overlays mutated by the sandbox controls
        self.deleted: set[str] = set()
        self.private: set[str] = set()  # handles
        self._published: dict[int, list[Post]] = {}
        self._lock = threading.RLock()
        self._sched: dict[int, _Schedule] = {}

        self.accounts: list[Account] = []
        for i in range(accounts):
            if i < len(_FIXED_ACCOUNTS):
                handle, uid, nick, region, verified, fav = _FIXED_ACCOUNTS[i]
            else:
                n = i + 1
                handle, uid, nick = f"user{n:03d}", f"68{n:017d}", f"User {n}"
                region, verified = REGION_CODES[n % len(REGION_CODES)], False
                fav = list(HASHTAGS.values())[n % len(HASHTAGS)]
            period = 1 + _h(seed, "period", handle) % 4
            self.accounts.append(
                Account(handle, uid, nick, region, verified, fav, i + 1, True, period, _sec_uid(handle))
            )
        self.creators: list[Account] = []
        for j in range(1, N_CREATORS + 1):
            handle = f"creator{j:02d}"
            fav = list(HASHTAGS.values())[j % len(HASHTAGS)]
            period = 2 + _h(seed, "period", handle) % 5
            self.creators.append(
                Account(
                    handle,
                    f"69{j:017d}",
                    f"Creator {j}",
                    REGION_CODES[j % len(REGION_CODES)],
                    False,
                    fav,
                    CREATOR_BASE_INDEX + j,
                    False,
                    period,
                    _sec_uid(handle),
                )
            )
        self._all = self.accounts + self.creators
        self._by_handle = {a.handle: a for a in self._all}
        self._by_id = {a.id: a for a in self._all}
        self._by_index = {a.index: a for a in self._all}

    # ------------------------------------------------------------------ lookups

    def now(self) -> float:
        return float(self.clock())

    def account(self, handle: str) -> Account | None:
        return self._by_handle.get(handle.lstrip("@"))

    def account_by_id(self, user_id: str) -> Account | None:
        return self._by_id.get(str(user_id))

    def all_authors(self) -> list[Account]:
        return list(self._all)

    # ------------------------------------------------------------------ schedule

    def _make_post(self, a: Account, k: int) -> Post:
        period = a.period_days * 86400
        r = _rng(self.seed, "post", a.index, k)
        ct = START + k * period + r.randrange(period)
        ms = r.randrange(1000)
        low = r.randrange(1 << 19)  # bit 19 clear: scheduled post
        aid = (ct << 32) | (a.index << 20) | low
        return self._post_from_rng(a, r, str(aid), ct * 1000 + ms, published=False)

    def _post_from_rng(self, a: Account, r: random.Random, aweme_id: str, ct_ms: int, published: bool) -> Post:
        tags = list(HASHTAGS.values())
        chosen: list[str] = []
        if a.favourite and r.random() < 0.6:
            chosen.append(a.favourite)
        for _ in range(r.randint(1, 2)):
            t = r.choice(tags)
            if t not in chosen:
                chosen.append(t)
        title = r.choice(_WORDS) + " " + " ".join("#" + t for t in chosen)
        play_final = int(10 ** r.uniform(2.5, 6.0) * (40 if a.verified else 1))
        region = a.region if r.random() < 0.8 else r.choice(REGION_CODES)
        return Post(
            aweme_id=aweme_id,
            author_index=a.index,
            ct_ms=ct_ms,
            title=title,
            hashtags=tuple(chosen),
            music_id=r.choice(list(MUSIC)),
            region=region,
            duration=r.randint(5, 180),
            play_final=play_final,
            tau_hours=r.uniform(12, 96),
            tail_per_hour=max(1, play_final // 20000),
            r_digg=r.uniform(0.02, 0.15),
            r_share=r.uniform(0.001, 0.02),
            r_download=r.uniform(0.0005, 0.01),
            r_collect=r.uniform(0.002, 0.03),
            has_hd=_h(self.seed, "hd", aweme_id) % 10 < 7,
            published=published,
        )

    def _schedule(self, a: Account, now_ms: int) -> _Schedule:
        s = self._sched.get(a.index)
        if s is not None and s.horizon_ms > now_ms:
            return s
        with self._lock:
            s = self._sched.get(a.index)
            if s is None:
                s = _Schedule()
            if s.horizon_ms <= now_ms:
                target = now_ms + 30 * 86400 * 1000
                posts, cts = list(s.posts), list(s.ct_ms)
                k = len(posts)
                while True:
                    p = self._make_post(a, k)
                    posts.append(p)
                    cts.append(p.ct_ms)
                    k += 1
                    if p.ct_ms > target:
                        break
                s = _Schedule(posts, cts, target)
                self._sched[a.index] = s
            return s

    def _visible(self, a: Account, now: float | None = None) -> list[Post]:
        """Visible posts of an author, newest first (deleted ones included: listings still show them)."""
        now_ms = int((self.now() if now is None else now) * 1000)
        s = self._schedule(a, now_ms)
        n = bisect.bisect_right(s.ct_ms, now_ms)
        out = s.posts[:n]
        pub = self._published.get(a.index)
        if pub:
            out = out + [p for p in pub if p.ct_ms <= now_ms]
            out.sort(key=lambda p: (p.ct_ms, p.aweme_id))
        out.reverse()
        return out

    def visible_posts(self, handle_or_account: str | Account, now: float | None = None) -> list[Post]:
        a = handle_or_account if isinstance(handle_or_account, Account) else self.account(handle_or_account)
        if a is None:
            raise KeyError(handle_or_account)
        return self._visible(a, now)

    def find_post(self, aweme_id: str | int) -> Post | None:
        """Decode an aweme_id back to its post (visible or not); None if it never exists."""
        try:
            n = int(aweme_id)
        except (TypeError, ValueError):
            return None
        ct, idx, low = n >> 32, (n >> 20) & 0xFFF, n & 0xFFFFF
        a = self._by_index.get(idx)
        if a is None or ct < START:
            return None
        if low & (1 << 19):
            for p in self._published.get(idx, ()):
                if p.aweme_id == str(n):
                    return p
            return None
        k = (ct - START) // (a.period_days * 86400)
        p = self._make_post(a, k)
        return p if p.aweme_id == str(n) else None

    def is_visible(self, p: Post, now: float | None = None) -> bool:
        return p.ct_ms <= int((self.now() if now is None else now) * 1000)

    def publish(self, handle: str, now: float | None = None) -> Post:
        a = self.account(handle)
        if a is None:
            raise KeyError(f"unknown handle {handle!r}")
        now = self.now() if now is None else now
        with self._lock:
            pubs = self._published.setdefault(a.index, [])
            ct_ms = int(now * 1000)
            taken = {p.ct_ms for p in self._visible(a, now)} | {p.ct_ms for p in pubs}
            while ct_ms in taken:  # keep create times unique per author (cursor is "strictly older")
                ct_ms -= 1
            ct = ct_ms // 1000
            n = len(pubs)
            while True:
                low = (1 << 19) | (_h(self.seed, "pub", a.index, n) & ((1 << 19) - 1))
                aid = str((ct << 32) | (a.index << 20) | low)
                if all(p.aweme_id != aid for p in pubs):
                    break
                n += 1
            r = _rng(self.seed, "pubpost", aid)
            p = self._post_from_rng(a, r, aid, ct_ms, published=True)
            pubs.append(p)
            return p

    # ------------------------------------------------------------------ engagement

    def play_count(self, p: Post, now: float | None = None) -> int:
        """Monotonic in the whole hours elapsed since create_time."""
        now = self.now() if now is None else now
        hours = max(0, int((now - p.create_time) // 3600))
        return int(p.play_final * (1.0 - math.exp(-hours / p.tau_hours))) + hours * p.tail_per_hour

    def digg_count(self, p: Post, now: float | None = None) -> int:
        return int(self.play_count(p, now) * p.r_digg)

    # ------------------------------------------------------------------ posts by author and for discovery

    def author_of(self, p: Post) -> Account:
        return self._by_index[p.author_index]

    def post_ids_for(self, handle: str, now: float | None = None) -> list[str]:
        return [p.aweme_id for p in self.visible_posts(handle, now)]

    def all_post_ids(self, now: float | None = None, tracked_only: bool = False) -> list[str]:
        """Ids of every visible post (tracked accounts and, unless tracked_only, the extra creators)."""
        authors = self.accounts if tracked_only else self._all
        return [p.aweme_id for a in authors for p in self._visible(a, now)]

    def discoverable_posts(self, now: float | None = None) -> list[Post]:
        """All visible posts of non-private authors, newest first (for hashtag / music / search)."""
        out = [p for a in self._all if a.handle not in self.private for p in self._visible(a, now)]
        out.sort(key=lambda p: (p.ct_ms, p.aweme_id), reverse=True)
        return out

    # ------------------------------------------------------------------ followers (profiles)

    def _day(self, now: float) -> int:
        return int((now - START) // 86400)

    @lru_cache(maxsize=4096)  # noqa: B019 - a corpus lives as long as its sandbox; the bounded cache is the point
    def _follower_count(self, handle: str, day: int) -> int:
        a = self._by_handle[handle]
        base = 10 ** (6 if a.verified else 3) * (1 + _h(self.seed, "fbase", handle) % 500)
        rate = (2000 if a.verified else 20) * (1 + _h(self.seed, "frate", handle) % 5)
        total = base
        for d in range(max(0, day) + 1):
            v = _h(self.seed, "fday", handle, d)
            if v % 10:  # grows on ~90% of days
                total += 1 + (v >> 8) % rate
        return total

    # ------------------------------------------------------------------ follow graph

    @lru_cache(maxsize=256)  # noqa: B019 - a corpus lives as long as its sandbox; the bounded cache is the point
    def _follow_all(self, handle: str, kind: str) -> tuple[tuple[int, dict], ...]:
        r = _rng(self.seed, kind, handle)
        n = r.randint(60, 150) if kind == "followers" else r.randint(30, 120)
        times = sorted(r.sample(range(365 * 86400), n), reverse=True)
        out = []
        for t in times:
            u = r.getrandbits(62)
            uid, uh, nick = _synthetic_user(u)
            out.append(
                (
                    FOLLOW_START + t,
                    {
                        "id": uid,
                        "unique_id": uh,
                        "sec_uid": _sec_uid(uh),
                        "nickname": nick,
                        "follower_count": int(10 ** r.uniform(0, 5)),
                        "aweme_count": r.randint(0, 400),
                    },
                )
            )
        return tuple(out)

    def follow_list(self, a: Account, kind: str, now: float | None = None) -> tuple[list[int], list[dict]]:
        """(follow times newest first, items) visible at ``now``; kind is "followers" or "following"."""
        now = self.now() if now is None else now
        rows = [row for row in self._follow_all(a.handle, kind) if row[0] <= now]
        return [t for t, _ in rows], [dict(i) for _, i in rows]

    # ------------------------------------------------------------------ comments

    @lru_cache(maxsize=4096)  # noqa: B019 - a corpus lives as long as its sandbox; the bounded cache is the point
    def _comments_all(self, aweme_id: str) -> tuple[Comment, ...]:
        p = self.find_post(aweme_id)
        if p is None:
            return ()
        r = _rng(self.seed, "comments", aweme_id)
        n = 0 if r.random() < 0.15 else 1 + int(r.random() ** 1.5 * 80)
        out = []
        for _ in range(n):
            ct = p.create_time + 1 + min(int(r.expovariate(1 / 21600)), 30 * 86400)
            cid = str((ct << 32) | r.getrandbits(32))
            replies = []
            if r.random() < 0.25:
                for _ in range(r.randint(1, 8)):
                    rct = ct + 1 + min(int(r.expovariate(1 / 7200)), 10 * 86400)
                    replies.append(
                        Comment(
                            str((rct << 32) | r.getrandbits(32)),
                            rct,
                            r.choice(_COMMENT_WORDS),
                            int(10 ** r.uniform(0, 2.5)),
                            _synthetic_user(r.getrandbits(62)),
                        )
                    )
                replies.sort(key=lambda c: (c.ct, c.id))
            out.append(
                Comment(
                    cid,
                    ct,
                    r.choice(_COMMENT_WORDS),
                    int(10 ** r.uniform(0, 4)),
                    _synthetic_user(r.getrandbits(62)),
                    tuple(replies),
                )
            )
        out.sort(key=lambda c: (c.ct, c.id))  # oldest first: new comments append, offsets stay stable
        return tuple(out)

    def comments(self, aweme_id: str, now: float | None = None) -> list[Comment]:
        now = self.now() if now is None else now
        return [c for c in self._comments_all(str(aweme_id)) if c.ct <= now]

    def comment_total(self, p: Post, now: float | None = None) -> int:
        now = self.now() if now is None else now
        return sum(1 + sum(1 for r in c.replies if r.ct <= now) for c in self.comments(p.aweme_id, now))

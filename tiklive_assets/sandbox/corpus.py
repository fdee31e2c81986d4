"""Deterministic synthetic TikTok corpus served by the sandbox.

Everything here is a pure function of ``(seed, clock time)`` plus three explicit overlays that the
sandbox controls mutate (``deleted`` ids, ``private`` handles, ``published`` posts).  Randomness comes
from ``random.Random`` instances seeded with stable per-entity hashes (blake2b of the seed and the
entity's key), never from Python's ``hash()``, so two processes with the same seed agree byte for byte.

Corpus facts (stable, documented so a config file can reference them):

* tracked accounts (``Corpus.accounts``), in order::

      alice123     6800000000000000001   region US, favourite hashtag cats
      bob          6800000000000000002   region GB, favourite hashtag news
      cristiano    107955                region PT, verified
      dana_dances  6800000000000000004   region BR, favourite hashtag dance
      eli.cooks    6800000000000000005   region US, favourite hashtag cooking
      fern_travel  6800000000000000006   region DE, favourite hashtag travel

  With ``accounts > 6`` the extra tracked accounts are ``user007``... with ids ``68`` + 17 digits.
* 20 non-tracked creators ``creator01``..``creator20`` (ids ``69`` + 17 digits) whose posts only show up
  through hashtag / music / search discovery (and their own ``/user-posts/``).
* hashtags (challenge id -> name): ``HASHTAGS``; music ids ``"9001"``..``"9010"``: ``MUSIC``.
* every author posts once per ``period`` days (1..4 for tracked accounts, per account and seed) starting
  2025-06-01 UTC, at a deterministic time inside each period; a post is visible once
  ``create_time <= clock()``.
* ``aweme_id`` = ``create_time << 32 | author_index << 20 | low bits`` (19 digits, globally unique,
  decodable, like real TikTok ids).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import math
import random
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator

START = 1748736000  # 2025-06-01T00:00:00Z, first day anyone posts
FOLLOW_START = START - 365 * 86400  # follow relations are spread over the year before START
CHUNK = 64 * 1024

HASHTAGS: dict[str, str] = {
    "1001": "cats",
    "1002": "cooking",
    "1003": "travel",
    "1004": "news",
    "1005": "dance",
}
HASHTAG_IDS: dict[str, str] = {name: cid for cid, name in HASHTAGS.items()}

MUSIC: dict[str, tuple[str, str]] = {
    "9001": ("original sound", "TikTok Sounds"),
    "9002": ("Summer Nights", "The Daylights"),
    "9003": ("Kitchen Beats", "DJ Spatula"),
    "9004": ("Wanderlust", "Atlas Crew"),
    "9005": ("Breaking Point", "Newsroom"),
    "9006": ("Shuffle Step", "Dana & the Moves"),
    "9007": ("Lo-fi Rain", "Sleepy Fox"),
    "9008": ("Siuuu Anthem", "Stadium Choir"),
    "9009": ("Paper Planes", "Origami"),
    "9010": ("Midnight Drive", "Neon Coast"),
}

REGIONS: list[dict[str, str]] = [
    {"code": "US", "name": "United States"},
    {"code": "GB", "name": "United Kingdom"},
    {"code": "BR", "name": "Brazil"},
    {"code": "PT", "name": "Portugal"},
    {"code": "DE", "name": "Germany"},
    {"code": "FR", "name": "France"},
    {"code": "JP", "name": "Japan"},
    {"code": "IN", "name": "India"},
    {"code": "MX", "name": "Mexico"},
    {"code": "ES", "name": "Spain"},
]
REGION_CODES = [r["code"] for r in REGIONS]

# handle, id, nickname, region, verified, favourite hashtag
_FIXED_ACCOUNTS = [
    ("alice123", "6800000000000000001", "Alice", "US", False, "cats"),
    ("bob", "6800000000000000002", "Bob", "GB", False, "news"),
    ("cristiano", "107955", "Cristiano Ronaldo", "PT", True, None),
    ("dana_dances", "6800000000000000004", "Dana Dances", "BR", False, "dance"),
    ("eli.cooks", "6800000000000000005", "Eli Cooks", "US", False, "cooking"),
    ("fern_travel", "6800000000000000006", "Fern Travels", "DE", False, "travel"),
]
N_CREATORS = 20
CREATOR_BASE_INDEX = 1000

_WORDS = (
    "today we try something new, honest review, you will not believe this, part two, "
    "quick tip, day in my life, behind the scenes, storytime, best moment ever, "
    "trying the viral trend, first attempt, what do you think, late night, morning routine, "
    "road trip, secret recipe, breaking update, rainy day, weekend plans, tutorial"
).split(", ")
_COMMENT_WORDS = (
    "love this, so good, first, where is this, recipe please, haha, no way, this is art, "
    "part 2 please, who else is watching in 2026, amazing, underrated, I needed this today, "
    "wow, came here from the hashtag, legend, can't stop watching, teach me"
).split(", ")
_NAMES = ["Sam", "Kai", "Noor", "Lena", "Ravi", "Mia", "Tomas", "Yuki", "Ana", "Leo", "Zoe", "Ivan"]


def _h(*parts: object) -> int:
    """Stable 64-bit hash of the parts (never Python's salted ``hash()``)."""
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _rng(*parts: object) -> random.Random:
    return random.Random(_h(*parts))


def post_url(handle: str, aweme_id: str | int) -> str:
    """The public TikTok URL of a video, as ``/post-detail/?url=`` expects it."""
    return f"https://www.tiktok.com/@{handle}/video/{aweme_id}"


# --------------------------------------------------------------------------- CDN bytes

_MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"  # 32-byte ftyp box


@lru_cache(maxsize=512)
def _block(key: str) -> bytes:
    """A 64 KiB deterministic pseudo-random block, doubled so any 64 KiB window is one slice."""
    b = random.Random(_h("cdn-block", key)).randbytes(CHUNK)
    return b + b


def iter_video_bytes(aweme_id: str | int, variant: str, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the bytes of one MP4 in chunks of at most ``chunk`` bytes (``chunk`` <= 64 KiB)."""
    chunk = max(1, min(chunk, CHUNK))
    head = _MP4_HEAD + (max(size - 32, 0)).to_bytes(4, "big") + b"mdat"
    head += f"{aweme_id}:{variant}:".encode()
    block = _block(f"{aweme_id}:{variant}")
    pos = 0
    while pos < size:
        n = min(chunk, size - pos)
        if pos < len(head):
            part = head[pos : pos + n]
            rest = n - len(part)
            out = part + block[:rest] if rest else part
        else:
            off = (pos - len(head)) % CHUNK
            out = block[off : off + n]
        yield out
        pos += n


def video_bytes(aweme_id: str | int, variant: str, size: int) -> bytes:
    """The exact bytes the sandbox CDN serves for ``/cdn/{variant}/{aweme_id}.mp4`` of that size."""
    return b"".join(iter_video_bytes(aweme_id, variant, size))


@lru_cache(maxsize=1024)
def cover_bytes(aweme_id: str | int) -> bytes:
    """The exact JPEG bytes the sandbox CDN serves for every cover variant of ``aweme_id``."""
    r = random.Random(_h("cover", aweme_id))
    n = 2048 + r.randrange(6144)
    body = r.randbytes(n).replace(b"\xff", b"\xfe")  # no stray markers
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9"


@lru_cache(maxsize=64)
def music_bytes(music_id: str) -> bytes:
    r = random.Random(_h("music", music_id))
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + r.randbytes(4096)


# --------------------------------------------------------------------------- entities


@dataclass(frozen=True)
class Account:
    handle: str
    id: str
    nickname: str
    region: str
    verified: bool
    favourite: str | None
    index: int  # author index encoded in aweme ids
    tracked: bool
    period_days: int
    sec_uid: str

    @property
    def unique_id(self) -> str:
        return self.handle


@dataclass(frozen=True, slots=True)
class Post:
    aweme_id: str
    author_index: int
    ct_ms: int
    title: str
    hashtags: tuple[str, ...]
    music_id: str
    region: str
    duration: int
    play_final: int
    tau_hours: float
    tail_per_hour: int
    r_digg: float
    r_share: float
    r_download: float
    r_collect: float
    has_hd: bool
    published: bool = False

    @property
    def create_time(self) -> int:
        return self.ct_ms // 1000


@dataclass(frozen=True, slots=True)
class Comment:
    id: str
    ct: int
    text: str
    digg_count: int
    user: tuple[str, str, str]  # id, unique_id, nickname
    replies: tuple["Comment", ...] = ()


def _sec_uid(handle: str) -> str:
    import base64

    raw = hashlib.sha256(f"secuid:{handle}".encode()).digest()
    return "MS4wLjABAAAA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _synthetic_user(u: int) -> tuple[str, str, str]:
    uid = str(7100000000000000000 + u % 10**17)
    handle = f"user{u % 10**9:09d}"
    nick = f"{_NAMES[u % len(_NAMES)]} {(u >> 20) % 100}"
    return uid, handle, nick


@dataclass
class _Schedule:
    posts: list[Post] = field(default_factory=list)
    ct_ms: list[int] = field(default_factory=list)
    horizon_ms: int = 0


class Corpus:
    """The synthetic world: accounts, their posts, comments and follow graph.

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
        self._ttl = ttl if callable(ttl) else (lambda v=float(ttl): v)
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
                Account(handle, f"69{j:017d}", f"Creator {j}", REGION_CODES[j % len(REGION_CODES)], False, fav,
                        CREATOR_BASE_INDEX + j, False, period, _sec_uid(handle))
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

    # ------------------------------------------------------------------ CDN URLs

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.secret, f"{path}{expires}".encode(), hashlib.sha256).hexdigest()

    def cdn_url(self, variant: str, key: str, ext: str, now: float | None = None) -> str:
        now = self.now() if now is None else now
        path = f"/cdn/{variant}/{key}.{ext}"
        expires = int(now + float(self._ttl()))
        return f"{self.base_url}{path}?expires={expires}&sig={self.sign(path, expires)}"

    def verify(self, path: str, expires: str, sig: str, now: float | None = None) -> bool:
        now = self.now() if now is None else now
        try:
            exp = int(expires)
        except (TypeError, ValueError):
            return False
        if not hmac.compare_digest(self.sign(path, exp), sig or ""):
            return False
        return now <= exp

    def video_size(self, aweme_id: str | int, variant: str = "play") -> int:
        """Byte size of ``/cdn/{variant}/{aweme_id}.mp4``: deterministic, in [0.5, 1.5] x video_size."""
        u = (_h(self.seed, "size", aweme_id, variant) % 10_000) / 10_000
        return max(64, int(self.video_size_base * (0.5 + u)))

    def video_bytes(self, aweme_id: str | int, variant: str = "play") -> bytes:
        return video_bytes(aweme_id, variant, self.video_size(aweme_id, variant))

    # ------------------------------------------------------------------ items

    def play_count(self, p: Post, now: float | None = None) -> int:
        """Monotonic in the whole hours elapsed since create_time."""
        now = self.now() if now is None else now
        hours = max(0, int((now - p.create_time) // 3600))
        return int(p.play_final * (1.0 - math.exp(-hours / p.tau_hours))) + hours * p.tail_per_hour

    def digg_count(self, p: Post, now: float | None = None) -> int:
        return int(self.play_count(p, now) * p.r_digg)

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
        d = {
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

    def author_of(self, p: Post) -> Account:
        return self._by_index[p.author_index]

    # public convenience API ------------------------------------------------

    def posts_for(self, handle: str, now: float | None = None) -> list[dict]:
        """Visible posts of ``handle`` as listing items, newest first."""
        now = self.now() if now is None else now
        return [self.listing_item(p, now) for p in self.visible_posts(handle, now)]

    def post_ids_for(self, handle: str, now: float | None = None) -> list[str]:
        return [p.aweme_id for p in self.visible_posts(handle, now)]

    def detail(self, aweme_id: str | int, now: float | None = None) -> dict | None:
        """The ``/post-detail/`` object of a visible video (ignores deletion/privacy), else None."""
        now = self.now() if now is None else now
        p = self.find_post(aweme_id)
        if p is None or not self.is_visible(p, now):
            return None
        return self.detail_item(p, now)

    def all_post_ids(self, now: float | None = None, tracked_only: bool = False) -> list[str]:
        """Ids of every visible post (tracked accounts and, unless tracked_only, the extra creators)."""
        authors = self.accounts if tracked_only else self._all
        return [p.aweme_id for a in authors for p in self._visible(a, now)]

    def discoverable_posts(self, now: float | None = None) -> list[Post]:
        """All visible posts of non-private authors, newest first (for hashtag / music / search)."""
        out = [p for a in self._all if a.handle not in self.private for p in self._visible(a, now)]
        out.sort(key=lambda p: (p.ct_ms, p.aweme_id), reverse=True)
        return out

    # ------------------------------------------------------------------ profiles

    def _day(self, now: float) -> int:
        return int((now - START) // 86400)

    @lru_cache(maxsize=4096)
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

    # ------------------------------------------------------------------ follow graph

    @lru_cache(maxsize=256)
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

    @lru_cache(maxsize=4096)
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
                        Comment(str((rct << 32) | r.getrandbits(32)), rct, r.choice(_COMMENT_WORDS),
                                int(10 ** r.uniform(0, 2.5)), _synthetic_user(r.getrandbits(62)))
                    )
                replies.sort(key=lambda c: (c.ct, c.id))
            out.append(
                Comment(cid, ct, r.choice(_COMMENT_WORDS), int(10 ** r.uniform(0, 4)),
                        _synthetic_user(r.getrandbits(62)), tuple(replies))
            )
        out.sort(key=lambda c: (c.ct, c.id))  # oldest first: new comments append, offsets stay stable
        return tuple(out)

    def comments(self, aweme_id: str, now: float | None = None) -> list[Comment]:
        now = self.now() if now is None else now
        return [c for c in self._comments_all(str(aweme_id)) if c.ct <= now]

    def comment_total(self, p: Post, now: float | None = None) -> int:
        now = self.now() if now is None else now
        return sum(1 + sum(1 for r in c.replies if r.ct <= now) for c in self.comments(p.aweme_id, now))

    def comment_item(self, c: Comment, aweme_id: str, now: float, parent: Comment | None = None) -> dict:
        d = {
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

    # ------------------------------------------------------------------ hashtags

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

"""The sandbox world's fixed facts and entity types, and the stable hash every random choice is seeded from.

Randomness comes from ``random.Random`` instances seeded with stable per-entity hashes (blake2b of the seed and
the entity's key), never from Python's ``hash()``, so two processes with the same seed agree byte for byte.

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

import hashlib
import random
from dataclasses import dataclass

START = 1748736000  # 2025-06-01T00:00:00Z, first day anyone posts
FOLLOW_START = START - 365 * 86400  # follow relations are spread over the year before START

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

_WORDS = [
    "today we try something new",
    "honest review",
    "you will not believe this",
    "part two",
    "quick tip",
    "day in my life",
    "behind the scenes",
    "storytime",
    "best moment ever",
    "trying the viral trend",
    "first attempt",
    "what do you think",
    "late night",
    "morning routine",
    "road trip",
    "secret recipe",
    "breaking update",
    "rainy day",
    "weekend plans",
    "tutorial",
]
_COMMENT_WORDS = [
    "love this",
    "so good",
    "first",
    "where is this",
    "recipe please",
    "haha",
    "no way",
    "this is art",
    "part 2 please",
    "who else is watching in 2026",
    "amazing",
    "underrated",
    "I needed this today",
    "wow",
    "came here from the hashtag",
    "legend",
    "can't stop watching",
    "teach me",
]
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
    replies: tuple[Comment, ...] = ()


def _sec_uid(handle: str) -> str:
    import base64

    raw = hashlib.sha256(f"secuid:{handle}".encode()).digest()
    return "MS4wLjABAAAA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _synthetic_user(u: int) -> tuple[str, str, str]:
    uid = str(7100000000000000000 + u % 10**17)
    handle = f"user{u % 10**9:09d}"
    nick = f"{_NAMES[u % len(_NAMES)]} {(u >> 20) % 100}"
    return uid, handle, nick

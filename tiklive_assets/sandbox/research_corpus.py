"""The sandbox Research API's corpus: its accounts, their videos, comments and follows, deterministic for a seed.

``tagesschau`` (~1.5 videos a day), ``zeitimbild`` (~1 a day), ``20minuten`` (~4.5 a day, so more than 100 in every
30-day window), ``srfnews`` and a private account, every day from 2023-01-01 through 2025-12-31. Counters grow
with the research clock's day, so captures differ. Under realism (see ``sandbox/research.py``) the wire objects
carry what recorded responses show: NUL characters, missing fields, 19-digit playlist ids, withheld videos.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

CORPUS_START = date(2023, 1, 1)
CORPUS_END = date(2025, 12, 31)


@dataclass(frozen=True)
class ResearchAccount:
    username: str
    region: str
    per_day: tuple[int, int]  # inclusive range of videos a day
    followers: int
    following: int
    hashtags: tuple[str, ...]


PRIVATE_USERNAME = "privat.konto"  # under realism its followers and following answer an error

ACCOUNTS: tuple[ResearchAccount, ...] = (
    ResearchAccount("tagesschau", "DE", (0, 3), 240, 12, ("nachrichten", "tagesschau", "politik")),
    ResearchAccount("zeitimbild", "AT", (0, 2), 130, 8, ("zib", "nachrichten", "oesterreich")),
    ResearchAccount("20minuten", "CH", (2, 7), 310, 45, ("20minuten", "news", "schweiz")),
    ResearchAccount("srfnews", "CH", (0, 2), 90, 5, ("srf", "news", "schweiz")),
    ResearchAccount(PRIVATE_USERNAME, "DE", (0, 1), 40, 9, ("privat",)),
)
FOLLOW_EPOCH = int(datetime(2025, 12, 31, tzinfo=UTC).timestamp())  # the newest follow; older ones 1 h apart
ACCOUNTS_BY_NAME = {a.username: a for a in ACCOUNTS}


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class ResearchVideo:
    id: int
    username: str
    create_time: int
    region_code: str
    hashtags: tuple[str, ...]
    description: str
    music_id: int
    base_views: int

    @property
    def create_date(self) -> date:
        return datetime.fromtimestamp(self.create_time, UTC).date()

    def as_json(self, fields: tuple[str, ...], today: date, realism: bool = False) -> dict[str, Any]:
        age = max(0, (today - self.create_date).days)
        views = self.base_views + age * (self.base_views // 50 + 7)
        full: dict[str, Any] = {
            "id": self.id,
            "video_description": self.description,
            "create_time": self.create_time,
            "region_code": self.region_code,
            "share_count": views // 300,
            "view_count": views,
            "like_count": views // 20,
            "comment_count": views // 400,
            "music_id": self.music_id,
            "hashtag_names": list(self.hashtags),
            "username": self.username,
            "effect_ids": [],
            "playlist_id": self.id % 7 * 10**17 or None,
            "voice_to_text": None if self.id % 3 else f"voice of {self.id}",
        }
        if realism:
            if self.id % 17 == 0:  # NULs inside text, as recorded
                full["video_description"] = full["video_description"].replace(" ", "\x00 ", 1) + "\x00\x00"
            if self.id % 19 == 0:
                full["username"] = self.username + "\x00" * 6
            full["playlist_id"] = 7_402_634_000_000_000_000 + self.id % 999_983 if self.id % 2 else None
            out = {k: full[k] for k in fields}
            if self.id % 5 == 0:  # often absent on the wire
                out.pop("playlist_id", None)
                out.pop("voice_to_text", None)
            if self.id % 7 == 1:
                out.pop("region_code", None)
                out.pop("view_count", None)
                out.pop("hashtag_names", None)
            return out
        return {k: full[k] for k in fields}

    @property
    def withheld(self) -> bool:
        """Under realism the API counts this video in the search but does not return it (a short page)."""
        return self.id % 11 == 0


@lru_cache(maxsize=8192)
def videos_on(username: str, day: date, seed: int = 3) -> tuple[ResearchVideo, ...]:
    """The account's videos created on ``day`` (UTC), deterministic for a seed."""
    account = ACCOUNTS_BY_NAME.get(username)
    if account is None or not (CORPUS_START <= day <= CORPUS_END):
        return ()
    lo, hi = account.per_day
    n = lo + stable_hash(seed, username, day) % (hi - lo + 1)
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    seconds = sorted({stable_hash(seed, username, day, i) % 86_400 for i in range(n)})
    out = []
    for i, s in enumerate(seconds):
        ct = midnight + s
        vid = (ct << 32) | (stable_hash(seed, "id", username, ct) & 0xFFFF_FFFF)
        tags = tuple(t for j, t in enumerate(account.hashtags) if (stable_hash(seed, vid, j) % 3) or j == 0)
        out.append(
            ResearchVideo(
                id=vid,
                username=username,
                create_time=ct,
                region_code=account.region,
                hashtags=tags,
                description=f"{username} video {day.isoformat()} #{i} " + " ".join(f"#{t}" for t in tags),
                music_id=7_000_000_000_000_000_000 + stable_hash(seed, "music", vid) % 10**15,
                base_views=1_000 + stable_hash(seed, "views", vid) % 300_000,
            )
        )
    return tuple(out)


def corpus_videos(
    username: str, start: date, end: date, seed: int = 3, *, realism: bool = False
) -> list[ResearchVideo]:
    """Every video of ``username`` created from ``start`` to ``end`` inclusive (for tests and benchmarks); with
    ``realism``, only those the API returns (withheld videos left out)."""
    out: list[ResearchVideo] = []
    day = start
    while day <= end:
        out.extend(v for v in videos_on(username, day, seed) if not (realism and v.withheld))
        day += timedelta(days=1)
    return out


def find_video(video_id: int, seed: int = 3) -> ResearchVideo | None:
    """The corpus video with this id (its create time is in the id's high bits), or None."""
    try:
        day = datetime.fromtimestamp(int(video_id) >> 32, UTC).date()
    except (OverflowError, OSError, ValueError):
        return None
    for account in ACCOUNTS:
        for v in videos_on(account.username, day, seed):
            if v.id == video_id:
                return v
    return None


def video_comments(video: ResearchVideo, seed: int = 3, realism: bool = False) -> list[dict[str, Any]]:
    """The comments of a corpus video, oldest first: ids are 19-digit integers, replies name their parent."""
    n = stable_hash(seed, "comments", video.id) % 140
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid = video.id + 1 + i * 7919 + (stable_hash(seed, "cid", video.id, i) % 7000)
        parent = out[i // 3]["id"] if i % 4 == 3 and out else video.id  # top-level comments name the video
        comment: dict[str, Any] = {
            "id": cid,
            "video_id": video.id,
            "text": f"comment {i} on {video.id}",
            "like_count": stable_hash(seed, "likes", cid) % 500,
            "reply_count": sum(1 for c in out if c["id"] == parent),
            "parent_comment_id": parent,
            "create_time": video.create_time + 60 * (i + 1),
        }
        if realism:
            if i % 9 == 4:
                comment["text"] = comment["text"] + "\x00"
            if i % 2:
                comment.pop("reply_count")  # the recorded page has no reply_count
        out.append(comment)
    return out


def follows_of(account: ResearchAccount, kind: str) -> list[tuple[int, int]]:
    """(follow time, index) of ``kind`` ('followers'/'following'), newest first, one hour apart."""
    total = account.followers if kind == "followers" else account.following
    return [(FOLLOW_EPOCH - i * 3600, i) for i in range(total)]

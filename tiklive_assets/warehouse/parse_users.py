"""Users: a /userid/ answer (a handle's id) and a profile (/userinfo-by-id/, /userinfo-by-username/) -> the
``users`` row and the ``user_snapshots`` counters; the profile outranks what posts and lookups say of a user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiklive_assets.storage.keys import RAW_PREFIX, split_raw_key
from tiklive_assets.tolerant import as_id, bio_link, first_present, stats_object

from .archive_index import UNACCOUNTED, count_dicts, node_rows, user_rows
from .raw import ShapeError, is_id

if TYPE_CHECKING:
    from .parse import DayParser

PROFILE_COUNTERS = ("followerCount", "followingCount", "videoCount", "heartCount", "diggCount")


def user_id(p: DayParser, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
    found = as_id(body.get("id")) or as_id(body.get("user_id"))
    if found is None:
        raise ShapeError("no user id")
    subject, parts = as_id(body.get("id")), split_raw_key(key, RAW_PREFIX)  # the index: the handle's user id
    if subject is not None and parts is not None:
        p.found.append((subject, parts.entity.lower(), key, "subject", ""))
    p.keep(
        p.rows["users"],
        found,
        (0, captured, key),
        (found, slug, None, None, None, None, None, "userid", captured, p.day),
    )


def profile(p: DayParser, endpoint: str, slug: str, body: dict, key: str, captured: int) -> None:
    user = body.get("user")
    if type(user) is not dict and type(body.get("userInfo")) is dict:  # noqa: E721 - TikTok web nests it
        body = body["userInfo"]
        user = body.get("user")
        p.dicts = UNACCOUNTED  # the archive index of a nested profile: the generic walk's
    if type(user) is not dict:  # noqa: E721
        raise ShapeError("no user object")
    # the archive index: the profile's user is its subject (what it holds is not searched further), its counters
    # are another object
    user_rows(user, key, "subject", "", p.found.append)
    p.dicts += count_dicts(user)
    user_id = user.get("id")
    if not is_id(user_id):
        user_id = as_id(user_id)
        if user_id is None:
            raise ShapeError("no user id")
    stats = stats_object(body)
    if stats is None:
        stats = {}
    else:
        p.dicts += 1
        node_rows(stats, key, "user", "", p.found.append)
    handle = p.read_text(first_present(user, "uniqueId", "unique_id"), "user.uniqueId")
    raw_bio = user.get("bioLink")
    bio = bio_link(raw_bio)
    if bio is None and raw_bio not in (None, "", {}):
        p.tally.nulled["user.bioLink"] += 1
    if bio is not None and "\x00" in bio:
        bio = bio.replace("\x00", "")
    p.keep(
        p.rows["users"],
        user_id,
        (3, captured, key),
        (
            user_id,
            handle,
            p.read_text(user.get("nickname"), "user.nickname"),
            p.read_text(first_present(user, "secUid", "sec_uid"), "user.secUid"),
            p.read_bool(user.get("verified"), "user.verified"),
            p.read_bool(user.get("privateAccount"), "user.privateAccount"),
            bio,
            "profile",
            captured,
            p.day,
        ),
    )
    counters = []
    for name in PROFILE_COUNTERS:
        value = stats.get(name)
        counters.append(value if type(value) is int else p.read_int(value, f"stats.{name}"))  # noqa: E721
    p.keep(p.rows["user_snapshots"], (user_id, captured), key, (user_id, captured, handle, *counters, key, p.day))

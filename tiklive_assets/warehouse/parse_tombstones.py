"""Tombstones: content seen missing after it was captured, from the archived "not found" answers of one day.

* A video: its refresh (``post-detail/<aweme_id>-refresh<N>h``) answered 404, or a 200 saying it is gone
  (``…-error-gone``). The day's ``dead_letters`` rows already carry these answers (reason, status, key, time); the
  refresh slug tells a tombstone (content that existed) from a video that was gone before it was ever resolved.
* An account: its daily profile capture (``userinfo-by-id/<user id>``, ``userinfo-by-username/<handle>``,
  ``userid/<handle>``) answered 404 or a gone 200 (those answers are no table's rows, so their few objects are
  read again here for the API's message), or answered a profile marked ``privateAccount`` (reason
  ``private account``, from the day's ``users`` and ``user_snapshots`` rows).

A pure function of the day's archived objects, like every table: a replay of the day rebuilds the same rows.
"""

from __future__ import annotations

import pyarrow as pa

from tiklive_assets.storage import NotFound, ObjectStore
from tiklive_assets.storage.keys import RAW_PREFIX, parse_refresh_slug, split_raw_key
from tiklive_assets.tikliveapi.endpoints import USERID, USERINFO_BY_ID, USERINFO_BY_USERNAME

from . import schema
from .arrow import to_arrow
from .raw import UnreadableObject, captured_micros, decode, micros, raw_day_prefix

_PROFILES = {USERINFO_BY_ID.name: "user_id", USERINFO_BY_USERNAME.name: "handle", USERID.name: "handle"}
_GONE_SUFFIXES = ("-http404", "-error-gone")
PRIVATE = "private account"


def _reason(body: object) -> str:
    if isinstance(body, dict):
        for name in ("error", "message", "msg"):
            if isinstance(body.get(name), str) and body[name]:
                return body[name]
    return "not found"


def _gone_slug(slug: str) -> tuple[str, int] | None:
    """(the slug of the request, HTTP status) of an archived gone answer's slug, or None."""
    for suffix, status in zip(_GONE_SUFFIXES, (404, 200), strict=True):
        if slug.endswith(suffix):
            return slug[: -len(suffix)], status
    return None


def video_rows(dead_letters: pa.Table) -> list[tuple]:
    """A tombstone per refreshed video the day's dead letters say is gone."""
    rows = []
    for letter in dead_letters.to_pylist():
        parts = split_raw_key(letter["source_key"])
        if parts is None:
            continue
        gone = _gone_slug(parts.slug)
        refreshed = parse_refresh_slug(gone[0]) if gone else None
        if refreshed is None:
            continue
        aweme_id, _age = refreshed
        captured = micros(letter["captured_at"])
        rows.append(("video", aweme_id, None, letter["reason"], letter["http_status"], letter["source_key"], captured))
    return rows


def account_rows(store: ObjectStore, day_prefix: str, prefix: str = RAW_PREFIX) -> list[tuple]:
    """A tombstone per tracked account whose profile capture of the day answered not found or private."""
    rows = []
    for endpoint, id_kind in _PROFILES.items():
        for info in store.list(f"{day_prefix}{endpoint}/"):
            parts = split_raw_key(info.key, prefix)
            gone = _gone_slug(parts.slug) if parts is not None else None
            if gone is None:
                continue
            try:
                gz = store.get_bytes(info.key)
                reason = _reason(decode(gz))
            except (NotFound, UnreadableObject):
                continue
            entity = gone[0]
            handle = entity.lower() if id_kind == "handle" else None
            rows.append(("account", entity, handle, reason, gone[1], info.key, captured_micros(gz, info.last_modified)))
    return rows


def private_rows(users: pa.Table, snapshots: pa.Table) -> list[tuple]:
    """A tombstone per account whose profile capture of the day says it is private (the profile answers, with
    ``privateAccount`` set, and its videos no longer do)."""
    keys = {(r["user_id"], r["captured_at"]): r["source_key"] for r in snapshots.to_pylist()}
    rows = []
    for user in users.to_pylist():
        key = keys.get((user["user_id"], user["captured_at"]))
        if user["source"] == "profile" and user["private_account"] is True and key is not None:
            handle = user["handle"].lower() if isinstance(user["handle"], str) else None
            rows.append(("account", user["user_id"], handle, PRIVATE, 200, key, micros(user["captured_at"])))
    return rows


def tombstones(store: ObjectStore, day, tables: dict[str, pa.Table], prefix: str = RAW_PREFIX) -> dict[str, pa.Table]:
    """``tables`` (a parsed day) with its ``tombstones`` table added; the first sighting of the day per key."""
    found: dict[tuple[str, str], tuple] = {}
    found_rows = (
        video_rows(tables["dead_letters"])
        + account_rows(store, raw_day_prefix(day, prefix), prefix)
        + private_rows(tables["users"], tables["user_snapshots"])
    )
    for row in sorted(found_rows, key=lambda r: r[:2] + (r[6], r[5])):
        kind, entity = row[0], row[1]
        current = found.get((kind, entity))
        if current is None or (row[6], row[5]) < (current[6], current[5]):
            found[(kind, entity)] = row
    rows = [(*row, day) for row in found.values()]
    return {**tables, "tombstones": to_arrow(schema.BY_NAME["tombstones"], rows)}

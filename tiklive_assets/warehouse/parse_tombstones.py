"""Tombstones: content seen missing after it was captured, from the archived "not found" answers of one day.

* A video: its refresh (``post-detail/<aweme_id>-refresh<N>h``) answered 404, or a 200 saying it is gone
  (``…-error-gone``). The day's ``dead_letters`` rows already carry these answers (reason, status, key, time); the
  refresh slug tells a tombstone (content that existed) from a video that was gone before it was ever resolved.
* An account: its daily profile capture (``userinfo-by-id/<user id>``, ``userinfo-by-username/<handle>``,
  ``userid/<handle>``) answered 404 or a gone 200 (those answers are no table's rows, so their few objects are
  read again here for the API's message), or answered a profile marked ``privateAccount`` (reason
  ``private account``, from the day's ``users`` and ``user_snapshots`` rows).

A pure function of the day's archived objects (loose or compacted into bundles), like every table: a replay of
the day rebuilds the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pyarrow as pa

from tiklive_assets.storage import NotFound, ObjectStore
from tiklive_assets.storage.bundles import Bundle, live_bundles_of_day, locate, read_bundle, read_member
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


def video_rows(dead_letters: pa.Table, prefix: str = RAW_PREFIX) -> list[tuple]:
    """A tombstone per refreshed video the day's dead letters (keys under ``prefix``) say is gone."""
    rows = []
    for letter in dead_letters.to_pylist():
        parts = split_raw_key(letter["source_key"], prefix)
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


def _gone_objects(store: ObjectStore, day: date, endpoint: str, prefix: str) -> Iterator[tuple[str, bytes, datetime]]:
    """(key, gzip bytes, fetched_at) of the day's gone answers of ``endpoint``, loose or packed in its live bundle
    (a compacted day), each key once: a key both loose and bundled (mid-compaction, equal bytes) is read from the
    bundle, as every replay reads it. Only the gone answers' bodies are read (the bundle's index names the rest)."""
    found: dict[str, tuple[datetime, Bundle | None]] = {}
    for info in store.list(f"{raw_day_prefix(day, prefix)}{endpoint}/"):
        found[info.key] = (info.last_modified, None)
    holder = live_bundles_of_day(store, day, prefix).get(endpoint)
    if holder is not None:
        bundle = read_bundle(store, holder)
        for member in bundle.members:
            found[member.key] = (member.fetched_at, bundle)
    for key in sorted(found):
        parts = split_raw_key(key, prefix)
        if parts is None or _gone_slug(parts.slug) is None:
            continue
        fetched_at, source = found[key]
        try:
            if source is not None:
                yield key, source.body(key), fetched_at
                continue
            yield key, store.get_bytes(key), fetched_at
        except NotFound:  # packed and deleted since the listing, or erased: from its bundle if any
            packed = locate(store, key)
            if packed is not None:
                yield key, read_member(store, packed, key), fetched_at


def account_rows(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> list[tuple]:
    """A tombstone per tracked account whose profile capture of the day answered not found (loose or compacted)."""
    rows = []
    for endpoint, id_kind in _PROFILES.items():
        for key, gz, fetched_at in _gone_objects(store, day, endpoint, prefix):
            parts = split_raw_key(key, prefix)
            gone = _gone_slug(parts.slug) if parts is not None else None
            if gone is None:
                continue
            try:
                reason = _reason(decode(gz))
            except UnreadableObject:
                continue
            entity = gone[0]
            handle = entity.lower() if id_kind == "handle" else None
            rows.append(("account", entity, handle, reason, gone[1], key, captured_micros(gz, fetched_at)))
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


def tombstones(
    store: ObjectStore, day: date, tables: dict[str, pa.Table], prefix: str = RAW_PREFIX
) -> dict[str, pa.Table]:
    """``tables`` (a parsed day) with its ``tombstones`` table added; the first sighting of the day per key."""
    found: dict[tuple[str, str], tuple] = {}
    found_rows = (
        video_rows(tables["dead_letters"], prefix)
        + account_rows(store, day, prefix)
        + private_rows(tables["users"], tables["user_snapshots"])
    )
    for row in sorted(found_rows, key=lambda r: r[:2] + (r[6], r[5])):
        kind, entity = row[0], row[1]
        current = found.get((kind, entity))
        if current is None or (row[6], row[5]) < (current[6], current[5]):
            found[(kind, entity)] = row
    rows = [(*row, day) for row in found.values()]
    return {**tables, "tombstones": to_arrow(schema.BY_NAME["tombstones"], rows)}

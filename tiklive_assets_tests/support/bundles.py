"""Packing fabricated archive days into bundles the way compaction does (one per endpoint and day, byte for byte,
fetch time = the loose object's modification time, then the loose objects deleted), through the bundle API."""

from __future__ import annotations

import hashlib
from datetime import date

from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.bundles import Member, bundle_key, day_objects, live_bundles_of_day, write_bundle
from tiklive_assets.storage.keys import RAW_PREFIX, RAW_SUFFIX, RESEARCH_PREFIX, split_raw_key


def compact_day(store: ObjectStore, day: date, prefixes: tuple[str, ...] = (RAW_PREFIX, RESEARCH_PREFIX)) -> list[str]:
    """Pack every loose raw object of ``day`` into one bundle per endpoint and delete the loose copies; returns
    the bundle keys written."""
    written = []
    for prefix in prefixes:
        groups: dict[str, list[tuple[Member, bytes]]] = {}
        for info in list(store.list(f"{prefix}/{day:%Y/%m/%d}/")):
            parts = split_raw_key(info.key, prefix)
            if parts is None or RAW_SUFFIX not in info.key:
                continue
            data = store.get_bytes(info.key)
            member = Member(info.key, hashlib.sha256(data).hexdigest(), len(data), info.last_modified)
            groups.setdefault(parts.endpoint, []).append((member, data))
        for endpoint, items in sorted(groups.items()):
            key = bundle_key(prefix, day, endpoint)
            write_bundle(store, key, items)
            written.append(key)
            for member, _body in items:
                store.delete(member.key)
    return written


def day_bytes(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> dict[str, str]:
    """raw key -> sha256 of every raw object of the day, loose or bundled."""
    return {key: hashlib.sha256(body).hexdigest() for key, body, _when in day_objects(store, day, prefix)}


def live_generations(store: ObjectStore, day: date, prefix: str = RAW_PREFIX) -> dict[str, str]:
    return live_bundles_of_day(store, day, prefix)

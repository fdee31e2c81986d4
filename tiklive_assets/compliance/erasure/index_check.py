"""Checking the archive index against a scan: a sampled day, a few of its users, each scanned as an erasure would.

For each sampled user (one identifier, an id or a handle, as the index holds it), the day is scanned whole the way
the erasure's full scan does it (:func:`.plan.plan_erasure` over that day's prefixes) and compared with what the
index names for them on that day (their rows, their posts' rows, their posts' covers). Any object the scan finds
and the index does not name is a gap: an erasure through the index would leave it. Identifiers are reported as
sha256 references, never as they are.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from dataclasses import dataclass, field
from datetime import date

import pyarrow.parquet as pq

from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.keys import cover_key
from tiklive_assets.warehouse.archive_index_store import day_prefixes, lookup, read_part_bytes

from .matcher import UserMatcher
from .plan import plan_erasure


@dataclass
class UserCheck:
    ref: str  # sha256 of the identifier, never the identifier
    scanned: int  # objects the scan planned for them
    named: int  # objects the index names for them (and their posts)
    missed: list[str] = field(default_factory=list)  # keys, masked


@dataclass
class IndexCheck:
    day: date | None
    seed: int
    indexed: bool = False  # the day has an index part
    users: list[UserCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.day is None or (self.indexed and not any(u.missed for u in self.users))


_PERSON = re.compile(r"id:[0-9]{6,32}|handle:(?=[A-Za-z0-9._]*[A-Za-z0-9_])[A-Za-z0-9._]{1,64}")


def _sample_refs(data: bytes, rng: random.Random, users: int) -> list[str]:
    """``users`` of the part's people: user ids (6 digits or more: a shorter number a user object carries, such as
    a Research API video's ``id`` beside its ``username``, would match counters anywhere) and handles."""
    refs = pq.read_table(io.BytesIO(data), columns=["ref"]).column("ref").unique().to_pylist()
    people = sorted(r for r in refs if _PERSON.fullmatch(r))
    return sorted(rng.sample(people, min(users, len(people))))


def check_day(store: ObjectStore, day: date, seed: int, users: int = 3, refs: list[str] | None = None) -> IndexCheck:
    """Compare the index part of ``day`` with a scan of the day for ``users`` of its users, sampled by ``seed``
    (or for the given ``refs``: ``id:<user id>``, ``handle:<handle>``)."""
    report = IndexCheck(day, seed)
    data = read_part_bytes(store, day)
    if data is None:
        return report
    report.indexed = True
    prefixes = day_prefixes(day)
    for ref in refs if refs is not None else _sample_refs(data, random.Random(seed), users):
        kind, _, value = ref.partition(":")
        matcher = UserMatcher(value if kind == "id" else None, [value] if kind == "handle" else [])
        scan = plan_erasure(store, matcher, raw_prefixes=prefixes[:2], media_prefixes=([prefixes[2]], [prefixes[3]]))
        hits = lookup({day: data}, [ref])
        posts = {aweme for rows in hits.rows.values() for _k, role, aweme in rows if role == "author" and aweme}
        posts |= scan.aweme_ids
        lookup({day: data}, [f"post:{a}" for a in posts], hits)
        named = hits.keys() | {cover_key(day, a) for a in posts if a.isdigit()}
        missed = sorted(set(scan.objects) - named)
        report.users.append(
            UserCheck(
                hashlib.sha256(f"tiklive-index-check:{ref}".encode()).hexdigest()[:16],
                len(scan.objects),
                len(named & set(scan.objects)),
                [matcher.mask(k, posts) for k in missed],
            )
        )
    return report

"""Legal holds (litigation, subpoena, a regulator): what they cover is never deleted, kept in the state DB.

Three kinds of hold, each a kv row of the state DB holding JSON (reason, who placed it, when, how it is enforced):

* **by prefix** (``legal-hold:<prefix>``): every key starting with the prefix, now and later, matched with
  ``key.startswith(prefix)`` exactly as S3 prefixes are (``tiklive-raw/2025/03/`` holds March 2025). A hold on
  ``""`` covers the whole store.
* **by tag** (``legal-hold-keys:tag:<name>=<value>``): every object carrying the tag, either an S3 object tag
  (``legal-hold=case-42`` set on the object) or a key-set tag recorded in the state DB (:class:`KeySetTags`, for
  stores without object tags such as local disk).
* **by user id** (``legal-hold-keys:user:<id>``): every object about or mentioning the user: what an erasure of
  that user would delete or rewrite, found through the archive's references to the user.

A hold that covers a raw key compaction has packed into a bundle (one per endpoint and day) holds that bundle:
retention keeps it whole, erasure refuses to rewrite it, and the store's Object Lock (below) is set on the bundle
object. A user hold finds the user's keys through the archive index (days without an index part are scanned).

A tag or user hold is the set of keys found when it was placed; placing it again (or :meth:`LegalHolds.refresh`)
finds the objects archived since. Retention (:mod:`.retention`) skips every held key and leaves held days out of
the S3 Lifecycle expiration rules it emits; erasure (:mod:`.erasure`) refuses to run when a hold covers an object it
would delete or rewrite.

Where the bucket supports it (S3 Object Lock, a bucket created with it enabled), placing a hold with the store at
hand also turns the store's own legal hold ON for every version of every held key, and releasing turns it OFF
again (except for keys another hold still covers): the bucket then refuses deletes of held objects whoever asks.
Elsewhere (a bucket without Object Lock, local disk) the holds are enforced by the jobs above, and each hold records
which of the two applies (``enforcement``, shown by ``tiklive hold list``). Objects written under a prefix hold
after it was placed are locked by the next :meth:`LegalHolds.refresh`; the jobs honour them at once.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tiklive_assets import settings
from tiklive_assets.concurrency import bounded_map
from tiklive_assets.storage.base import check_list_prefix

if TYPE_CHECKING:
    from tiklive_assets.state import StateDB
    from tiklive_assets.storage import ObjectStore

HOLD_KV_PREFIX = "legal-hold:"  # prefix holds
KEYSET_HOLD_KV_PREFIX = "legal-hold-keys:"  # tag and user holds: legal-hold-keys:tag:<tag>, legal-hold-keys:user:<id>
TAG_KV_PREFIX = "object-tag:"  # key-set tags recorded in the state DB: object-tag:<name>=<value> -> JSON key list
TAG_WORKERS = 8

FindUserKeys = Callable[[str, frozenset[str]], Iterable[str]]  # (user id, handles) -> keys about or mentioning them


class LegalHoldError(RuntimeError):
    """An operation would delete or rewrite objects under a legal hold; nothing was changed."""

    def __init__(self, action: str, blocked: dict[str, int], holds: list[Hold]) -> None:
        self.action = action
        self.blocked = dict(blocked)
        self.holds = list(holds)
        lines = [
            f"  {h.prefix!r}: {blocked.get(h.prefix, 0)} object(s), reason {h.reason!r}, placed by {h.placed_by} "
            f"at {h.placed_at}"
            for h in holds
        ]
        super().__init__(
            f"refusing to {action}: legal hold(s) cover objects it would delete or rewrite; nothing was changed.\n"
            + "\n".join(lines)
            + "\nRelease the hold (`tiklive hold release`) once counsel allows, then run it again."
        )


def current_operator(who: str | None = None) -> str:
    """``who``, else ``TIKLIVE_OPERATOR``, else the login name (``$USER``, else the account's), else "unknown"."""
    if who:
        return who
    name = settings.operator()
    if name != "unknown":
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, OSError):  # no login name (containers without an /etc/passwd entry)
        return "unknown"


@dataclass(frozen=True)
class Hold:
    """One hold. ``prefix`` is the prefix held, or for a tag or user hold its name (``tag:<tag>``,
    ``user:<id>``), which is what reports and refusals count objects under."""

    prefix: str
    reason: str
    placed_by: str
    placed_at: str  # ISO 8601 UTC
    kind: str = "prefix"  # "prefix" | "tag" | "user"
    keys: frozenset[str] = field(default=frozenset(), compare=False)  # what a tag or user hold covers
    enforcement: tuple[str, ...] = field(default=(), compare=False)  # per store: the store's lock, or tiklive's
    selector: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # how a key set was found (refresh)

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefix) if self.kind == "prefix" else key in self.keys

    def overlaps(self, prefix: str) -> bool:
        """True when some key could be under both this hold and ``prefix``."""
        if self.kind != "prefix":
            return any(key.startswith(prefix) for key in self.keys)
        return prefix.startswith(self.prefix) or self.prefix.startswith(prefix)

    def describe(self) -> str:
        """One line for ``tiklive hold list``: what is held, why, by whom, and who enforces it."""
        what = self.prefix if self.kind == "prefix" else f"{self.prefix} ({len(self.keys)} object(s))"
        text = f"{what:<40} {self.reason} ({self.placed_by}, {self.placed_at})"
        for line in self.enforcement or ("enforced by tiklive (placed without the store at hand)",):
            text += f"\n    {line}"
        return text

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "prefix": self.prefix,
            "reason": self.reason,
            "placed_by": self.placed_by,
            "placed_at": self.placed_at,
        }
        if self.kind != "prefix":
            data.update(kind=self.kind, keys=sorted(self.keys), selector=dict(self.selector))
        if self.enforcement:
            data["enforcement"] = list(self.enforcement)
        return json.dumps(data, sort_keys=True)


def kv_items(state: StateDB, prefix: str) -> list[tuple[str, str | None]]:
    """Every (key, value) of the state DB's kv table whose key starts with ``prefix``, in key order.

    StateDB has no public prefix scan of kv yet, so this uses its transaction helper (one SELECT, both dialects).
    """
    with state._tx() as tx:
        rows = tx.fetchall("SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", [len(prefix), prefix])
    return [(str(k), v) for k, v in rows]


def parse_tag(tag: str) -> tuple[str, str]:
    """``"legal-hold=case-42"`` -> ``("legal-hold", "case-42")``; S3's limits on tag keys and values apply."""
    name, sep, value = tag.partition("=") if isinstance(tag, str) else ("", "", "")
    if not sep or not name.strip() or len(name) > 128 or len(value) > 256:
        raise ValueError(f"a tag is <key>=<value> (key up to 128 characters, value up to 256), not {tag!r}")
    return name.strip(), value.strip()


class KeySetTags:
    """Tags recorded in the state DB as a named set of keys: object tags for stores that have none (local disk),
    or for keys chosen by hand. ``tiklive hold place --tag`` finds them beside the S3 object tags."""

    def __init__(self, state: StateDB) -> None:
        self.state = state

    def keys(self, tag: str) -> set[str]:
        name, value = parse_tag(tag)
        stored = self.state.get_value(f"{TAG_KV_PREFIX}{name}={value}")
        return set(json.loads(stored)) if stored else set()

    def tag(self, tag: str, keys: Iterable[str]) -> int:
        """Add ``keys`` to the tag; returns how many keys it has now."""
        name, value = parse_tag(tag)
        merged = self.keys(tag) | {check_list_prefix(k) for k in keys}
        self.state.set_value(f"{TAG_KV_PREFIX}{name}={value}", json.dumps(sorted(merged)))
        return len(merged)

    def untag(self, tag: str, keys: Iterable[str] | None = None) -> int:
        """Remove ``keys`` (all, when None) from the tag; returns how many keys it has left."""
        name, value = parse_tag(tag)
        left = set() if keys is None else self.keys(tag) - set(keys)
        if left:
            self.state.set_value(f"{TAG_KV_PREFIX}{name}={value}", json.dumps(sorted(left)))
        else:
            self.state.delete_value(f"{TAG_KV_PREFIX}{name}={value}")
        return len(left)


def tagged_keys(store: ObjectStore | None, state: StateDB, tag: str, within: str = "") -> set[str]:
    """Every key under ``within`` carrying ``tag``: the state DB's key-set tag, plus, on a store with object tags,
    the objects whose S3 tags include it (one tagging request per object listed, on a few threads)."""
    name, value = parse_tag(tag)
    found = {k for k in KeySetTags(state).keys(tag) if k.startswith(within)}
    if store is None or not store.has_object_tags():
        return found

    def carries(key: str) -> str | None:
        return key if store.get_tags(key).get(name) == value else None

    listed = (info.key for info in store.list(within))
    found |= {k for k in bounded_map(carries, listed, workers=TAG_WORKERS, thread_name_prefix="hold-tags") if k}
    return found


def user_keys(
    store: ObjectStore,
    user_id: str,
    handles: Iterable[str] = (),
    *,
    warehouse: Any | None = None,
    state: StateDB | None = None,
) -> tuple[set[str], frozenset[str]]:
    """(keys about or mentioning the user, every handle known for them): the objects an erasure of the user would
    delete or rewrite, found as the erasure finds them: through the archive index, scanning the days it has no part
    for (the whole archive when it has none); read only. The warehouse and the state DB's handle cache add past
    handles and the user's posts."""
    from .erasure import UserMatcher, plan_erasure, resolve_user
    from .erasure.index_plan import plan_with_index

    uid, known, aweme = resolve_user(warehouse, user_id, list(handles), state)
    matcher = UserMatcher(uid, known)
    found = plan_with_index(store, matcher, aweme_ids=aweme)
    plan = found[0] if found is not None else plan_erasure(store, matcher, aweme_ids=aweme)
    return set(plan.keys), matcher.handles


def enforce(store: ObjectStore, keys: Iterable[str], on: bool) -> tuple[str, ...]:
    """Set (or clear) the store's own legal hold on ``keys``; lines saying who enforces the hold on each store."""
    versions = store.set_legal_hold(keys, on)
    status = store.lock_status()
    lines = [f"{s.where}: {s.detail}" for s in status]
    if on and any(s.enforced for s in status):
        lines.append(f"S3 Object Lock legal hold ON on {versions} object version(s)")
    return tuple(lines)


class LegalHolds:
    """The legal holds in one state DB. Cheap to construct; every read goes to the database, except
    :meth:`snapshot`, which returns a frozen in-memory view for scanning many keys.

    Methods taking ``store`` also set the store's own Object Lock legal holds (when it has them); without it
    only the state DB changes (and :meth:`refresh` with the store catches up later)."""

    def __init__(self, state: StateDB) -> None:
        self.state = state

    @staticmethod
    def _kv_key(prefix: str) -> str:
        return HOLD_KV_PREFIX + prefix

    def _new(self, prefix: str, reason: str, who: str | None, **extra: Any) -> Hold:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a legal hold needs a reason (case number, regulator reference, ...)")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return Hold(prefix=prefix, reason=reason.strip(), placed_by=current_operator(who), placed_at=now, **extra)

    def place(self, prefix: str, reason: str, *, who: str | None = None, store: ObjectStore | None = None) -> Hold:
        """Hold every key starting with ``prefix``; placing it again updates reason, author and time."""
        check_list_prefix(prefix)
        hold = self._new(prefix, reason, who)
        self.state.set_value(self._kv_key(prefix), hold.to_json())  # the jobs honour it from now on
        if store is not None:
            hold = replace(hold, enforcement=enforce(store, self._held_keys(hold, store), True))
            self.state.set_value(self._kv_key(prefix), hold.to_json())
        return hold

    def place_tag(
        self, tag: str, reason: str, *, store: ObjectStore | None = None, within: str = "", who: str | None = None
    ) -> Hold:
        """Hold every object under ``within`` carrying ``tag`` (``<key>=<value>``: an S3 object tag, or a
        key-set tag of :class:`KeySetTags`)."""
        name, value = parse_tag(tag)
        check_list_prefix(within)
        keys = tagged_keys(store, self.state, tag, within)
        selector = (("tag", f"{name}={value}"), ("within", within))
        return self._place_keys(
            self._new(f"tag:{name}={value}", reason, who, kind="tag", selector=selector), keys, store
        )

    def place_user(
        self,
        user_id: str | int,
        reason: str,
        *,
        store: ObjectStore,
        handles: Iterable[str] = (),
        warehouse: Any | None = None,
        who: str | None = None,
        find_keys: FindUserKeys | None = None,
    ) -> Hold:
        """Hold every object about or mentioning the user (``find_keys(user_id, handles)``, by default a scan of
        the archive with the erasure matcher: :func:`user_keys`)."""
        from tiklive_assets.storage.keys import check_id

        uid = check_id(str(user_id), "user_id")
        known = frozenset(h.strip().lstrip("@").lower() for h in handles if h and h.strip())
        if find_keys is None:
            keys, known = user_keys(store, uid, known, warehouse=warehouse, state=self.state)
        else:
            keys = set(find_keys(uid, known))
        selector = (("user_id", uid), ("handles", ",".join(sorted(known))))
        return self._place_keys(self._new(f"user:{uid}", reason, who, kind="user", selector=selector), keys, store)

    def _place_keys(self, hold: Hold, keys: set[str], store: ObjectStore | None) -> Hold:
        """Record (then lock) a tag or user hold; placed again, it keeps the keys it held: a key-set hold only
        grows until it is released."""
        kv_key = KEYSET_HOLD_KV_PREFIX + hold.prefix
        if (before := self.state.get_value(kv_key)) is not None:
            keys = keys | _decode(kv_key, before).keys
        hold = replace(hold, keys=frozenset(keys))
        self.state.set_value(kv_key, hold.to_json())
        if store is not None:
            hold = replace(hold, enforcement=enforce(store, self._held_keys(hold, store), True))
            self.state.set_value(kv_key, hold.to_json())
        return hold

    def _held_keys(self, hold: Hold, store: ObjectStore) -> list[str]:
        """The stored objects ``hold`` keeps: its loose keys, and the bundles holding any key it covers."""
        from .bundled import bundles_of_keys, bundles_under

        if hold.kind == "prefix":
            return [info.key for info in store.list(hold.prefix)] + bundles_under(store, hold.prefix)
        return sorted(hold.keys | set(bundles_of_keys(store, hold.keys)))

    def release(self, prefix: str, *, store: ObjectStore | None = None) -> bool:
        """Remove the hold on exactly ``prefix``; False when there was none."""
        return self._release(self._kv_key(prefix), store)

    def release_tag(self, tag: str, *, store: ObjectStore | None = None) -> bool:
        name, value = parse_tag(tag)
        return self._release(f"{KEYSET_HOLD_KV_PREFIX}tag:{name}={value}", store)

    def release_user(self, user_id: str | int, *, store: ObjectStore | None = None) -> bool:
        return self._release(f"{KEYSET_HOLD_KV_PREFIX}user:{user_id}", store)

    def _release(self, kv_key: str, store: ObjectStore | None) -> bool:
        """The store's locks go first (keys another hold still covers stay locked), then the record: a release
        interrupted half way is finished by running it again."""
        value = self.state.get_value(kv_key)
        if value is None:
            return False
        hold = _decode(kv_key, value)
        if store is not None:
            from tiklive_assets.storage.bundles import parse_bundle_key

            from .bundled import bundle_hold

            others = HoldSet(h for h in self.list() if (h.kind, h.prefix) != (hold.kind, hold.prefix))

            def free(key: str) -> bool:  # no other hold keeps it (a bundle: none of its members either)
                return (bundle_hold if parse_bundle_key(key) else _covers_key)(others, store, key) is None

            enforce(store, [k for k in self._held_keys(hold, store) if free(k)], False)
        return self.state.delete_value(kv_key)

    def refresh(self, store: ObjectStore, *, warehouse: Any | None = None) -> list[Hold]:
        """Find the objects archived since each tag or user hold was placed, and lock every held key on a store
        with Object Lock (prefix holds included: objects written under them since); returns the holds."""
        out = []
        for hold in self.list():
            if hold.kind == "prefix":
                hold = replace(hold, enforcement=enforce(store, self._held_keys(hold, store), True))
                self.state.set_value(self._kv_key(hold.prefix), hold.to_json())
                out.append(hold)
                continue
            selector = dict(hold.selector)
            if hold.kind == "tag":
                keys = tagged_keys(store, self.state, selector["tag"], selector.get("within", ""))
            else:
                handles = [h for h in selector.get("handles", "").split(",") if h]
                keys = user_keys(store, selector["user_id"], handles, warehouse=warehouse, state=self.state)[0]
            out.append(self._place_keys(hold, keys, store))
        return out

    def get(self, prefix: str) -> Hold | None:
        value = self.state.get_value(self._kv_key(prefix))
        return None if value is None else _decode(self._kv_key(prefix), value)

    def list(self) -> list[Hold]:
        """Prefix holds in prefix order, then tag and user holds in name order."""
        rows = kv_items(self.state, HOLD_KV_PREFIX) + kv_items(self.state, KEYSET_HOLD_KV_PREFIX)
        return [_decode(key, value) for key, value in rows if value is not None]

    def snapshot(self) -> HoldSet:
        return HoldSet(self.list())

    def covers(self, key: str) -> Hold | None:
        """The hold covering ``key`` (the longest matching prefix, else a tag or user hold), or None."""
        return self.snapshot().covers(key)


class HoldSet:
    """An in-memory set of holds (what :meth:`LegalHolds.snapshot` returns); also usable on its own in tests."""

    def __init__(self, holds: Iterable[Hold] = ()) -> None:
        self.holds = sorted(holds, key=lambda h: (h.kind != "prefix", -len(h.prefix), h.prefix))

    def __bool__(self) -> bool:
        return bool(self.holds)

    def __iter__(self) -> Iterator[Hold]:
        return iter(self.holds)

    def covers(self, key: str) -> Hold | None:
        for hold in self.holds:  # longest prefix first, then the key-set holds
            if hold.covers(key):
                return hold
        return None

    def overlapping(self, prefix: str) -> list[Hold]:
        return [h for h in self.holds if h.overlaps(prefix)]

    def as_prefixes(self) -> list[Hold]:
        """The holds as prefix holds only: each key of a tag or user hold becomes a prefix hold on that key (what
        S3 Lifecycle filters, which know only prefixes, can leave out)."""
        out = []
        for hold in self.holds:
            if hold.kind == "prefix":
                out.append(hold)
            else:
                out += [replace(hold, prefix=key, kind="prefix", keys=frozenset()) for key in sorted(hold.keys)]
        return out


def _covers_key(holds: HoldSet, _store: ObjectStore, key: str) -> Hold | None:
    return holds.covers(key)


def as_holdset(holds: LegalHolds | HoldSet | Iterable[Hold] | None) -> HoldSet:
    if holds is None:
        return HoldSet()
    if isinstance(holds, HoldSet):
        return holds
    if isinstance(holds, LegalHolds):
        return holds.snapshot()
    return HoldSet(holds)


def _decode(kv_key: str, value: str) -> Hold:
    """The hold stored at ``kv_key`` (a prefix hold's prefix is the rest of its kv key)."""
    keyset = kv_key.startswith(KEYSET_HOLD_KV_PREFIX)
    name = kv_key[len(KEYSET_HOLD_KV_PREFIX if keyset else HOLD_KV_PREFIX) :]
    try:
        data = json.loads(value)
        return Hold(
            prefix=name,
            reason=str(data.get("reason", "")),
            placed_by=str(data.get("placed_by", "")),
            placed_at=str(data.get("placed_at", "")),
            kind=str(data.get("kind", name.partition(":")[0])) if keyset else "prefix",
            keys=frozenset(str(k) for k in data.get("keys", ())),
            enforcement=tuple(str(line) for line in data.get("enforcement", ())),
            selector=tuple(sorted((str(k), str(v)) for k, v in dict(data.get("selector", {})).items())),
        )
    except (ValueError, AttributeError, TypeError):  # a hand-written value: still a hold
        kind = name.partition(":")[0] if keyset else "prefix"
        return Hold(prefix=name, reason=str(value), placed_by="", placed_at="", kind=kind)

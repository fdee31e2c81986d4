"""MirroredStore: every write to two stores (R2 primary, B2 secondary); reads from the primary; misses journaled.

A key the secondary did not take is journaled durably *in the primary* as a marker object
``_mirror/unreplicated/<key>`` (its body is the key). The primary is the one place every host and every process
that writes the archive can see, it just took the key (so it is up), and a marker survives a crash, a restart or a
pod moving to another host, which an in-memory list or a file under one host's ``TIKLIVE_HOME`` would not. The
marker's own modification time says since when the key has been missing from the secondary. :func:`repair`
(the ``mirror_repair`` job and ``tiklive mirror repair``) copies each journaled key from the primary to the
secondary and then removes its marker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from .base import HASH_CHUNK, MAX_KEY_BYTES, Body, LockStatus, ObjectInfo, ObjectStore, PutResult
from .errors import NotFound, StoreError
from .keys import CONFLICT_MARKER, RAW_SUFFIX, is_conflict_key

logger = logging.getLogger(__name__)

JOURNAL_PREFIX = "_mirror/unreplicated/"
_LONG = "_long/"
STOP_AFTER_FAILURES = 3  # keys too long to carry the prefix are journaled under their sha256


def marker_key(key: str) -> str:
    """Where the journal records that ``key`` is missing from the secondary."""
    marker = JOURNAL_PREFIX + key
    if len(marker.encode("utf-8")) > MAX_KEY_BYTES:
        marker = JOURNAL_PREFIX + _LONG + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return marker


def is_journal_key(key: str) -> bool:
    return key.startswith("_mirror/")


def content_type_for(key: str) -> tuple[str, str | None]:
    """(content type, content encoding) of an archive object, from its key (the layout fixes both)."""
    base = key.split(CONFLICT_MARKER)[0] if is_conflict_key(key) else key
    if base.endswith(RAW_SUFFIX):
        return "application/json", "gzip"
    for suffix, content_type in (
        (".json", "application/json"),
        (".mp4", "video/mp4"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".mp3", "audio/mpeg"),
        (".parquet", "application/octet-stream"),
    ):
        if base.endswith(suffix):
            return content_type, None
    return "application/octet-stream", None


class MirroredStore(ObjectStore):
    """Writes go to the primary, then the secondary. The primary is the truth: a primary failure raises; a
    secondary failure is logged, remembered in ``unreplicated`` and journaled in the primary (the response was
    paid for and is safe in the primary, so failing the caller would only make a rerun buy it again). The
    PutResult is the primary's."""

    def __init__(self, primary: ObjectStore, secondary: ObjectStore) -> None:
        self.primary = primary
        self.secondary = secondary
        self.unreplicated: list[str] = []
        from .s3 import PRIMARY_SETTINGS, SECONDARY_SETTINGS, S3Store

        if isinstance(secondary, S3Store) and secondary.settings == PRIMARY_SETTINGS:
            secondary.settings = SECONDARY_SETTINGS  # its errors name the secondary's settings

    def _to_secondary(self, key: str, write: Callable[[], PutResult]) -> PutResult | None:
        try:
            return write()
        except Exception as exc:  # noqa: BLE001 - any secondary failure: keep the primary write, flag the key
            logger.error(
                "secondary %s did not take %s (%s: %s); the primary holds it and the key is journaled "
                "for `tiklive mirror repair`",
                self.secondary.describe(),
                key,
                type(exc).__name__,
                exc,
            )
            self.unreplicated.append(key)
            self.journal(key)
            return None

    def journal(self, key: str) -> None:
        """Record durably that ``key`` is missing from the secondary (idempotent: the marker's body is the key)."""
        try:
            self.primary.put_bytes(marker_key(key), key.encode("utf-8"), content_type="text/plain")
        except Exception as exc:  # noqa: BLE001 - the primary failed right after taking the key
            logger.error(
                "could not journal %s as unreplicated in %s (%s: %s); `tiklive mirror repair --scan` "
                "finds it by comparing the listings",
                key,
                self.primary.describe(),
                type(exc).__name__,
                exc,
            )

    def _put(self, key: str, body: Body, content_type: str, content_encoding: str | None) -> PutResult:
        def write(store: ObjectStore) -> PutResult:
            if isinstance(body, bytes):
                return store.put_bytes(key, body, content_type=content_type, content_encoding=content_encoding)
            return store.put_file(key, body, content_type=content_type, content_encoding=content_encoding)

        first = write(self.primary)
        return self._reconcile(first, self._to_secondary(key, lambda: write(self.secondary)))

    def _reconcile(self, first: PutResult, second: PutResult | None) -> PutResult:
        if second is not None and (first.status == "conflict") != (second.status == "conflict"):
            logger.warning(
                "mirror disagrees on %s: %s says %s, %s says %s; the copies have diverged",
                first.key,
                self.primary.describe(),
                first.status,
                self.secondary.describe(),
                second.status,
            )
        return first

    def get_bytes(self, key: str) -> bytes:
        return self.primary.get_bytes(key)

    def open_read(self, key: str) -> BinaryIO:
        return self.primary.open_read(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self.primary.read_range(key, start, length)

    def exists(self, key: str) -> bool:
        return self.primary.exists(key)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.primary.stat(key)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        if prefix.startswith("_mirror/"):
            return self.primary.list(prefix)
        return (info for info in self.primary.list(prefix) if not is_journal_key(info.key))

    def delete(self, key: str) -> None:
        self.primary.delete(key)
        self.secondary.delete(key)
        if not is_journal_key(key):
            self.primary.delete(marker_key(key))  # an erased key is never copied back by a repair

    def sweep_incomplete(self, older_than: timedelta) -> int:
        return self.primary.sweep_incomplete(older_than) + self.secondary.sweep_incomplete(older_than)

    def lock_status(self) -> tuple[LockStatus, ...]:
        return self.primary.lock_status() + self.secondary.lock_status()

    def set_legal_hold(self, keys: Iterable[str], on: bool) -> int:
        """Both sides: a side without Object Lock sets nothing (and says so in :meth:`lock_status`)."""
        keys = list(keys)
        return self.primary.set_legal_hold(keys, on) + self.secondary.set_legal_hold(keys, on)

    def is_locked(self, key: str) -> bool:
        return self.primary.is_locked(key) or self.secondary.is_locked(key)

    def has_object_tags(self) -> bool:
        return self.primary.has_object_tags()

    def get_tags(self, key: str) -> dict[str, str]:
        return self.primary.get_tags(key)

    def describe(self) -> str:
        return f"{self.primary.describe()} mirrored to {self.secondary.describe()}"


# -- the journal and its repair -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreplicated:
    key: str  # the archive key missing from the secondary
    marker: str  # its journal entry in the primary
    since: datetime  # when it was first journaled


def unreplicated(store: MirroredStore) -> list[Unreplicated]:
    """Every journaled key, oldest first."""
    out = []
    for info in store.primary.list(JOURNAL_PREFIX):
        if info.key.endswith(".part"):
            continue
        if info.key.startswith(JOURNAL_PREFIX + _LONG) or is_conflict_key(info.key):
            try:
                key = store.primary.get_bytes(info.key).decode("utf-8")
            except NotFound:
                continue
        else:
            key = info.key[len(JOURNAL_PREFIX) :]
        out.append(Unreplicated(key, info.key, info.last_modified))
    return sorted(out, key=lambda u: (u.since, u.key))


@dataclass
class RepairReport:
    journaled: int = 0  # keys found in the journal (plus, with scan, missing from the secondary)
    copied: int = 0
    already_there: int = 0  # the secondary held the same bytes: only the marker went
    gone: int = 0  # deleted from the primary since (erased): nothing to copy
    diverged: list[str] = field(default_factory=list)  # the secondary held other bytes: kept beside them
    failed: list[str] = field(default_factory=list)  # still missing (key: why); the marker stays
    scanned: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _fetch(store: MirroredStore, key: str, scratch: Path) -> Path | None:
    """The primary's object at ``key`` in a local temp file (memory stays bounded); None when it is gone."""
    scratch.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="mirror.", suffix=".part", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as out, store.primary.open_read(key) as body:
            while chunk := body.read(HASH_CHUNK):
                out.write(chunk)
    except NotFound:
        Path(tmp).unlink(missing_ok=True)
        return None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


# one branch per outcome of a key's copy (copied, already there, failed, primary gone); kept in one loop
def repair(  # noqa: C901
    store: MirroredStore,
    *,
    scratch: Path | None = None,
    scan_prefix: str | None = None,
    progress: Callable[[int, int, str, str], None] | None = None,
) -> RepairReport:
    """Copy every journaled key from the primary to the secondary, then drop its marker.

    A key whose copy fails keeps its marker (the next repair tries again) and is listed in ``failed``; a failure
    of the primary itself raises StoreError. ``scan_prefix`` also compares the listings under that prefix and
    copies what the secondary lacks (for keys whose marker could not be written). ``progress(done, total, key,
    outcome)`` is called after each key.
    """
    scratch = scratch or Path(tempfile.gettempdir())
    report = RepairReport()
    todo: list[tuple[str, str | None]] = [(u.key, u.marker) for u in unreplicated(store)]
    if scan_prefix is not None:
        journaled = {key for key, _ in todo}
        for info in store.primary.list(scan_prefix):
            if is_journal_key(info.key) or info.key in journaled:
                continue
            report.scanned += 1
            try:
                missing = store.secondary.stat(info.key) is None
            except StoreError as exc:
                report.failed.append(f"{info.key}: {exc}")
                continue
            if missing:
                todo.append((info.key, None))
    report.journaled = len(todo)
    streak = 0  # consecutive failures: a secondary that is down fails every key, so stop asking it
    for done, (key, marker) in enumerate(todo, start=1):
        if streak >= STOP_AFTER_FAILURES:
            report.failed += [
                f"{k}: not tried, the secondary failed {streak} times in a row" for k, _ in todo[done - 1 :]
            ]
            break
        path = _fetch(store, key, scratch)  # a failure of the primary itself raises: nothing can be repaired
        try:
            if path is None:
                report.gone += 1
                outcome = "gone from the primary"
            else:
                content_type, encoding = content_type_for(key)
                result = store.secondary.put_file(key, path, content_type=content_type, content_encoding=encoding)
                if result.status == "created":
                    report.copied += 1
                    outcome = "copied"
                elif result.status == "identical":
                    report.already_there += 1
                    outcome = "already there"
                else:
                    report.diverged.append(
                        f"{key}: the secondary held other bytes; the primary's copy is at {result.conflict_key} there"
                    )
                    outcome = "diverged"
        except Exception as exc:  # noqa: BLE001 - the secondary still fails: keep the marker, go on
            report.failed.append(f"{key}: {type(exc).__name__}: {exc}")
            outcome = "failed"
            streak += 1
        else:
            streak = 0
            if marker is not None:
                store.primary.delete(marker)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if progress is not None:
            progress(done, len(todo), key, outcome)
    return report


def oldest_unreplicated(store: ObjectStore) -> tuple[int, timedelta | None, list[Unreplicated]]:
    """(count, age of the oldest, the entries) of the journal; (0, None, []) for a store without a secondary."""
    if not isinstance(store, MirroredStore):
        return 0, None, []
    entries = unreplicated(store)
    if not entries:
        return 0, None, []
    return len(entries), datetime.now(UTC) - entries[0].since, entries

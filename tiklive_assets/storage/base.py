"""The ObjectStore interface: atomic, idempotent, never-overwriting writes of keys and bytes, on any backend."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PosixPath
from typing import BinaryIO, Literal

from .errors import NotFound, StoreError, StoreMisconfigured, StoreUnavailable  # noqa: F401 - also imported from here
from .keys import CONFLICT_MARKER, InvalidKeyPart, conflict_key, is_conflict_key  # noqa: F401 - also imported from here

logger = logging.getLogger(__name__)

PutStatus = Literal["created", "identical", "conflict"]
Body = bytes | Path  # what a write stores: the bytes, or a local file streamed from its path

PART_SUFFIX = ".part"
MAX_KEY_BYTES = 1024
HASH_CHUNK = 1 << 20
_RACE_ATTEMPTS = 5
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

KEY_RULE = (
    "a relative '/'-separated key of at most 1024 bytes, without '.' or '..' or empty segments, "
    "backslashes, control characters, a leading '/', or a trailing '.part' (reserved for in-flight writes)"
)
PREFIX_RULE = "'' or the start of a key: relative, no '.' or '..' segments, no backslashes or control characters"


@dataclass(frozen=True)
class PutResult:
    key: str
    status: PutStatus
    size: int
    sha256: str
    conflict_key: str | None = None


class ObjectLocked(StoreError):
    """The store itself refused to delete the object: a version of it is under an S3 Object Lock legal hold (or
    retention). Nothing of that version changed; release the hold first (``tiklive hold release``)."""

    def __init__(self, key: str, where: str) -> None:
        self.key = key
        self.where = where
        super().__init__(f"{where}: refused to delete {key!r}: the store holds it under an S3 Object Lock legal hold")


@dataclass(frozen=True)
class LockStatus:
    """Whether one store (one side of a mirror) enforces legal holds itself, and why (for humans)."""

    where: str
    enforced: bool  # True: the store refuses deletes of held objects (S3 Object Lock); False: tiklive's jobs only
    detail: str


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


def check_key(key: str) -> str:
    """Return ``key`` if it cannot escape the store's root or prefix, else raise InvalidKeyPart."""
    if not isinstance(key, str) or not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyPart("key", key, KEY_RULE)
    if key.startswith("/") or "\\" in key or _CONTROL_RE.search(key) or key.endswith(PART_SUFFIX):
        raise InvalidKeyPart("key", key, KEY_RULE)
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise InvalidKeyPart("key", key, KEY_RULE)
    return key


def check_list_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise InvalidKeyPart("prefix", prefix, PREFIX_RULE)
    if prefix == "":
        return prefix
    if prefix.startswith("/") or "\\" in prefix or _CONTROL_RE.search(prefix):
        raise InvalidKeyPart("prefix", prefix, PREFIX_RULE)
    segments = prefix.split("/")
    if any(s in (".", "..") for s in segments) or any(s == "" for s in segments[:-1]):
        raise InvalidKeyPart("prefix", prefix, PREFIX_RULE)
    return prefix


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


class StagedFile(PosixPath):
    """A local file its writer hands to the store whole: written, closed, never written again, of known sha256
    and size (the downloader computed them from the bytes as it wrote them).

    A store need not read it again to learn them, and a LocalStore on the same filesystem publishes it by hard link
    (the file's data synced first, then the link, then the directory) instead of copying it into a new file: the
    object is the file itself, and the writer's name for it is only removed afterwards. Paths derived from it
    (``.parent``, ``/``) are plain: their ``sha256`` is None.
    """

    sha256: str | None = None
    size: int | None = None

    @classmethod
    def of(cls, path: str | os.PathLike[str], sha256: str, size: int) -> StagedFile:
        staged = cls(path)
        staged.sha256, staged.size = sha256, size
        return staged


def staged_digest(path: Path) -> tuple[str, int] | None:
    """(sha256, size) of a StagedFile that knows them, else None (any other path is read to learn them)."""
    if isinstance(path, StagedFile) and path.sha256 is not None and path.size is not None:
        return path.sha256, path.size
    return None


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(hex sha256, size) of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class ObjectStore(abc.ABC):
    """Keys and bytes. Writes are atomic and idempotent and never overwrite different bytes.

    ``put_bytes``/``put_file`` return ``created`` for a new key, ``identical`` when the key already holds the
    same bytes (nothing written), and ``conflict`` when it holds different bytes: the existing object stays
    untouched and the new bytes go beside it at ``<key>.conflict-<sha256[:16]>`` (``conflict_key``).
    """

    def put_bytes(self, key: str, data: bytes, *, content_type: str, content_encoding: str | None = None) -> PutResult:
        """Store ``data`` at ``key`` atomically; see the class docstring for the three outcomes."""
        return self._put(key, bytes(data), content_type, content_encoding)

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        content_type: str,
        content_encoding: str | None = None,
    ) -> PutResult:
        """Like ``put_bytes``, streaming from a local file that is never read whole into memory."""
        return self._put(key, path if isinstance(path, Path) else Path(path), content_type, content_encoding)

    @abc.abstractmethod
    def _put(self, key: str, body: Body, content_type: str, content_encoding: str | None) -> PutResult:
        """The write behind ``put_bytes`` (``body`` is bytes) and ``put_file`` (``body`` is a local file's path)."""

    # -- reads and housekeeping --

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole object; raises NotFound."""

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A binary file-like object streaming the object (use as a context manager); raises NotFound."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from offset ``start`` (fewer at its end); raises NotFound. A backend
        that can read part of an object (a file seek, an HTTP Range GET) reads only that part."""
        if start < 0 or length < 0:
            raise ValueError(f"read_range({key!r}, {start}, {length}): start and length must be 0 or more")
        return self.get_bytes(key)[start : start + length]

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time, or None when no object is at ``key``."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive), in ascending key order."""
        return self._list(check_list_prefix(prefix))

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        """``list`` for a prefix already checked with :func:`check_list_prefix`."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every object of ``keys`` (missing ones are not an error), as :meth:`delete` does one by one; a
        backend may batch the work (local disk: one directory sync per directory instead of one per object)."""
        for key in keys:
            self.delete(key)

    @abc.abstractmethod
    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Remove leftovers of interrupted writes started more than ``older_than`` ago; returns how many."""

    # -- legal holds the store can enforce itself, and object tags --

    def lock_status(self) -> tuple[LockStatus, ...]:
        """One entry per underlying store: does it refuse deletes of held objects itself? By default no: legal
        holds are then enforced by the jobs that honour them (retention skips held keys, erasure refuses)."""
        return (LockStatus(self.describe(), False, "no store-side lock: held keys are protected by tiklive's jobs"),)

    def set_legal_hold(self, keys: Iterable[str], on: bool) -> int:
        """Turn the store's own legal hold on (or off) for every version of ``keys``; returns the versions set
        (0 on a store that cannot lock objects: see :meth:`lock_status`)."""
        return 0

    def is_locked(self, key: str) -> bool:
        """True when the store itself would refuse to delete ``key``."""
        return False

    def has_object_tags(self) -> bool:
        """True when objects carry tags (S3 object tagging); :meth:`get_tags` is then worth calling."""
        return False

    def get_tags(self, key: str) -> dict[str, str]:
        """The object's tags (``{}`` on a store without tags)."""
        return {}

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store is, for humans and run summaries; never includes credentials."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class CreateIfAbsentStore(ObjectStore):
    """The write protocol shared by single backends, built on one primitive they supply: create-if-absent.

    Try to create; if the key is taken, compare sha256: same bytes -> identical; different -> create the
    conflict copy beside it (itself create-if-absent) and log a warning. A key that vanishes between the
    attempt and the comparison (a concurrent delete) is simply tried again.
    """

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Around every operation: what the backend raises becomes the StoreError :meth:`_store_error` names.

        Missing keys are handled (NotFound, None) before they get here, and StoreErrors pass as they are; what a
        backend does not recognise is raised unchanged."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            error = self._store_error(exc, action, key)
            if error is None:
                raise
            raise error from None

    def _store_error(self, exc: Exception, action: str, key: str | None) -> StoreError | None:
        """The StoreError (naming the part and the setting to fix) for ``exc`` raised while doing ``action`` on
        ``key``, or None for an exception the backend does not recognise."""
        return None

    def _put(self, key: str, body: Body, content_type: str, content_encoding: str | None) -> PutResult:
        check_key(key)
        with self._errors("writing", key):
            if isinstance(body, bytes):
                data = body
                digest, size = hashlib.sha256(data).hexdigest(), len(data)

                def create(target: str) -> bool:
                    return self._create_from_bytes(target, data, digest, content_type, content_encoding)

            else:
                source = body
                digest, size = staged_digest(source) or sha256_file(source)

                def create(target: str) -> bool:
                    return self._create_from_file(target, source, digest, size, content_type, content_encoding)

            return self._settle(key, digest, size, create)

    def _settle(self, key: str, digest: str, size: int, create: Callable[[str], bool]) -> PutResult:
        for attempt in range(_RACE_ATTEMPTS):
            if create(key):
                return PutResult(key, "created", size, digest)
            existing = self._stored_sha256(key)
            if existing is None:  # deleted, or a concurrent write not yet visible: try again
                time.sleep(0.05 * (attempt + 1))
                continue
            if existing == digest:
                return PutResult(key, "identical", size, digest)
            beside = conflict_key(key, digest)
            self._settle_beside(key, beside, digest, create)
            logger.warning(
                "%s: %s already holds different bytes (sha256 %s); kept it and wrote the new bytes "
                "(sha256 %s) beside it at %s",
                self.describe(),
                key,
                existing,
                digest,
                beside,
            )
            return PutResult(key, "conflict", size, digest, beside)
        raise StoreError(f"{self.describe()}: gave up writing {key!r} after {_RACE_ATTEMPTS} racing attempts")

    def _settle_beside(self, key: str, beside: str, digest: str, create: Callable[[str], bool]) -> None:
        for attempt in range(_RACE_ATTEMPTS):
            if create(beside):
                return
            existing = self._stored_sha256(beside)
            if existing == digest:
                return
            if existing is not None:
                raise StoreError(
                    f"{self.describe()}: conflict copy {beside!r} for {key!r} holds yet other bytes "
                    f"(sha256 {existing}, expected {digest}); inspect both objects by hand"
                )
            time.sleep(0.05 * (attempt + 1))
        raise StoreError(f"{self.describe()}: gave up writing conflict copy {beside!r} after racing attempts")

    @abc.abstractmethod
    def _create_from_bytes(
        self, key: str, data: bytes, sha256: str, content_type: str, content_encoding: str | None
    ) -> bool:
        """Store ``data`` at ``key`` only if nothing is there; True if stored, False if the key was taken."""

    @abc.abstractmethod
    def _create_from_file(
        self, key: str, path: Path, sha256: str, size: int, content_type: str, content_encoding: str | None
    ) -> bool:
        """Like ``_create_from_bytes`` but streaming from a local file."""

    @abc.abstractmethod
    def _stored_sha256(self, key: str) -> str | None:
        """sha256 of the object at ``key``, or None when there is none."""

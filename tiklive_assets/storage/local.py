"""LocalStore: the ObjectStore on a local directory, written with temp file + fsync + hard link, never overwriting."""

from __future__ import annotations

import errno
import hashlib
import os
import stat as stat_mode
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from .base import (
    HASH_CHUNK,
    PART_SUFFIX,
    CreateIfAbsentStore,
    LockStatus,
    ObjectInfo,
    check_key,
    sha256_file,
    staged_digest,
)
from .errors import NotFound, StoreError, StoreMisconfigured, StoreUnavailable

_FILE_MODE = 0o644
_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


class LocalStore(CreateIfAbsentStore):
    """Objects as files under ``root``; key ``a/b/c`` is ``root/a/b/c``.

    A write goes to ``<name>.<random>.part`` in the target directory, is fsynced, then published with
    ``os.link``, which fails instead of replacing when the name exists, so concurrent writers of the same key
    never overwrite each other. In-flight ``.part`` files are invisible to ``list`` and are swept by
    :meth:`remove_stale_parts` once a crash has orphaned them. Nothing touches the disk until the first call.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _store_error(self, exc: Exception, action: str, key: str | None) -> StoreError | None:
        """An OSError of the disk (full, read-only, denied, failing) becomes a StoreError naming the path.

        What reaches here says nothing about the id or page being written, so it is systemic: the run stops and
        no id is blamed.
        """
        if not isinstance(exc, OSError):
            return None
        what = f"{action} {key!r} under {self.root}" if key else f"{action} {self.root}"
        reason = exc.strerror or type(exc).__name__
        where = getattr(exc, "filename", None) or self.root
        if exc.errno in _FULL:
            return StoreUnavailable(
                f"{what} failed: the disk is full ({reason}, at {where}). Free space there or move the "
                "archive (TIKLIVE_HOME, or TIKLIVE_ARCHIVE_BUCKET for a bucket); nothing is blamed on any id: "
                "rerun once there is room"
            )
        if exc.errno in _DENIED:
            return StoreMisconfigured(
                f"{what} failed: {reason} at {where}. The archive directory must be writable by this user: fix "
                "its permissions or point TIKLIVE_HOME elsewhere"
            )
        return StoreUnavailable(
            f"{what} failed: {reason} (errno {exc.errno}, at {where}). The disk under TIKLIVE_HOME is failing or "
            "unavailable; nothing is blamed on any id: rerun once it is fixed"
        )

    # -- writes --

    def _create_from_bytes(
        self, key: str, data: bytes, sha256: str, content_type: str, content_encoding: str | None
    ) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        return self._publish(path, lambda out: out.write(data))

    def _create_from_file(
        self, key: str, path: Path, sha256: str, size: int, content_type: str, content_encoding: str | None
    ) -> bool:
        target = self._path(key)
        if target.exists():
            return False
        if staged_digest(path) == (sha256, size):
            adopted = self._adopt(path, target, size)
            if adopted is not None:
                return adopted

        def copy(out: BinaryIO) -> None:
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(HASH_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise StoreError(f"{path} changed while it was being stored at {key!r}; write it again once complete")

        return self._publish(target, copy)

    def _adopt(self, source: Path, target: Path, size: int) -> bool | None:
        """Publish a StagedFile by hard link: its data synced, linked at ``target`` (never replacing), the directory
        synced. True if stored, False if the key was taken; None when it cannot be linked here (another
        filesystem, no hard links, already linked elsewhere, not the size it claims): the caller copies instead.

        Creating and later deleting a file per download is what a copy costs beyond the bytes, and on ext4 without
        a journal every inode freed in the last half minute is skipped, one by one, by each file created after it:
        the link leaves no inode to free."""
        try:
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat_mode.S_ISREG(st.st_mode) or st.st_size != size or st.st_nlink != 1:
                return None
            os.fchmod(fd, _FILE_MODE)
            os.fsync(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        self._makedirs(target.parent)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in _NO_HARDLINKS:
                return None
            raise
        _fsync_dir(target.parent)
        return True

    def _publish(self, path: Path, write: Callable[[BinaryIO], object]) -> bool:
        self._makedirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=PART_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), _FILE_MODE)
                write(out)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno in _NO_HARDLINKS:
                    raise StoreError(
                        f"{self.root} does not support hard links ({exc.strerror}); LocalStore needs them to "
                        "publish without overwriting: use a local POSIX filesystem or an S3 store"
                    ) from exc
                raise
            _fsync_dir(path.parent)
            return True
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)

    def _makedirs(self, directory: Path) -> None:
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for new in reversed(missing):
            try:
                new.mkdir()
            except FileExistsError:
                if not new.is_dir():
                    raise
            _fsync_dir(new.parent)

    def _stored_sha256(self, key: str) -> str | None:
        try:
            return sha256_file(self._path(key))[0]
        except FileNotFoundError:
            return None

    # -- reads --

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._errors("reading", key):
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFound(key, self.describe()) from None

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        with self._errors("reading", key):
            try:
                if path.is_dir():
                    raise IsADirectoryError(path)
                return open(path, "rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFound(key, self.describe()) from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"read_range({key!r}, {start}, {length}): start and length must be 0 or more")
        path = self._path(key)
        with self._errors("reading", key):
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    return f.read(length)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFound(key, self.describe()) from None

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with self._errors("checking", key):
            try:
                st = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        yield from self._walk(start, base, prefix)

    def _walk(self, directory: Path, base: str, prefix: str) -> Iterator[ObjectInfo]:
        # Directories sort as "name/" so the output is in the same byte order an S3 listing uses.
        try:
            with os.scandir(directory) as scan:
                entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in scan]
        except (FileNotFoundError, NotADirectoryError):
            return
        for sort_name, entry in sorted(entries, key=lambda pair: pair[0]):
            key = base + sort_name
            if sort_name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif (
                key.startswith(prefix) and not entry.name.endswith(PART_SUFFIX) and entry.is_file(follow_symlinks=False)
            ):
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors("deleting", key):
            try:
                path.unlink()
            except FileNotFoundError:
                return
        _fsync_dir(path.parent)

    def delete_many(self, keys: Iterable[str]) -> None:
        directories: dict[Path, None] = {}
        for key in keys:
            path = self._path(key)
            with self._errors("deleting", key):
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
            directories[path.parent] = None
        for directory in directories:
            _fsync_dir(directory)

    # -- housekeeping --

    def remove_stale_parts(self, older_than: timedelta) -> int:
        """Delete ``*.part`` files (orphans of crashed writes) last modified more than ``older_than`` ago."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if not name.endswith(PART_SUFFIX):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def sweep_incomplete(self, older_than: timedelta) -> int:
        return self.remove_stale_parts(older_than)

    def describe(self) -> str:
        return str(self.root)

    def lock_status(self) -> tuple[LockStatus, ...]:
        return (
            LockStatus(self.describe(), False, "local disk has no object lock: held keys are protected by tiklive"),
        )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""MirroredStore: every write to two stores (R2 primary, B2 secondary, per seed 000); reads from the primary."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from .base import ObjectInfo, ObjectStore, PutResult

logger = logging.getLogger(__name__)


class MirroredStore(ObjectStore):
    """Writes go to the primary, then the secondary. The primary is the truth: a primary failure raises; a
    secondary failure is logged and remembered in ``unreplicated`` (the response was paid for and is safe in the
    primary, so failing the caller would only make a rerun buy it again). The PutResult is the primary's."""

    def __init__(self, primary: ObjectStore, secondary: ObjectStore) -> None:
        self.primary = primary
        self.secondary = secondary
        self.unreplicated: list[str] = []

    def _to_secondary(self, key: str, write) -> PutResult | None:
        try:
            return write()
        except Exception as exc:  # noqa: BLE001 - any secondary failure: keep the primary write, flag the key
            logger.error("secondary %s did not take %s (%s: %s); the primary holds it",
                         self.secondary.describe(), key, type(exc).__name__, exc)
            self.unreplicated.append(key)
            return None

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, content_encoding: str | None = None
    ) -> PutResult:
        first = self.primary.put_bytes(key, data, content_type=content_type, content_encoding=content_encoding)
        second = self._to_secondary(key, lambda: self.secondary.put_bytes(
            key, data, content_type=content_type, content_encoding=content_encoding))
        return self._reconcile(first, second)

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        content_type: str,
        content_encoding: str | None = None,
    ) -> PutResult:
        first = self.primary.put_file(key, Path(path), content_type=content_type, content_encoding=content_encoding)
        second = self._to_secondary(key, lambda: self.secondary.put_file(
            key, Path(path), content_type=content_type, content_encoding=content_encoding))
        return self._reconcile(first, second)

    def _reconcile(self, first: PutResult, second: PutResult | None) -> PutResult:
        if second is not None and (first.status == "conflict") != (second.status == "conflict"):
            logger.warning(
                "mirror disagrees on %s: %s says %s, %s says %s; the copies have diverged",
                first.key, self.primary.describe(), first.status, self.secondary.describe(), second.status,
            )
        return first

    def get_bytes(self, key: str) -> bytes:
        return self.primary.get_bytes(key)

    def open_read(self, key: str) -> BinaryIO:
        return self.primary.open_read(key)

    def exists(self, key: str) -> bool:
        return self.primary.exists(key)

    def stat(self, key: str) -> ObjectInfo | None:
        return self.primary.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.primary.list(prefix)

    def delete(self, key: str) -> None:
        self.primary.delete(key)
        self.secondary.delete(key)

    def sweep_incomplete(self, older_than: timedelta) -> int:
        return self.primary.sweep_incomplete(older_than) + self.secondary.sweep_incomplete(older_than)

    def describe(self) -> str:
        return f"{self.primary.describe()} mirrored to {self.secondary.describe()}"

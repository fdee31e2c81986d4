"""The one raw-archive writer both APIs use: each response body as gzip JSON at its key, counted, never lost.

The key (prefix, ingest day, endpoint, slug) is the caller's; this writer owns what happens to the bytes:

- the body is gzip-compressed with a fixed level and the header's MTIME the caller gives (the fetch time for
  TikLiveAPI, 0 for the Research API), so the same answer always makes the same object;
- a key that already holds exactly this body (compared decompressed) is left alone and counted ``identical``;
  different bytes go beside it as a conflict copy (the store's rule), counted ``conflict`` and listed;
- a body the store cannot take (down, full, refusing) is kept in the spool when one is configured (a local
  directory; the same gzip bytes under the same key, written atomically) and the systemic StoreError is raised,
  which stops the run without blaming any id. :meth:`ArchiveWriter.flush_spool` writes the spool to the store
  first thing in the next session, under the same rules, then empties it.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections import Counter
from datetime import date
from pathlib import Path

from tiklive_assets.storage import LocalStore, ObjectStore, StoreError
from tiklive_assets.storage.base import CONFLICT_MARKER, is_conflict_key

log = logging.getLogger(__name__)

GZIP_LEVEL = 6
JSON = "application/json"


class ArchiveWriter:
    """Writes the responses of one ingest day under ``prefix``; counts what it wrote for materialization metadata.

    Thread-safe. ``spool`` (a directory, or a LocalStore on it) keeps responses the store could not take; without
    one a failed write only raises.
    """

    def __init__(self, store: ObjectStore, day: date, prefix: str, spool: Path | LocalStore | None = None) -> None:
        self.store = store
        self.day = day
        self.prefix = prefix
        self.written: Counter[str] = Counter()  # created / identical / conflict
        self.bytes_written = 0
        self.keys: list[str] = []  # every key this writer was asked to write, in order
        self.conflicts: list[str] = []  # the conflict copies' keys
        self.spooled: list[str] = []  # keys this session could not store, kept in the spool
        self.flushed: Counter[str] = Counter()  # spooled by an earlier session, stored by this one
        self._lock = threading.Lock()
        self._spool: LocalStore | None = None
        self.spool = spool

    @property
    def spool(self) -> LocalStore | None:
        return self._spool

    @spool.setter
    def spool(self, value: Path | LocalStore | None) -> None:
        self._spool = LocalStore(value) if value is not None and not isinstance(value, LocalStore) else value

    def put(self, key: str, body: bytes, mtime: int) -> str:
        """Store ``body`` at ``key`` (gzip, MTIME ``mtime``); if the store fails, spool it and raise StoreError."""
        payload = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=mtime)
        with self._lock:
            self.keys.append(key)
        try:
            self._store(key, body, payload, self.written)
        except Exception as exc:  # noqa: BLE001 - whatever stopped the store, the paid response is kept
            raise self._spool_failed(key, payload, exc) from exc
        return key

    def _store(self, key: str, body: bytes, payload: bytes, counts: Counter[str]) -> None:
        if self._same_body_stored(key, body):  # the same response again: nothing new to keep
            with self._lock:
                counts["identical"] += 1
            return
        result = self.store.put_bytes(key, payload, content_type=JSON, content_encoding="gzip")
        with self._lock:
            counts[result.status] += 1
            if result.status != "identical":
                self.bytes_written += len(payload)
            if result.status == "conflict" and result.conflict_key:
                self.conflicts.append(result.conflict_key)

    def _same_body_stored(self, key: str, body: bytes) -> bool:
        """Whether ``key`` already holds exactly this body (compared decompressed: the header's MTIME may differ)."""
        if not self.store.exists(key):
            return False
        try:
            return gzip.decompress(self.store.get_bytes(key)) == body
        except (OSError, EOFError):
            return False  # unreadable: the new bytes go beside it and the conflict is flagged

    def _spool_failed(self, key: str, payload: bytes, exc: Exception) -> StoreError:
        """Keep ``payload`` in the spool; the systemic error to raise, saying where the response is."""
        problem = (
            str(exc)
            if isinstance(exc, StoreError)
            else f"{self.store.describe()}: writing {key!r} failed: {type(exc).__name__}: {exc}"
        )
        kind = type(exc) if isinstance(exc, StoreError) else StoreError
        if self.spool is None:
            return kind(f"{problem}. The response to {key} was not kept (no spool configured)")
        try:
            self.spool.put_bytes(key, payload, content_type=JSON, content_encoding="gzip")
        except Exception as spool_exc:  # noqa: BLE001 - the local disk failed too: say so, loudly
            log.error(
                "could not spool %s to %s either (%s: %s): this response is lost and will be bought again",
                key,
                self.spool.describe(),
                type(spool_exc).__name__,
                spool_exc,
            )
            return kind(
                f"{problem}. The response to {key} could not be spooled to {self.spool.describe()} either "
                f"({type(spool_exc).__name__}: {spool_exc}); it will be bought again by the next run"
            )
        with self._lock:
            self.spooled.append(key)
        log.warning(
            "store failed for %s; the response is spooled in %s and goes to the store at the next run",
            key,
            self.spool.describe(),
        )
        return kind(
            f"{problem}. The response already paid for is kept in {self.spool.describe()} and is written to "
            "the store first thing at the next run"
        )

    def flush_spool(self) -> Counter[str]:
        """Write every spooled response to the store, then remove it from the spool; returns the outcomes.

        A spooled conflict copy (the same request answered differently while the store was down) goes to its own
        key, so the store keeps it beside the first answer as usual. A StoreError stops the flush: what is left
        stays spooled for the next session.
        """
        if self.spool is None:
            return self.flushed
        for info in list(self.spool.list("")):
            target = info.key.split(CONFLICT_MARKER)[0] if is_conflict_key(info.key) else info.key
            payload = self.spool.get_bytes(info.key)
            try:
                body = gzip.decompress(payload)
            except (OSError, EOFError):  # cannot happen for a spool written atomically; keep it for a human
                log.error("spooled object %s in %s is not gzip; left there", info.key, self.spool.describe())
                continue
            self._store(target, body, payload, self.flushed)
            self.spool.delete(info.key)
            log.info("spooled response %s written to %s", target, self.store.describe())
        return self.flushed

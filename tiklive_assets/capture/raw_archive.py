"""The raw archive: every API response exactly as received, gzip JSON, under date-partitioned keys.

It is the source of truth. The client hands each response here *before* anything parses it; the warehouse
later rebuilds every table from these objects alone. The slug names the paginator (``cursorN``/``timeN``) so a
replay knows how each page was fetched.

A response is paid for before it arrives, so one the store cannot take (down, full, refusing) is never dropped:
it is spooled to local disk (``TIKLIVE_HOME/spool/<key>``, the same gzip bytes, written atomically) and the
systemic StoreError is raised, which stops the run without blaming any id. The next capture session writes the
spool to the store first (same rules: identical bytes change nothing, different bytes go beside), then empties it.
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
from tiklive_assets.storage.keys import check_handle, check_id, raw_key, safe_slug, slug_page
from tiklive_assets.tikliveapi.client import ApiResponse, aweme_id_from_url
from tiklive_assets.tikliveapi.endpoints import BY_NAME, SEARCH_VIDEO, Endpoint, Part

RAW_PREFIX = "tiklive-raw"
log = logging.getLogger(__name__)


def keyword_entity(keyword: str, publish_time=None, sort_by=None, region=None) -> str:
    """One search's identity: the keyword and every filter, tagged (``cats-pt7-sb2-us``); names its slug and cursor."""
    return entity_for(
        SEARCH_VIDEO, {"keyword": keyword, "publish_time": publish_time, "sort_by": sort_by, "region": region}
    )


def _part_value(part: Part, value) -> str:
    if part.check == "handle":
        return check_handle(str(value))
    if part.check == "id":
        return check_id(str(value), part.param)
    if part.check == "post":
        return check_id(aweme_id_from_url(str(value)) or "", "aweme_id")
    if part.check == "text":
        return safe_slug(str(value))
    return part.tag + safe_slug(str(value).lower())  # "lower": a filter value


def entity_for(endpoint: Endpoint, params: dict) -> str:
    """What the slug of ``endpoint``'s response names (the account, post, hashtag or search), from its slug template."""
    if isinstance(endpoint.slug, str):
        return endpoint.slug
    pieces = []
    for part in endpoint.slug:
        if part.when == "always":
            value = params[part.param]
        else:
            value = params.get(part.param)
            if value is None or (part.when == "truthy" and not value):
                continue
        pieces.append(_part_value(part, value))
    return "-".join(pieces)


def slug_for(endpoint: str, params: dict) -> str:
    """The object name of one response, from the request that fetched it (validated: no key escapes its prefix).

    The endpoint's declaration says which parameters name the entity; a paginated endpoint's slug then names the
    page too (``-cursorN`` or ``-timeN``), so a replay knows how the page was fetched."""
    declared = BY_NAME.get(endpoint.strip("/"))
    if declared is None:
        raise ValueError(
            f"no archive slug is defined for endpoint {endpoint!r}; declare the endpoint in "
            "tiklive_assets/tikliveapi/endpoints.py"
        )
    entity = entity_for(declared, params)
    if declared.pages == "none":
        return entity
    return slug_page(entity, declared.pages, params.get(declared.pages, 0) or 0)


class RawArchive:
    """Writes responses of one ingest day to the store; counts what it wrote for materialization metadata.

    ``spool`` (a directory, or a LocalStore on it) keeps responses the store could not take; without one a
    failed write only raises.
    """

    def __init__(self, store: ObjectStore, day: date, prefix: str = RAW_PREFIX, spool: Path | LocalStore | None = None):
        self.store = store
        self.day = day
        self.prefix = prefix
        self.written = Counter()  # created / identical / conflict
        self.bytes_written = 0
        self.conflicts: list[str] = []
        self.spooled: list[str] = []  # keys this session could not store, kept in the spool
        self.flushed = Counter()  # spooled by an earlier session, stored by this one: created / identical / conflict
        self._lock = threading.Lock()
        self.spool = spool

    @property
    def spool(self) -> LocalStore | None:
        return self._spool

    @spool.setter
    def spool(self, value: Path | LocalStore | None) -> None:
        self._spool = LocalStore(value) if value is not None and not isinstance(value, LocalStore) else value

    def key_for(self, response: ApiResponse) -> str:
        slug = slug_for(response.endpoint, response.params)
        if response.status != 200:
            slug += f"-http{response.status}"
        elif response.error_kind:  # a 200 that is not data never takes the key a real response will take
            slug += f"-error-{response.error_kind}"
        return raw_key(self.day, response.endpoint, slug, prefix=self.prefix)

    def write(self, response: ApiResponse) -> str:
        key = self.key_for(response)
        # The gzip header's MTIME carries the fetch time (whole seconds): the capture time travels inside the object,
        # so a replay from a copied or restored archive (new file times) rebuilds identical history rows.
        payload = gzip.compress(response.body, compresslevel=6, mtime=int(response.fetched_at.timestamp()))
        try:
            self._store(key, response.body, payload, self.written)
        except Exception as exc:  # noqa: BLE001 - whatever stopped the store, the paid response is kept
            raise self._spool_failed(key, payload, exc) from exc
        return key

    def _store(self, key: str, body: bytes, payload: bytes, counts: Counter) -> None:
        if self._same_body_stored(key, body):  # the same response again: nothing new to keep
            with self._lock:
                counts["identical"] += 1
            return
        result = self.store.put_bytes(key, payload, content_type="application/json", content_encoding="gzip")
        with self._lock:
            counts[result.status] += 1
            if result.status != "identical":
                self.bytes_written += len(payload)
            if result.status == "conflict" and result.conflict_key:
                self.conflicts.append(result.conflict_key)

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
            self.spool.put_bytes(key, payload, content_type="application/json", content_encoding="gzip")
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

    def flush_spool(self) -> Counter:
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

    def _same_body_stored(self, key: str, body: bytes) -> bool:
        """Whether ``key`` already holds exactly this body (compared decompressed: the header's fetch time differs)."""
        if not self.store.exists(key):
            return False
        try:
            return gzip.decompress(self.store.get_bytes(key)) == body
        except (OSError, EOFError):
            return False  # unreadable: the new bytes go beside it and the conflict is flagged

    __call__ = write

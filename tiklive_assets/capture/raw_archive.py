"""The raw archive: every API response exactly as received, gzip JSON, under date-partitioned keys.

It is the source of truth. The client hands each response here *before* anything parses it; the warehouse
later rebuilds every table from these objects alone. The slug names the paginator (``cursorN``/``timeN``) so a
replay knows how each page was fetched.
"""

from __future__ import annotations

import gzip
import threading
from collections import Counter
from datetime import date

from tiklive_assets.storage import ObjectStore
from tiklive_assets.storage.keys import raw_key, safe_slug, slug_page, check_handle, check_id
from tiklive_assets.tikliveapi.client import ApiResponse, aweme_id_from_url

RAW_PREFIX = "tiklive-raw"


def keyword_entity(keyword: str, publish_time=None, sort_by=None, region=None) -> str:
    """One search's identity: the keyword and every filter, tagged (``cats-pt7-sb2-us``); names its slug and cursor."""
    entity = safe_slug(keyword)
    for value, tag in ((publish_time, "pt"), (sort_by, "sb"), (region, "")):
        if value is not None:
            entity += f"-{tag}{safe_slug(str(value).lower())}"
    return entity


def slug_for(endpoint: str, params: dict) -> str:
    """The object name of one response, from the request that fetched it (validated: no key escapes its prefix)."""
    name = endpoint.strip("/")
    cursor = params.get("cursor", 0) or 0
    if name in ("userid", "userinfo-by-username"):
        return check_handle(str(params["username"]))
    if name == "userinfo-by-id":
        return check_id(str(params["userid"]), "userid")
    if name == "user-posts":
        return slug_page(check_id(str(params["userid"]), "userid"), "cursor", cursor)
    if name in ("user-followers", "user-following"):
        return slug_page(check_id(str(params["userid"]), "userid"), "time", params.get("time", 0) or 0)
    if name in ("post-detail", "download-video"):
        return check_id(aweme_id_from_url(str(params["url"])) or "", "aweme_id")
    if name == "post-comments":
        return slug_page(check_id(aweme_id_from_url(str(params["url"])) or "", "aweme_id"), "cursor", cursor)
    if name == "post-comment-replies":
        aweme_id = check_id(aweme_id_from_url(str(params["url"])) or "", "aweme_id")
        comment_id = check_id(str(params["comment_id"]), "comment_id")
        return slug_page(f"{aweme_id}-{comment_id}", "cursor", cursor)
    if name == "challenge-posts":
        entity = check_id(str(params["challenge_id"]), "challenge_id")
        if params.get("region"):
            entity += f"-{safe_slug(str(params['region']).lower())}"
        return slug_page(entity, "cursor", cursor)
    if name == "search-video":
        entity = keyword_entity(str(params["keyword"]), params.get("publish_time"), params.get("sort_by"), params.get("region"))
        return slug_page(entity, "cursor", cursor)
    if name == "music-posts":
        return slug_page(check_id(str(params["music_id"]), "music_id"), "cursor", cursor)
    if name == "search-user":
        return slug_page(safe_slug(str(params["keyword"])), "cursor", cursor)
    if name == "challenge-info-id":
        return check_id(str(params["challenge_id"]), "challenge_id")
    if name == "challenge-info-name":
        return safe_slug(str(params["challenge_name"]))
    if name == "region-list":
        return "regions"
    raise ValueError(f"no archive slug is defined for endpoint {endpoint!r}; add one to slug_for()")


class RawArchive:
    """Writes responses of one ingest day to the store; counts what it wrote for materialization metadata."""

    def __init__(self, store: ObjectStore, day: date, prefix: str = RAW_PREFIX):
        self.store = store
        self.day = day
        self.prefix = prefix
        self.written = Counter()  # created / identical / conflict
        self.bytes_written = 0
        self.conflicts: list[str] = []
        self._lock = threading.Lock()

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
        if self._same_body_stored(key, response.body):  # the same response again: nothing new to keep
            with self._lock:
                self.written["identical"] += 1
            return key
        payload = gzip.compress(response.body, compresslevel=6, mtime=int(response.fetched_at.timestamp()))
        result = self.store.put_bytes(key, payload, content_type="application/json", content_encoding="gzip")
        with self._lock:
            self.written[result.status] += 1
            if result.status != "identical":
                self.bytes_written += len(payload)
            if result.status == "conflict" and result.conflict_key:
                self.conflicts.append(result.conflict_key)
        return key

    def _same_body_stored(self, key: str, body: bytes) -> bool:
        """Whether ``key`` already holds exactly this body (compared decompressed: the header's fetch time differs)."""
        if not self.store.exists(key):
            return False
        try:
            return gzip.decompress(self.store.get_bytes(key)) == body
        except (OSError, EOFError):
            return False  # unreadable: the new bytes go beside it and the conflict is flagged

    __call__ = write

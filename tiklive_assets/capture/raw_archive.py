"""The raw archive: every API response exactly as received, gzip JSON, under date-partitioned keys.

It is the source of truth. The client hands each response here *before* anything parses it; the warehouse
later rebuilds every table from these objects alone. The slug names the paginator (``cursorN``/``timeN``) so a
replay knows how each page was fetched.

A response is paid for before it arrives, so one the store cannot take (down, full, refusing) is never dropped:
the writer (:mod:`.archive_writer`, shared with the Research API) spools it to local disk
(``TIKLIVE_HOME/spool/<key>``) and raises the systemic StoreError; the next capture session writes the spool to
the store first, then empties it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tiklive_assets.capture.archive_writer import ArchiveWriter
from tiklive_assets.storage import LocalStore, ObjectStore
from tiklive_assets.storage.keys import RAW_PREFIX, check_handle, check_id, raw_key, safe_slug, slug_page
from tiklive_assets.tikliveapi.client import ApiResponse, aweme_id_from_url
from tiklive_assets.tikliveapi.endpoints import BY_NAME, SEARCH_VIDEO, Endpoint, Part


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


class RawArchive(ArchiveWriter):
    """The TikLiveAPI client's ``on_response`` hook: writes each response of one ingest day under ``tiklive-raw/``.

    ``spool`` (a directory, or a LocalStore on it) keeps responses the store could not take; without one a
    failed write only raises.
    """

    def __init__(self, store: ObjectStore, day: date, prefix: str = RAW_PREFIX, spool: Path | LocalStore | None = None):
        super().__init__(store, day, prefix, spool)

    def key_for(self, response: ApiResponse) -> str:
        slug = slug_for(response.endpoint, response.params)
        if response.status != 200:
            slug += f"-http{response.status}"
        elif response.error_kind:  # a 200 that is not data never takes the key a real response will take
            slug += f"-error-{response.error_kind}"
        return raw_key(self.day, response.endpoint, slug, prefix=self.prefix)

    def write(self, response: ApiResponse) -> str:
        # The gzip header's MTIME carries the fetch time (whole seconds): the capture time travels inside the object,
        # so a replay from a copied or restored archive (new file times) rebuilds identical history rows.
        return self.put(self.key_for(response), response.body, int(response.fetched_at.timestamp()))

    __call__ = write

"""The Research API raw archive: every response as received, gzip JSON.

Keys are ``research-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz``.

Partitioned by ingest date like ``tiklive-raw/``. The slug says how the page was fetched, so the warehouse can be
rebuilt from these objects alone:

- ``video-query/<YYYYMMDD-YYYYMMDD>-q<query hash>-g<generation>-cursor<N>``: one page of a window's search.
  The generation grows when a window restarts (expired ``search_id``) or is collected again; the warehouse
  lets a window's latest complete generation replace the earlier ones.
- ``user-info/<username>``, ``user-followers/<username>-cursor<N>``, ``user-following/<username>-cursor<N>``
  (N is the Unix-time cursor sent, 0 for the first page, which sends none).
- ``video-comments/<video id>-cursor<N>``: one page of a video's comments.
- Error responses get ``-<code>-<sha256[:8] of the body>`` appended: kept for the record, never parsed as data.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

from tiklive_assets.capture.archive_writer import ArchiveWriter
from tiklive_assets.research.client import (
    USER_FOLLOWERS,
    USER_FOLLOWING,
    USER_INFO,
    VIDEO_COMMENTS,
    VIDEO_FIELDS,
    VIDEO_QUERY,
    ResearchResponse,
    query_hash,
)
from tiklive_assets.research.keys import (  # noqa: F401 - re-exported for callers of the archive
    RESEARCH_PREFIX,
    USER_PAGE_SLUG,
    VIDEO_SLUG,
    VideoSlug,
    parse_video_slug,
    video_slug,
)
from tiklive_assets.research.windows import Window
from tiklive_assets.storage import LocalStore, ObjectStore
from tiklive_assets.storage.keys import check_handle, raw_key

ENDPOINT_NAMES = {
    VIDEO_QUERY: "video-query",
    USER_INFO: "user-info",
    USER_FOLLOWERS: "user-followers",
    USER_FOLLOWING: "user-following",
    VIDEO_COMMENTS: "video-comments",
}


class ResearchArchive(ArchiveWriter):
    """The client's ``on_response`` hook: writes each response of one ingest day; counts what it wrote.

    ``generation`` is set by the collector before it walks a window (one collector per archive, one thread).
    The writer is the TikLiveAPI archive's (:mod:`tiklive_assets.capture.archive_writer`); only the keys differ.
    """

    def __init__(
        self, store: ObjectStore, day: date, prefix: str = RESEARCH_PREFIX, spool: Path | LocalStore | None = None
    ) -> None:
        super().__init__(store, day, prefix, spool)
        self.generation = 1

    def slug_for(self, response: ResearchResponse) -> str:
        req = response.request
        if response.endpoint == VIDEO_QUERY:
            window = Window.from_key(f"{req['start_date']}-{req['end_date']}")
            qhash = query_hash(req["query"], response.fields or VIDEO_FIELDS)
            slug = video_slug(window, qhash, self.generation, int(req.get("cursor") or 0))
        elif response.endpoint == USER_INFO:
            slug = check_handle(str(req["username"]))
        elif response.endpoint in (USER_FOLLOWERS, USER_FOLLOWING):
            slug = f"{check_handle(str(req['username']))}-cursor{int(req.get('cursor') or 0)}"
        elif response.endpoint == VIDEO_COMMENTS:
            slug = f"{int(req['video_id'])}-cursor{int(req.get('cursor') or 0)}"
        else:
            raise ValueError(f"no research archive slug for endpoint {response.endpoint!r}")
        code = response.error_code
        if response.status != 200 or code != "ok":
            code_part = re.sub(r"[^a-z0-9_]", "", code.lower())[:40] or "error"
            slug += f"-{code_part}-{hashlib.sha256(response.body).hexdigest()[:8]}"
        return slug

    def key_for(self, response: ResearchResponse) -> str:
        return raw_key(self.day, ENDPOINT_NAMES[response.endpoint], self.slug_for(response), prefix=self.prefix)

    def write(self, response: ResearchResponse) -> str:
        return self.put(self.key_for(response), response.body, mtime=0)

    __call__ = write

"""The Research API raw archive: every response as received, gzip JSON.

Keys are ``research-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz``, the folder and slug parts as each endpoint
declares them (:mod:`tiklive_assets.research.endpoints`, whose docstring says how each part is rendered).

Partitioned by ingest date like ``tiklive-raw/``. The slug says how the page was fetched, so the warehouse can be
rebuilt from these objects alone:

- ``video-query/<YYYYMMDD-YYYYMMDD>-q<query hash>-g<generation>-cursor<N>``: one page of a window's search.
  The generation grows when a window restarts (expired ``search_id``) or is collected again; the warehouse
  lets a window's latest complete generation replace the earlier ones.
- ``user-info/<username>``, ``user-followers/<username>-cursor<N>``, ``user-following/<username>-cursor<N>``
  (N is the Unix-time cursor sent, 0 for the first page, which sends none).
- ``video-comments/<video id>-cursor<N>``: one page of a video's comments.
- Error responses get ``-<code>-<sha256[:8] of the body>`` appended: kept for the record, never parsed as data.

The bytes are written by the archive writer both APIs share (:mod:`tiklive_assets.capture.archive_writer`), with
a gzip MTIME of 0: the same answer always makes the same object.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

from tiklive_assets.capture.archive_writer import ArchiveWriter
from tiklive_assets.research.client import ResearchResponse, query_hash
from tiklive_assets.research.endpoints import BY_PATH, VIDEO_FIELDS
from tiklive_assets.research.windows import Window
from tiklive_assets.storage import LocalStore, ObjectStore
from tiklive_assets.storage.keys import RESEARCH_PREFIX, check_handle, raw_key
from tiklive_assets.storage.keys import parse_video_slug as parse_video_slug  # for readers of the archive


class ResearchArchive(ArchiveWriter):
    """The client's ``on_response`` hook: writes each response of one ingest day; counts what it wrote.

    ``generation`` is set by the collector before it walks a window (one collector per archive, one thread).
    """

    def __init__(
        self, store: ObjectStore, day: date, prefix: str = RESEARCH_PREFIX, spool: Path | LocalStore | None = None
    ) -> None:
        super().__init__(store, day, prefix, spool)
        self.generation = 1

    def _part(self, part: str, response: ResearchResponse) -> str:
        req = response.request
        if part == "username":
            return check_handle(str(req["username"]))
        if part == "video_id":
            return str(int(req["video_id"]))
        if part == "window":
            return Window.from_key(f"{req['start_date']}-{req['end_date']}").key
        if part == "query":
            return "q" + query_hash(req["query"], response.fields or VIDEO_FIELDS)
        if part == "generation":
            return f"g{int(self.generation)}"
        raise ValueError(f"{response.endpoint}: no rendering for slug part {part!r}")

    def slug_for(self, response: ResearchResponse) -> str:
        endpoint = BY_PATH.get(response.endpoint)
        if endpoint is None or endpoint.archive is None:
            raise ValueError(f"no research archive slug for endpoint {response.endpoint!r}")
        slug = "-".join(self._part(part, response) for part in endpoint.slug)
        if endpoint.paginated:
            slug += f"-cursor{int(response.request.get('cursor') or 0)}"
        code = response.error_code
        if response.status != 200 or code != "ok":
            code_part = re.sub(r"[^a-z0-9_]", "", code.lower())[:40] or "error"
            slug += f"-{code_part}-{hashlib.sha256(response.body).hexdigest()[:8]}"
        return slug

    def key_for(self, response: ResearchResponse) -> str:
        return raw_key(self.day, BY_PATH[response.endpoint].name, self.slug_for(response), prefix=self.prefix)

    def write(self, response: ResearchResponse) -> str:
        return self.put(self.key_for(response), response.body, mtime=0)

    __call__ = write

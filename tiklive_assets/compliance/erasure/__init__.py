"""GDPR Article 17 erasure (the right to be forgotten covers the raw archive too): find and remove every archived object
and every warehouse row that refers to one TikTok user, the same in the raw archive and in the warehouse.

What counts as the user's data, and what happens to it:

* **deleted whole** - objects *about* the user: ``userinfo-by-id/<id>``, ``user-posts/<id>-…``,
  ``user-followers/<id>-…``, ``user-following/<id>-…``, ``userid/<handle>``, ``userinfo-by-username/<handle>``,
  ``search-user/<handle>-…``, the Research API's ``user-info|user-followers|user-following/<handle>…``; every
  object of the user's posts (``post-detail|download-video/<aweme_id>``, ``post-comments/<aweme_id>-…``,
  ``post-comment-replies/<aweme_id>-…``, ``videos/dt=…/author=<handle>/…``, ``covers/dt=…/<aweme_id>.jpg``); any
  other object whose top-level entity is the user (a /post-detail/ whose author is the user), or that still
  mentions the user after redaction.
* **redacted** - objects where the user is one item among many (a follower list page of someone else, a
  hashtag / music / search listing, a comment page, a Research video query page): the user's items are removed,
  nested references to the user (``reply_to_user``…) become ``null``, ``@handle`` mentions in text become
  ``@[erased]``; the object is deleted and the redacted version put at the same key (stores never overwrite).
* **warehouse** - the user's rows in every table: ``posts`` by author, ``users``, ``user_snapshots``,
  ``comments`` by the user and on the user's posts, ``follow_edges`` on either side, ``post_metrics_history``,
  ``hashtags`` and ``dead_letters`` of the user's posts, and the Research tables when present.

Compacted days (raw objects packed into one bundle per endpoint and day) are erased the same way: the plan finds
members through the archive index or the bundles' indexes, and the bundle is rewritten as its next generation
without the user's members (redacted ones replaced), verified byte for byte, then the old generation deleted
(:mod:`.bundles`); every other member keeps its exact bytes. A hold on any member of a bundle to rewrite refuses.

Finding objects: key-level hits come from listings alone (no GET); every other raw object is streamed through
gzip in bounded chunks and checked for the user id (digit-bounded) and the handles (``"handle"`` or
``@handle``); only hits are parsed. Memory is bounded by one API page per worker.

The package: :mod:`.matcher` (recognising the user), :mod:`.plan` (the objects), :mod:`.warehouse` (the rows),
:mod:`.execute` (``erase_user``) and :mod:`.log` (the erasure log).

The erasure log (state DB kv ``erasure-log:<utc time>-<request id>``) records who ran it, when, how many objects
and rows, and the keys with the user's id and handles masked as ``<subject>``: never the personal data itself.
A legal hold covering any object the erasure would delete or rewrite makes it refuse before changing anything.
"""

from tiklive_assets.storage.keys import day_of_key

from .execute import PENDING_REWRITES, ErasureReport, erase_user, finish_pending_rewrites, subject_ref
from .log import ERASURE_LOG_PREFIX, erasure_log
from .matcher import SUBJECT_MASK, ErasureError, UserMatcher
from .plan import (
    _AWEME_ENDPOINTS,
    _HANDLE_ENDPOINTS,
    _NO_USER_DATA,
    _RESEARCH_HANDLE_ENDPOINTS,
    _USER_ID_ENDPOINTS,
    RAW_PREFIXES,
    Action,
    ErasurePlan,
    PlannedObject,
    find_objects_for_user,
    plan_erasure,
)
from .warehouse import resolve_user

__all__ = [
    "ERASURE_LOG_PREFIX",
    "PENDING_REWRITES",
    "RAW_PREFIXES",
    "SUBJECT_MASK",
    "_AWEME_ENDPOINTS",
    "_HANDLE_ENDPOINTS",
    "_NO_USER_DATA",
    "_RESEARCH_HANDLE_ENDPOINTS",
    "_USER_ID_ENDPOINTS",
    "Action",
    "ErasureError",
    "ErasurePlan",
    "ErasureReport",
    "PlannedObject",
    "UserMatcher",
    "day_of_key",
    "erase_user",
    "erasure_log",
    "find_objects_for_user",
    "finish_pending_rewrites",
    "plan_erasure",
    "resolve_user",
    "subject_ref",
]

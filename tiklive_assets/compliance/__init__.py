"""Compliance for the archive: GDPR erasure, tiered retention, and legal holds that override both.

* :mod:`.erasure`     ``find_objects_for_user`` / ``erase_user``: every object and warehouse row of one user, found
                      through the archive's user-id index (a full scan as an audit, or for days without an index)
* :mod:`.retention`   ``RetentionPolicy``, ``lifecycle_rules`` (S3 Lifecycle JSON), ``apply_retention`` (local disk)
* :mod:`.legal_hold`  ``LegalHolds`` by prefix, tag or user id, recorded in the state DB kv, enforced by the bucket's
                      S3 Object Lock where it has one and by the two above everywhere
* :mod:`.bundled`     the three on compacted days: which bundle holds a raw key, which bundles a hold keeps, and
                      rewriting a bundle without some members (next generation, verified, then the old one deleted)
"""

from .erasure import (
    ErasureError,
    ErasurePlan,
    ErasureReport,
    PlannedObject,
    UserMatcher,
    erase_user,
    erasure_log,
    find_objects_for_user,
    plan_erasure,
    resolve_user,
)
from .legal_hold import Hold, HoldSet, LegalHoldError, LegalHolds
from .retention import (
    LifecycleTooLarge,
    RetentionPolicy,
    RetentionReport,
    apply_lifecycle,
    apply_retention,
    lifecycle_rules,
    unheld_day_prefixes,
)

__all__ = [
    "ErasureError",
    "ErasurePlan",
    "ErasureReport",
    "Hold",
    "HoldSet",
    "LegalHoldError",
    "LegalHolds",
    "LifecycleTooLarge",
    "PlannedObject",
    "RetentionPolicy",
    "RetentionReport",
    "UserMatcher",
    "apply_lifecycle",
    "apply_retention",
    "erase_user",
    "erasure_log",
    "find_objects_for_user",
    "lifecycle_rules",
    "plan_erasure",
    "resolve_user",
    "unheld_day_prefixes",
]

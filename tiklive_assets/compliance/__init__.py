"""Compliance for the archive: GDPR erasure, tiered retention, and legal holds that override both.

* :mod:`.erasure`     ``find_objects_for_user`` / ``erase_user``: every object and warehouse row of one user
* :mod:`.retention`   ``RetentionPolicy``, ``lifecycle_rules`` (S3 Lifecycle JSON), ``apply_retention`` (local disk)
* :mod:`.legal_hold`  ``LegalHolds`` in the state DB kv (``legal-hold:<prefix>``), honoured by the two above
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

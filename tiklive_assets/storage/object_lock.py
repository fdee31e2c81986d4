"""S3 Object Lock legal holds: the bucket itself refuses to delete a held object version.

On a bucket created with Object Lock enabled (which keeps versioning on for good), ``PutObjectLegalHold`` with
status ``ON`` makes one object version undeletable by anyone (this program, another tool, a lifecycle rule) until
the hold is turned ``OFF``; a legal hold has no expiry date and needs no retention mode.

A plain DELETE on a versioned bucket only adds a delete marker and leaves every version behind, so a delete that
the lock could refuse must name the version. :func:`delete_versions` (what :meth:`S3Store.delete` does on such a
bucket) removes every version and delete marker of the key, oldest first: the store refuses a held version with
``AccessDenied``, which becomes :class:`~tiklive_assets.storage.base.ObjectLocked`, and because the newest version
goes last, the object stays readable whenever any of its versions is held.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tiklive_assets.concurrency import bounded_map

from .base import ObjectLocked

if TYPE_CHECKING:
    from .s3 import S3Store

# what a bucket without Object Lock (or a store without the API: R2, some S3-compatible servers) answers
_NO_LOCK_CODES = {
    "ObjectLockConfigurationNotFoundError",
    "NotImplemented",
    "InvalidRequest",
    "MethodNotAllowed",
    "AccessDenied",  # credentials that may not read the configuration: the bucket's lock is then not relied on
    "XNotImplemented",
}
WORKERS = 8


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def lock_configuration(store: S3Store) -> tuple[bool, str]:
    """(Object Lock enabled on the bucket, why we think so), read once per store and remembered."""
    cached = getattr(store, "_object_lock", None)
    if cached is not None:
        return cached
    with store._errors("reading the Object Lock configuration"):
        try:
            config = store.client.get_object_lock_configuration(Bucket=store.bucket)
            enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            why = "Object Lock enabled" if enabled else "Object Lock configuration present but not enabled"
        except ClientError as exc:
            code = _code(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code not in _NO_LOCK_CODES and status not in (403, 405, 501):
                raise
            enabled = False
            why = (
                "the bucket was not created with Object Lock"
                if code == "ObjectLockConfigurationNotFoundError"
                else f"the store does not report Object Lock ({code or status})"
            )
    store._object_lock = (enabled, why)
    return enabled, why


def _versions(store: S3Store, full_key: str) -> list[dict[str, Any]]:
    """Every version and delete marker of exactly ``full_key``, oldest first (the current one last)."""
    found: list[dict[str, Any]] = []
    paginator = store.client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=full_key):
        for kind in ("Versions", "DeleteMarkers"):
            for entry in page.get(kind, []):
                if entry["Key"] == full_key:
                    found.append({**entry, "DeleteMarker": kind == "DeleteMarkers"})
    return sorted(found, key=lambda e: (bool(e.get("IsLatest")), e["LastModified"]))


def set_legal_hold(store: S3Store, keys: Iterable[str], on: bool) -> int:
    """Turn the legal hold ON (or OFF) on every version of every key; returns how many versions were set."""
    status = {"Status": "ON" if on else "OFF"}

    def one(key: str) -> int:
        full_key = store._full(key)
        changed = 0
        with store._errors("setting the Object Lock legal hold on", key):
            for version in _versions(store, full_key):
                if version["DeleteMarker"]:
                    continue
                store.client.put_object_legal_hold(
                    Bucket=store.bucket, Key=full_key, VersionId=version["VersionId"], LegalHold=status
                )
                changed += 1
        return changed

    return sum(bounded_map(one, keys, workers=WORKERS, thread_name_prefix="legal-hold"))


def is_locked(store: S3Store, key: str) -> bool:
    """True when the store itself protects some version of ``key`` (a legal hold ON or a retention date ahead)."""
    full_key = store._full(key)
    with store._errors("reading the Object Lock legal hold of", key):
        return any(_version_locked(store, full_key, v["VersionId"]) for v in _versions(store, full_key))


def _version_locked(store: S3Store, full_key: str, version_id: str) -> bool:
    """A legal hold ON, or a retention date still ahead, on one version (a version without either answers with an
    error on some stores: that is "not locked")."""
    try:
        hold = store.client.get_object_legal_hold(Bucket=store.bucket, Key=full_key, VersionId=version_id)
        if hold.get("LegalHold", {}).get("Status") == "ON":
            return True
    except ClientError:
        pass
    try:
        retention = store.client.get_object_retention(Bucket=store.bucket, Key=full_key, VersionId=version_id)
    except ClientError:
        return False
    until = retention.get("Retention", {}).get("RetainUntilDate")
    return until is not None and until > datetime.now(UTC)


def delete_versions(store: S3Store, key: str) -> None:
    """Delete every version and delete marker of ``key``, oldest first; raise ObjectLocked at the first version
    the store refuses because of its lock (the versions after it, the current one included, stay)."""
    full_key = store._full(key)
    with store._errors("deleting", key):
        for version in _versions(store, full_key):
            try:
                store.client.delete_object(Bucket=store.bucket, Key=full_key, VersionId=version["VersionId"])
            except ClientError as exc:
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                denied = _code(exc) == "AccessDenied" or status == 403
                if denied and not version["DeleteMarker"] and _version_locked(store, full_key, version["VersionId"]):
                    raise ObjectLocked(key, store.describe()) from None
                raise

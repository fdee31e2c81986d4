"""Object storage for the archive: the key layout and stores that know keys and bytes, not endpoints or tables."""

from .base import (
    CreateIfAbsentStore,
    ObjectInfo,
    ObjectStore,
    PutResult,
    PutStatus,
    check_key,
    sha256_file,
)
from .errors import NotFound, StoreError, StoreMisconfigured, StoreUnavailable
from .keys import (
    InvalidKeyPart,
    PageSlug,
    RawKey,
    check_handle,
    check_id,
    conflict_key,
    cover_key,
    is_conflict_key,
    parse_page_slug,
    parse_raw_key,
    raw_key,
    safe_slug,
    sidecar_key,
    slug_id,
    slug_page,
    slug_userid,
    video_key,
)
from .local import LocalStore
from .mirror import MirroredStore
from .s3 import S3Store, make_s3_client
from .url import InvalidStoreUrl, store_from_url

__all__ = [
    "CreateIfAbsentStore",
    "InvalidKeyPart",
    "InvalidStoreUrl",
    "LocalStore",
    "MirroredStore",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "PageSlug",
    "PutResult",
    "PutStatus",
    "RawKey",
    "S3Store",
    "StoreError",
    "StoreMisconfigured",
    "StoreUnavailable",
    "check_handle",
    "check_id",
    "check_key",
    "conflict_key",
    "cover_key",
    "is_conflict_key",
    "make_s3_client",
    "parse_page_slug",
    "parse_raw_key",
    "raw_key",
    "safe_slug",
    "sha256_file",
    "sidecar_key",
    "slug_id",
    "slug_page",
    "slug_userid",
    "store_from_url",
    "video_key",
]

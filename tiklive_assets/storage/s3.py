"""S3Store: the ObjectStore on any S3-compatible bucket (AWS S3, Cloudflare R2, Backblaze B2, moto)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from . import object_lock
from .base import CreateIfAbsentStore, LockStatus, ObjectInfo, check_key, is_sha256, sha256_stream
from .errors import NotFound, StoreError, StoreMisconfigured, StoreUnavailable

MIB = 1 << 20
MULTIPART_THRESHOLD = 16 * MIB
MULTIPART_CHUNKSIZE = 16 * MIB
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_TAKEN_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


def make_s3_client(
    endpoint_url: str | None = None,
    region_name: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> Any:
    """A boto3 S3 client that works on AWS, R2 and B2: checksums only when required, standard retries.

    Credentials left as None come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    profiles, instance roles).
    """
    import boto3

    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,  # an unroutable endpoint fails in seconds per attempt, not botocore's default 60
        read_timeout=60,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


_NO_BUCKET_CODES = {"NoSuchBucket"}
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidSecurity",
    "UnauthorizedAccess",
    "Forbidden",
    "403",
}
_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"}
_BUSY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed"}


@dataclass(frozen=True)
class StoreSettings:
    """The environment variables that configure a store, named in its error messages."""

    bucket: str = "TIKLIVE_ARCHIVE_BUCKET"
    endpoint: str = "TIKLIVE_S3_ENDPOINT_URL"
    region: str = "TIKLIVE_S3_REGION"


PRIMARY_SETTINGS = StoreSettings()
SECONDARY_SETTINGS = StoreSettings(
    "TIKLIVE_ARCHIVE_SECONDARY_BUCKET", "TIKLIVE_SECONDARY_S3_ENDPOINT_URL", "TIKLIVE_S3_REGION"
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _is_missing(exc: ClientError) -> bool:
    return _code(exc) in _MISSING_CODES or _status(exc) == 404


def _is_taken(exc: ClientError) -> bool:
    return _code(exc) in _TAKEN_CODES or _status(exc) == 412


class S3Store(CreateIfAbsentStore):
    """Objects at ``s3://<bucket>/<prefix>/<key>``.

    New keys are created with ``If-None-Match: *`` so a concurrent writer can never be overwritten; stores
    without conditional writes (Backblaze B2) take ``conditional_writes=False``, which checks with HEAD first
    and leaves a small race window. Files at or above ``multipart_threshold`` go up with ``upload_file``
    (multipart, memory bounded) after a HEAD check, because precondition support on multipart completion
    varies between stores. Every object carries its sha256 in metadata so comparisons need only a HEAD.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        conditional_writes: bool = True,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_CHUNKSIZE,
        settings: StoreSettings = PRIMARY_SETTINGS,
    ) -> None:
        from boto3.s3.transfer import TransferConfig

        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.conditional_writes = conditional_writes
        self.multipart_chunksize = multipart_chunksize
        self.multipart_threshold = multipart_threshold
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        self.settings = settings
        self._object_lock: tuple[bool, str] | None = None  # (enabled, why), read on first need

    # -- errors --

    def _store_error(self, exc: Exception, action: str, key: str | None) -> StoreError | None:
        """Every failure of the store or of the way to it becomes a StoreError naming the part and the setting.

        Everything botocore, boto3 or urllib3 raise is classified: configuration (no such bucket, credentials or
        region refused) or unavailable (endpoint unreachable, timeouts, connections dropped, 5xx after botocore's
        own retries).
        """
        if isinstance(exc, (ClientError, BotoCoreError, OSError)):
            return self.classify(exc, action, key)
        import boto3.exceptions
        import urllib3.exceptions

        if isinstance(exc, (boto3.exceptions.Boto3Error, urllib3.exceptions.HTTPError)):
            cause = exc.__cause__ or exc.__context__
            return self.classify(cause if isinstance(cause, ClientError) else exc, action, key)
        return None

    def _endpoint(self) -> str:
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", None)
        if not endpoint:
            return "the default AWS endpoint"
        parts = urlsplit(endpoint)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")

    def classify(self, exc: BaseException, action: str, key: str | None = None) -> StoreError:
        """The StoreError for ``exc`` raised while doing ``action`` (on ``key``); never includes credentials."""
        names = self.settings
        what = f"{self.describe()}: {action}" + (f" {key!r}" if key else "") + " failed"
        endpoint = self._endpoint()
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            if code in _NO_BUCKET_CODES:
                return StoreMisconfigured(
                    f"{what}: the bucket {self.bucket!r} does not exist at {endpoint}. Create it, or set "
                    f"{names.bucket} to an existing bucket (and {names.endpoint} to the endpoint that serves it)"
                )
            if code in _CREDENTIAL_CODES or status == 403:
                return StoreMisconfigured(
                    f"{what}: the S3 credentials were refused ({code or 'HTTP 403'}). Check AWS_ACCESS_KEY_ID and "
                    f"AWS_SECRET_ACCESS_KEY (or the profile or role boto3 uses) and that they may read and write "
                    f"{names.bucket}={self.bucket} at {names.endpoint}={endpoint}"
                )
            if code in _REGION_CODES or status == 301:
                return StoreMisconfigured(
                    f"{what}: the endpoint says the bucket lives elsewhere ({code or 'HTTP 301'}). Set "
                    f"{names.region} to the bucket's region or {names.endpoint} to its endpoint"
                )
            if status >= 500 or code in _BUSY_CODES:
                return StoreUnavailable(
                    f"{what}: the store answered {code or 'an error'} (HTTP {status}) through botocore's retries; it "
                    f"is down or overloaded ({names.endpoint}={endpoint}). Nothing is blamed on any id: rerun when "
                    "the store is back"
                )
            return StoreError(
                f"{what}: the store refused it ({code or 'error'}, HTTP {status}): "
                f"check {names.bucket}={self.bucket} and {names.endpoint}={endpoint}"
            )
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StoreMisconfigured(
                f"{what}: no usable S3 credentials ({type(exc).__name__}). Set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY (or a profile or role) for {names.bucket}={self.bucket}"
            )
        if isinstance(exc, ParamValidationError):
            return StoreError(f"{what}: botocore rejected the request ({exc})")
        return StoreUnavailable(
            f"{what}: cannot reach the S3 endpoint {endpoint} ({type(exc).__name__}). Check {names.endpoint} and "
            f"that the store is up; nothing is blamed on any id: rerun when it is back"
        )

    # -- the public operations, each behind _errors --

    def head_bucket(self) -> None:
        """Raise a StoreError unless the bucket exists and the credentials may use it."""
        with self._errors("checking the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _head(self, full_key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=full_key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    # -- writes --

    def _object_args(self, sha256: str, content_type: str, content_encoding: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"ContentType": content_type, "Metadata": {"sha256": sha256}}
        if content_encoding:
            args["ContentEncoding"] = content_encoding
        return args

    def _put_object_if_absent(self, full_key: str, body: bytes | BinaryIO, args: dict[str, Any]) -> bool:
        if not self.conditional_writes:
            if self._head(full_key) is not None:
                return False
            self.client.put_object(Bucket=self.bucket, Key=full_key, Body=body, **args)
            return True
        try:
            self.client.put_object(Bucket=self.bucket, Key=full_key, Body=body, IfNoneMatch="*", **args)
            return True
        except ClientError as exc:
            if _is_taken(exc):
                return False
            if _code(exc) == "NotImplemented" or _status(exc) == 501:
                raise StoreError(
                    f"{self.describe()} rejected a conditional write (If-None-Match); this store lacks them: "
                    "construct S3Store(..., conditional_writes=False) or add ?conditional_writes=false to the URL"
                ) from exc
            raise

    def _create_from_bytes(
        self, key: str, data: bytes, sha256: str, content_type: str, content_encoding: str | None
    ) -> bool:
        args = self._object_args(sha256, content_type, content_encoding)
        return self._put_object_if_absent(self._full(key), data, args)

    def _create_from_file(
        self, key: str, path: Path, sha256: str, size: int, content_type: str, content_encoding: str | None
    ) -> bool:
        full_key = self._full(key)
        args = self._object_args(sha256, content_type, content_encoding)
        if size < self.multipart_threshold:
            with open(path, "rb") as body:
                return self._put_object_if_absent(full_key, body, args)
        if self._head(full_key) is not None:
            return False
        if not self.conditional_writes:  # B2: HEAD then upload (a narrow race the store cannot close)
            self.client.upload_file(os.fspath(path), self.bucket, full_key, ExtraArgs=args, Config=self.transfer_config)
            return True
        return self._multipart_if_absent(full_key, path, args)

    def _multipart_if_absent(self, full_key: str, path: Path, args: dict[str, Any]) -> bool:
        """A multipart upload completed with ``IfNoneMatch='*'``: large files get the same never-overwrite
        guarantee as small ones (boto3's managed ``upload_file`` cannot pass the condition). One part in memory
        at a time; an upload that fails is aborted (the janitor sweeps any a crash leaves)."""
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=full_key, **args)["UploadId"]
        try:
            parts = []
            part_size = max(self.multipart_chunksize, -(-path.stat().st_size // 10_000))  # S3 allows 10,000 parts
            with open(path, "rb") as source:
                for number in range(1, 10_001):
                    chunk = source.read(part_size)
                    if not chunk:
                        break
                    etag = self.client.upload_part(
                        Bucket=self.bucket, Key=full_key, UploadId=upload, PartNumber=number, Body=chunk
                    )["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
            )
            return True
        except ClientError as exc:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload)
            if _is_taken(exc):
                return False
            raise
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload)
            raise

    def _stored_sha256(self, key: str) -> str | None:
        full_key = self._full(key)
        head = self._head(full_key)
        if head is None:
            return None
        recorded = (head.get("Metadata") or {}).get("sha256")
        if is_sha256(recorded):
            return recorded
        try:  # written by something else: hash the bytes
            body = self.client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        with body:
            return sha256_stream(body)

    # -- reads --

    def open_read(self, key: str) -> BinaryIO:
        full_key = self._full(key)
        with self._errors("reading", key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
            except ClientError as exc:
                if _is_missing(exc) and _code(exc) not in _NO_BUCKET_CODES:
                    raise NotFound(key, self.describe()) from None
                raise

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body, self._errors("reading", key):
            return body.read()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """One GET with ``Range: bytes=start-(start+length-1)``: only those bytes cross the network."""
        if start < 0 or length < 0:
            raise ValueError(f"read_range({key!r}, {start}, {length}): start and length must be 0 or more")
        if length == 0:
            return b""
        full_key = self._full(key)
        with self._errors("reading", key):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=full_key, Range=f"bytes={start}-{start + length - 1}"
                )
            except ClientError as exc:
                if _is_missing(exc) and _code(exc) not in _NO_BUCKET_CODES:
                    raise NotFound(key, self.describe()) from None
                if _code(exc) == "InvalidRange":  # start at or past the end of the object
                    return b""
                raise
            with response["Body"] as body:
                return bytes(body.read())

    def stat(self, key: str) -> ObjectInfo | None:
        full_key = self._full(key)
        with self._errors("checking", key):
            head = self._head(full_key)
        if head is None:
            return None
        return ObjectInfo(key, int(head["ContentLength"]), head["LastModified"])

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        with self._errors("listing", prefix or "(everything)"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][len(root) :], int(obj["Size"]), obj["LastModified"])

    def delete(self, key: str) -> None:
        """Remove the object. On an Object Lock bucket every version goes (a plain DELETE would only hide it
        behind a delete marker), and a version under a legal hold makes the store refuse: ObjectLocked."""
        full_key = self._full(key)
        if self.object_lock_enabled():
            object_lock.delete_versions(self, key)
            return
        with self._errors("deleting", key):
            self.client.delete_object(Bucket=self.bucket, Key=full_key)

    # -- S3 Object Lock legal holds and object tags (see storage/object_lock.py) --

    def object_lock_enabled(self) -> bool:
        """True when the bucket was created with Object Lock (read once, then remembered)."""
        return object_lock.lock_configuration(self)[0]

    def lock_status(self) -> tuple[LockStatus, ...]:
        enabled, why = object_lock.lock_configuration(self)
        if enabled:
            return (LockStatus(self.describe(), True, "S3 Object Lock: the bucket refuses deletes of held versions"),)
        return (LockStatus(self.describe(), False, f"no S3 Object Lock ({why}): held keys are protected by tiklive"),)

    def set_legal_hold(self, keys: Iterable[str], on: bool) -> int:
        if not self.object_lock_enabled():
            return 0
        return object_lock.set_legal_hold(self, keys, on)

    def is_locked(self, key: str) -> bool:
        return self.object_lock_enabled() and object_lock.is_locked(self, key)

    def has_object_tags(self) -> bool:
        return True

    def get_tags(self, key: str) -> dict[str, str]:
        full_key = self._full(key)
        with self._errors("reading the tags of", key):
            try:
                tags = self.client.get_object_tagging(Bucket=self.bucket, Key=full_key).get("TagSet", [])
            except ClientError as exc:
                if _is_missing(exc) and _code(exc) not in _NO_BUCKET_CODES:
                    return {}
                if _code(exc) == "NotImplemented" or _status(exc) == 501:
                    return {}  # a store without object tagging
                raise
        return {str(t["Key"]): str(t["Value"]) for t in tags}

    # -- housekeeping --

    def abort_stale_multipart_uploads(self, older_than: timedelta) -> int:
        """Abort multipart uploads under this prefix started more than ``older_than`` ago (their parts cost money)."""
        cutoff = datetime.now(UTC) - older_than
        root = f"{self.prefix}/" if self.prefix else ""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] > cutoff:
                    continue
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except ClientError as exc:
                    if _code(exc) != "NoSuchUpload":
                        raise
                    continue
                aborted += 1
        return aborted

    def sweep_incomplete(self, older_than: timedelta) -> int:
        with self._errors("sweeping stale multipart uploads"):
            return self.abort_stale_multipart_uploads(older_than)

    def describe(self) -> str:
        location = f"s3://{self.bucket}/{self.prefix}"
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", None)
        if endpoint:
            parts = urlsplit(endpoint)
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            location += f" (endpoint {parts.scheme}://{host})"
        return location

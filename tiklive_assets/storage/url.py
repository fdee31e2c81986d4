"""store_from_url: build an ObjectStore from one configuration string (a path, file:// or s3:// URL)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from .base import ObjectStore
from .local import LocalStore
from .s3 import S3Store, make_s3_client

S3_OPTIONS = ("endpoint_url", "region", "conditional_writes")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class InvalidStoreUrl(ValueError):
    """The store URL cannot be used; the message shows the accepted forms."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"store URL {_redact(url)!r}: {problem}. Accepted: a local path, file:///abs/path, or "
            "s3://bucket/prefix?endpoint_url=https://...&region=...&conditional_writes=false "
            "(credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never from the URL)"
        )


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def store_from_url(url: str) -> ObjectStore:
    """``/abs/path`` or ``file:///abs/path`` -> LocalStore; ``s3://bucket/prefix?...`` -> S3Store.

    Nothing is contacted or created here: the S3 client connects on first use, the directory on first write.
    """
    url = url.strip()
    if not url:
        raise InvalidStoreUrl(url, "it is empty")
    if "://" not in url:
        return LocalStore(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or not parts.path:
            raise InvalidStoreUrl(url, "a file URL takes an absolute path and nothing else (file:///abs/path)")
        return LocalStore(unquote(parts.path))
    if parts.scheme != "s3":
        raise InvalidStoreUrl(url, f"unknown scheme {parts.scheme!r}")
    if "@" in parts.netloc:
        raise InvalidStoreUrl(url, "it carries credentials")
    if not parts.netloc:
        raise InvalidStoreUrl(url, "it names no bucket")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InvalidStoreUrl(url, "its query string does not parse") from None
    unknown = sorted(set(query) - set(S3_OPTIONS))
    if unknown:
        raise InvalidStoreUrl(url, f"unknown option(s) {', '.join(unknown)}; known: {', '.join(S3_OPTIONS)}")
    options = {name: values[-1] for name, values in query.items()}
    conditional = options.get("conditional_writes", "true").lower()
    if conditional not in _TRUE | _FALSE:
        raise InvalidStoreUrl(url, f"conditional_writes={conditional!r} is not true or false")
    client = make_s3_client(endpoint_url=options.get("endpoint_url") or None, region_name=options.get("region") or None)
    return S3Store(client, parts.netloc, unquote(parts.path).strip("/"), conditional_writes=conditional in _TRUE)

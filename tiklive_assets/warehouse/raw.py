"""One archived object as the parsers meet it: its bytes decoded, its fetch time, and what makes it no data.

The raw archive stores each response gzip-compressed under ``tiklive-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz``,
with the fetch time in the gzip header. A 200 response that is an error (``<slug>-error-<reason>``, or a body
that is an error envelope) was paid for but holds no data; a body no parser can read is quarantined with its key.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from tiklive_assets.storage.keys import RAW_PREFIX
from tiklive_assets.tolerant import as_int

CONFLICT_MARKER = ".conflict-"
ERROR_MARKER = "-error-"  # <slug>-error-<reason>: a 200 response that is not data (balance, upstream, notjson)
_ERROR_KEYS = frozenset({"message", "msg", "code", "error", "status_code", "status_msg", "log_id", "processed_time"})
JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class UnreadableObject(ValueError):
    """An archived object that is not gzip JSON; it is quarantined with its key, and the day goes on."""


class CorruptObject(UnreadableObject):
    """Bytes that are not gzip at all: the archive copy itself is damaged (the capture always writes gzip)."""


class ShapeError(ValueError):
    """A JSON object no parser can read (no id where one is required, a list where an object belongs...)."""


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages and field signatures."""
    return JSON_TYPES.get(type(value), "value")


def a_list(items: Any, what_is: str) -> list:
    """``items`` when it is a list; else a :class:`ShapeError` saying "<what_is> a JSON <type>, not a list"."""
    if type(items) is not list:  # noqa: E721
        raise ShapeError(f"{what_is} a JSON {json_type(items)}, not a list")
    return items


def raw_day_prefix(day: date, prefix: str = RAW_PREFIX) -> str:
    return f"{prefix}/{day:%Y/%m/%d}/"


def video_day_prefix(day: date) -> str:
    return f"videos/dt={day.isoformat()}/"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def fetched_micros(gz: bytes) -> int:
    """The fetch time the raw archive put in the gzip header (MTIME, whole seconds), or 0 when absent."""
    if len(gz) >= 8 and gz[:2] == b"\x1f\x8b":
        return int.from_bytes(gz[4:8], "little") * 1_000_000
    return 0


def micros(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch (how rows carry ``captured_at``)."""
    return (moment - _EPOCH) // _MICROSECOND


def captured_micros(gz: bytes, last_modified: datetime | None) -> int:
    """When the object was fetched: the gzip header's time, else the object's ``last_modified``, else 0."""
    return fetched_micros(gz) or (micros(last_modified) if last_modified is not None else 0)


_fast_loads: Callable[[bytes], Any]
_gunzip: Callable[[bytes, int], bytes]
try:  # orjson decodes these objects 3x faster than json, and caches key strings (cheap shape signatures)
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - optional accelerator; json gives the same values
    _fast_loads = json.loads
try:  # ISA-L inflates gzip about 1.4x faster than zlib, with the same bytes out
    from isal.isal_zlib import decompress as _gunzip
    from isal.isal_zlib import error as _isal_error

    # the stub declares isal's error an instance; it is the exception class IsalError
    _GUNZIP_ERRORS: tuple[type[Exception], ...] = (cast(type[Exception], _isal_error), zlib.error)
except ImportError:  # pragma: no cover - optional accelerator; zlib gives the same bytes
    _gunzip = zlib.decompress
    _GUNZIP_ERRORS = (zlib.error,)


# the accelerated gzip and JSON decoders, for a caller's inline fast path (:func:`inflate`, :func:`loads` on failure)
fast_inflate = _gunzip
INFLATE_ERRORS = _GUNZIP_ERRORS
fast_loads = _fast_loads


def decode(gz: bytes) -> Any:
    """gzip JSON -> Python, through zlib directly (faster than gzip.decompress on many small objects).

    The fast decoder refuses what the standard one accepts (integers beyond 64 bits, NaN, lone surrogates), so
    anything it refuses is decoded again by ``json``: the values are always those ``json.loads`` gives."""
    return loads(inflate(gz))


def inflate(gz: bytes) -> bytes:
    """The JSON text of an archived object (gzip); :class:`CorruptObject` when the bytes are not gzip."""
    try:
        return _gunzip(gz, 31)
    except _GUNZIP_ERRORS:
        try:
            return gzip.decompress(gz)  # multi-member gzip, just in case
        except (OSError, EOFError, ValueError) as exc:
            raise CorruptObject(f"not gzip: {exc}") from None


def loads(raw: bytes) -> Any:
    """JSON text -> Python (see :func:`decode`); :class:`UnreadableObject` when it is not JSON."""
    try:
        return _fast_loads(raw)
    except ValueError:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise UnreadableObject(f"not JSON: {exc}") from None


def body_error(body: dict) -> str | None:
    """The reason when a 200 body is an error, not data: a non-zero ``code``, or only error keys (a lone
    ``message``: an exhausted balance says so, ``{"message": "...balance..."}``)."""
    if "code" in body:
        code = as_int(body["code"])
        if code not in (0, None):
            return "upstream"
    if body.keys() <= _ERROR_KEYS and ("message" in body or "msg" in body or "error" in body):
        text = str(body.get("message") or body.get("msg") or body.get("error") or "")
        return "balance" if "balance" in text.lower() else "upstream"
    return None


def is_id(value: Any) -> bool:
    """Whether ``value`` is already an id as the warehouse keeps it (ASCII digits, as text): the fast path."""
    return type(value) is str and value.isdigit() and value.isascii()  # noqa: E721

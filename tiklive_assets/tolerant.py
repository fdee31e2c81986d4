"""Tolerant reading of upstream JSON: the variants real APIs send for ids, counters, flags, cursors and text.

Upstream APIs change shape without notice, and the real ones already differ from their documentation: a post's
id comes as ``aweme_id``, ``video_id`` or ``id``, as a string or a JSON integer; counters come as strings or null;
``hasMore`` as ``1``/``0``; ``bioLink`` as an object ``{"link", "risk"}``; a ``create_time`` as an ISO string.
Every boundary (the capture workers and the warehouse parsers alike) reads through these functions, so one place
says what is accepted.

The rule: coerce what is unambiguous, return ``None`` for the rest (the caller counts it as nulled), and never
raise. Ids stay text end to end: a float cannot hold a 19-digit id (``7.402634e+18``), so a float id is refused.
This module imports nothing of the project: clients and warehouse both use it without depending on each other.
"""

from __future__ import annotations

import builtins
from collections import Counter
from datetime import datetime
from typing import Any, TypeVar

_T = TypeVar("_T")

POST_ID_FIELDS = ("aweme_id", "video_id", "id")
# Where the lists of a page were seen, the documented name first: capture and warehouse read the same names.
LISTING_ITEM_KEYS = ("videos", "itemList", "aweme_list", "items")
FOLLOWER_ITEM_KEYS = ("followers", "userList", "users")
FOLLOWING_ITEM_KEYS = ("followings", "following", "userList", "users")
_TRUE = frozenset({"true", "1", "yes", "y", "t", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "f", "off", ""})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what a BIGINT column holds: a larger number is nulled, not stored
_MS_THRESHOLD = 10**11  # a Unix time above this (year 5138 in seconds) is in milliseconds


def as_id(value: Any) -> str | None:
    """A numeric TikTok id as text (``7234`` or ``"7234"`` -> ``"7234"``); anything else -> None."""
    if type(value) is str:  # noqa: E721 - the fast path: bool is an int, str subclasses are rare
        text = value.strip()
        return text if text.isdigit() and text.isascii() else None
    if type(value) is int:  # noqa: E721
        return str(value) if value >= 0 else None
    return None


def post_id(item: Any) -> str | None:
    """A post's id, whichever name it came under (``aweme_id``, ``video_id``, ``id``); None if it has none."""
    if not isinstance(item, dict):
        return None
    for name in POST_ID_FIELDS:
        value = item.get(name)
        if value is not None:
            found = as_id(value)
            if found is not None:
                return found
    return None


def unwrap(body: Any) -> Any:
    """The payload inside a ``{"code": 0, "msg": "success", "data": {...}}`` envelope, or ``body`` itself.

    TikLiveAPI documents flat objects, but APIs of its family wrap the same fields in that envelope; reading
    through ``unwrap`` accepts both. A non-zero ``code`` is an error, not data: see :func:`envelope_error`.
    """
    if type(body) is dict and "data" in body and "code" in body and as_int(body["code"]) == 0:  # noqa: E721
        inner = body["data"]
        if isinstance(inner, dict):
            return inner
    return body


def envelope_error(body: Any) -> str | None:
    """The message of an upstream error reported inside an HTTP 200 (``{"code": -1, "msg": ...}``), else None."""
    if type(body) is not dict or "code" not in body:  # noqa: E721
        return None
    code = body["code"]
    number = as_int(code)
    if number == 0 or (number is None and code in (None, "", "ok", "success")):
        return None
    message = body.get("msg") or body.get("message") or body.get("error") or "no message"
    return f"code {code}: {message}" if isinstance(message, str) else f"code {code}"


def image_list(item: Any) -> list | None:
    """A photo (slideshow) post's images as sent (``images``, TikTok's ``imagePost.images`` or
    ``image_post_info.images``), or None for a video post. Each entry is a URL or an object holding one."""
    if type(item) is not dict:  # noqa: E721
        return None
    images = item.get("images")
    if images is None:
        for holder in ("imagePost", "image_post_info"):
            if type(item.get(holder)) is dict:  # noqa: E721
                images = item[holder].get("images")
                break
    return images if type(images) is list and images else None  # noqa: E721


def as_int(value: Any) -> int | None:
    """An integer counter: ``1234``, ``"1234"``, ``" 1234 "``, ``1234.0`` -> 1234; ``"1.2K"``, ``{}`` -> None."""
    kind = type(value)
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else None
    if value is None or kind is bool:
        return None
    if kind is str:
        text = value.strip()
        if text and text[0] in "+-":
            sign, text = text[0], text[1:]
        else:
            sign = ""
        if text.isdigit() and text.isascii() and len(text) <= 19:
            number = int(sign + text)
            return number if _INT64_MIN <= number <= _INT64_MAX else None
        return None
    if kind is float:
        return int(value) if value.is_integer() and _INT64_MIN <= value <= _INT64_MAX else None
    return None


def as_bool(value: Any) -> bool | None:
    """``true``/``false``, ``1``/``0`` and their string spellings (``"yes"``, ``"no"``...); anything else -> None."""
    kind = type(value)
    if kind is bool:
        return value
    if kind is int:
        return True if value == 1 else False if value == 0 else None
    if kind is str:
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE and text:
            return False
    return None


def has_more(value: Any) -> bool:
    """A pagination flag: anything that does not clearly say "more" ends the walk."""
    return as_bool(value) is True


def as_text(value: Any) -> str | None:
    """Free text: a string as is; a number as its decimal text; an object, a list or a boolean -> None."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is float:
        return str(value)
    return None


def cursor_text(value: Any) -> str | None:
    """A cursor or ``time`` as text (integers and strings alike); None when absent or not a scalar."""
    kind = type(value)
    if kind is str:
        return value.strip() or None
    if kind is int:
        return str(value)
    if kind is float and value.is_integer():
        return str(int(value))
    return None


def bio_link(value: Any) -> str | None:
    """``bioLink`` as the link text: ``{"link": "x.com", "risk": 3}`` -> ``"x.com"``; a string as is; else None."""
    if type(value) is str:  # noqa: E721
        return value or None
    if isinstance(value, dict):
        for name in ("link", "url", "href"):
            if isinstance(value.get(name), str) and value[name]:
                return value[name]
    return None


def epoch_seconds(value: Any) -> int | None:
    """A Unix time in seconds from seconds, milliseconds, their strings, or an ISO 8601 string; else None."""
    number = as_int(value)
    if number is None and type(value) is str:  # noqa: E721
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None  # ambiguous: no zone
        return int(moment.timestamp())
    if number is None or number < 0:
        return None
    return number // 1000 if number > _MS_THRESHOLD else number


def region_codes(body: Any) -> list[str]:
    """``/region-list/`` in any of its shapes -> region codes.

    Accepted: ``["US", ...]``, ``[{"code": "US", "name": ...}, ...]``, ``{"US": "United States", ...}``, and any
    of those under ``regions``/``data``/``region_list``. Placeholders such as ``"..."`` are dropped.
    """
    if isinstance(body, dict):
        for name in ("regions", "data", "region_list", "list"):
            if name in body and isinstance(body[name], list | dict):
                return region_codes(body[name])
        return [code for code in body if _region_code(code)]
    if isinstance(body, list):
        codes = []
        for item in body:
            code = (
                item
                if isinstance(item, str)
                else (item.get("code") or item.get("region") or item.get("id") if isinstance(item, dict) else None)
            )
            if isinstance(code, str) and _region_code(code):
                codes.append(code)
        return codes
    return []


def _region_code(code: Any) -> bool:
    return isinstance(code, str) and 2 <= len(code) <= 8 and code.replace("-", "").isalnum()


def first_present(mapping: dict, *names: str) -> Any:
    """The value of the first of ``names`` that ``mapping`` holds and that is not null, else None: where the
    same field comes under several names (``unique_id`` from TikLiveAPI, ``uniqueId`` from TikTok web...)."""
    for name in names:
        value = mapping.get(name)
        if value is not None:
            return value
    return None


def stats_object(holder: dict) -> dict | None:
    """The counters of a TikTok-web item or profile: ``stats`` (integers), else ``statsV2`` (strings), else None."""
    stats = holder.get("stats")
    if type(stats) is not dict:  # noqa: E721
        stats = holder.get("statsV2")
    return stats if type(stats) is dict else None  # noqa: E721


def strip_nul(text: str) -> tuple[str, int]:
    """``text`` without NUL characters (Postgres rejects them in TEXT), and how many were removed."""
    count = text.count("\x00")
    return (text.replace("\x00", ""), count) if count else (text, 0)


class Tally:
    """Counts, per field, the values a reader had to null because they could not be coerced unambiguously."""

    __slots__ = ("nulled",)

    def __init__(self) -> None:
        self.nulled: Counter[str] = Counter()

    def int(self, value: Any, field: str) -> int | None:
        return self._counted(as_int(value), None if value == "" else value, field)  # a blank counter is no value

    def bool(self, value: Any, field: str) -> bool | None:
        return self._counted(as_bool(value), value, field)

    def text(self, value: Any, field: str) -> str | None:
        return self._counted(as_text(value), value, field)

    def id(self, value: Any, field: str) -> str | None:
        return self._counted(as_id(value), value, field)

    def time(self, value: Any, field: str) -> builtins.int | None:
        """A Unix time in seconds (see :func:`epoch_seconds`)."""
        return self._counted(epoch_seconds(value), None if value == "" else value, field)

    def _counted(self, result: _T | None, value: Any, field: str) -> _T | None:
        """``result``, counting ``field`` as nulled when there was a value (``value`` not None) it could not read."""
        if result is None and value is not None:
            self.nulled[field] += 1
        return result

    @property
    def total(self) -> builtins.int:  # builtins: the method above shadows int in this class
        return sum(self.nulled.values())

"""The object key layout (raw archive, Research API archive, videos, sidecars, covers) in one place: keys are built
here, validated so no key escapes, and read back here (strictly, or leniently for listings that may hold conflict
copies and foreign objects)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from tiklive_assets.research.windows import Window

RAW_PREFIX = "tiklive-raw"  # TikLiveAPI responses
RESEARCH_PREFIX = "research-raw"  # TikTok Research API responses, in the same layout
RAW_SUFFIX = ".json.gz"
CONFLICT_MARKER = ".conflict-"  # different bytes for an existing key are kept at <key>.conflict-<sha256[:16]>
VIDEOS_PREFIX = "videos/"
COVERS_PREFIX = "covers/"

PageKind = Literal["cursor", "time"]
PAGE_KINDS: tuple[str, ...] = ("cursor", "time")

_HANDLE_RE = re.compile(r"[A-Za-z0-9._]{1,64}")
_ID_RE = re.compile(r"[0-9]{1,32}")
_PAGE_VALUE_RE = re.compile(r"[0-9]{1,32}")
_ENDPOINT_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SAFE_SLUG_RE = re.compile(r"[a-z0-9_-]{1,64}")
_SLUG_RE = re.compile(r"[A-Za-z0-9._-]{1,160}")
_PREFIX_SEGMENT_RE = re.compile(r"[A-Za-z0-9._=-]{1,128}")
_PAGE_SLUG_RE = re.compile(r"(?P<entity>.+)-(?P<kind>cursor|time)(?P<value>[0-9]{1,32})")
_DAY_PATH_RE = re.compile(r"(\d{4})/(\d{2})/(\d{2})/")
_MEDIA_DAY_RE = re.compile(r"(?:videos|covers)/dt=(\d{4})-(\d{2})-(\d{2})/")
# Research API slugs: a video query page (window, query hash, generation, cursor), a user's follow page, comments
_VIDEO_QUERY_RE = re.compile(r"(?P<window>\d{8}-\d{8})-q(?P<qhash>[0-9a-f]{10})-g(?P<gen>\d+)")
VIDEO_SLUG = re.compile(_VIDEO_QUERY_RE.pattern + r"-cursor(?P<cursor>\d+)")
USER_PAGE_SLUG = re.compile(r"(?P<username>[A-Za-z0-9._]{1,64})-cursor(?P<cursor>\d+)")
COMMENT_PAGE_SLUG = re.compile(r"(?P<video_id>\d{1,40})-cursor(?P<cursor>\d+)")
_SAFE_SLUG_MAX = 64
_SAFE_SLUG_HASH_LEN = 8

HANDLE_RULE = "1-64 characters from A-Z a-z 0-9 . _, not only dots"
ID_RULE = "1-32 decimal digits"
PAGE_VALUE_RULE = "1-32 decimal digits (a non-negative integer)"
ENDPOINT_RULE = "lowercase words joined by '-', such as 'user-posts' (surrounding slashes are stripped)"
SLUG_RULE = "1-160 characters from A-Z a-z 0-9 . _ -, not only dots"
PREFIX_RULE = "'/'-separated segments of A-Z a-z 0-9 . _ = -, none of them '.' or '..'"


class InvalidKeyPart(ValueError):
    """A value cannot go into an object key: it names the field, the value, and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} {value!r} for an object key: allowed is {allowed}")


def _as_text(field: str, value: object, allowed: str) -> str:
    if isinstance(value, bool):
        raise InvalidKeyPart(field, value, allowed)
    if isinstance(value, int):
        if value < 0:
            raise InvalidKeyPart(field, value, allowed)
        return str(value)
    if isinstance(value, str):
        return value
    raise InvalidKeyPart(field, value, allowed)


def _not_only_dots(text: str) -> bool:
    return text.strip(".") != ""


def check_handle(handle: str, field: str = "handle") -> str:
    """Return ``handle`` if it is a TikTok unique_id safe for a key segment, else raise InvalidKeyPart."""
    text = _as_text(field, handle, HANDLE_RULE)
    if not _HANDLE_RE.fullmatch(text) or not _not_only_dots(text):
        raise InvalidKeyPart(field, handle, HANDLE_RULE)
    return text


def check_id(value: str | int, field: str = "id") -> str:
    """Return a numeric TikTok id (aweme_id, user id, comment id, challenge or music id) as text, else raise."""
    text = _as_text(field, value, ID_RULE)
    if not _ID_RE.fullmatch(text):
        raise InvalidKeyPart(field, value, ID_RULE)
    return text


def check_page_value(value: str | int, field: str = "cursor") -> str:
    text = _as_text(field, value, PAGE_VALUE_RULE)
    if not _PAGE_VALUE_RE.fullmatch(text):
        raise InvalidKeyPart(field, value, PAGE_VALUE_RULE)
    return text


def check_endpoint(endpoint: str) -> str:
    """Return the endpoint without slashes (``/user-posts/`` -> ``user-posts``), else raise InvalidKeyPart."""
    text = _as_text("endpoint", endpoint, ENDPOINT_RULE).strip("/")
    if not _ENDPOINT_RE.fullmatch(text):
        raise InvalidKeyPart("endpoint", endpoint, ENDPOINT_RULE)
    return text


def check_slug(slug: str) -> str:
    text = _as_text("slug", slug, SLUG_RULE)
    if not _SLUG_RE.fullmatch(text) or not _not_only_dots(text):
        raise InvalidKeyPart("slug", slug, SLUG_RULE)
    return text


def check_prefix(prefix: str, field: str = "prefix") -> str:
    text = _as_text(field, prefix, PREFIX_RULE)
    segments = text.split("/")
    if not all(_PREFIX_SEGMENT_RE.fullmatch(s) and _not_only_dots(s) for s in segments):
        raise InvalidKeyPart(field, prefix, PREFIX_RULE)
    return text


def conflict_key(key: str, sha256: str) -> str:
    """Where different bytes for an existing key are kept: ``<key>.conflict-<sha256[:16]>``."""
    return f"{key}{CONFLICT_MARKER}{sha256[:16]}"


def is_conflict_key(key: str) -> bool:
    return re.search(re.escape(CONFLICT_MARKER) + r"[0-9a-f]{16}$", key) is not None


def _check_day(day: date) -> date:
    if isinstance(day, datetime):
        return day.date()
    if not isinstance(day, date):
        raise InvalidKeyPart("day", day, "a datetime.date")
    return day


def safe_slug(text: str) -> str:
    """Make free text (a search keyword) into a key-safe slug: lowercase ``[a-z0-9_-]``, at most 64 characters.

    When anything had to change, a short sha1 of the original text is appended, so two keywords that clean up
    to the same letters ("Cats!" and "cats?") still get different slugs. Already-safe text comes back as is.
    """
    if not isinstance(text, str) or text == "":
        raise InvalidKeyPart("keyword", text, "a non-empty string")
    if _SAFE_SLUG_RE.fullmatch(text):
        return text
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:_SAFE_SLUG_HASH_LEN]
    base = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    base = base[: _SAFE_SLUG_MAX - _SAFE_SLUG_HASH_LEN - 1].rstrip("-")
    return f"{base}-{digest}" if base else digest


def slug_userid(handle: str) -> str:
    """Slug for ``/userid/?username=<handle>``: the handle itself."""
    return check_handle(handle)


def slug_id(value: str | int, field: str = "id") -> str:
    """Slug for an unpaginated lookup by id, such as ``post-detail/<aweme_id>``."""
    return check_id(value, field)


def slug_page(entity_id: str | int, kind: PageKind, value: str | int) -> str:
    """Slug for one page of a paginated listing: ``<entity_id>-cursor<N>`` or ``<entity_id>-time<N>``.

    ``entity_id`` is a numeric id (user, aweme, comment, challenge, music) or, for keyword searches, the
    output of :func:`safe_slug`. ``kind`` names the paginator so a replay knows how the page was fetched.
    """
    if kind not in PAGE_KINDS:
        raise InvalidKeyPart("page kind", kind, "'cursor' or 'time'")
    text = _as_text("entity_id", entity_id, ID_RULE)
    if not (_ID_RE.fullmatch(text) or (text and safe_slug(text) == text)):
        raise InvalidKeyPart("entity_id", entity_id, f"{ID_RULE}, or a keyword passed through safe_slug()")
    return f"{text}-{kind}{check_page_value(value, kind)}"


def raw_key(day: date, endpoint: str, slug: str, prefix: str = RAW_PREFIX) -> str:
    """``tiklive-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz`` for one archived API response."""
    day = _check_day(day)
    return f"{check_prefix(prefix)}/{day:%Y/%m/%d}/{check_endpoint(endpoint)}/{check_slug(slug)}{RAW_SUFFIX}"


REFRESH_MARKER = "-refresh"  # post-detail/<aweme_id>-refresh<hours>h: a re-resolution at an age after posting
_REFRESH_SLUG_RE = re.compile(r"(?P<id>[0-9]{1,32})-refresh(?P<age>[0-9]{1,6}(?:\.[0-9]{1,6})?)h")


def refresh_slug(aweme_id: str | int, age_hours: float) -> str:
    """Slug of a post's detail re-resolved ``age_hours`` after it was posted: ``<aweme_id>-refresh<hours>h``
    (``7301-refresh24h``, ``7301-refresh1.5h``), so it never takes the key of the day's first detail of the post."""
    if isinstance(age_hours, bool) or not isinstance(age_hours, int | float) or not 0 < age_hours < 10**6:
        raise InvalidKeyPart("refresh age", age_hours, "hours after posting, more than 0 and below 1,000,000")
    hours = f"{float(age_hours):.6f}".rstrip("0").rstrip(".")
    return f"{check_id(aweme_id, 'aweme_id')}{REFRESH_MARKER}{hours}h"


def parse_refresh_slug(slug: str) -> tuple[str, float] | None:
    """(aweme_id, age in hours) of a :func:`refresh_slug`, or None for any other slug."""
    match = _REFRESH_SLUG_RE.fullmatch(slug)
    return (match["id"], float(match["age"])) if match else None


@dataclass(frozen=True)
class PageSlug:
    entity: str
    kind: PageKind
    value: int


def parse_page_slug(slug: str) -> PageSlug | None:
    """The paginator a slug names (``107955-time0`` -> time page 0 of 107955), or None for unpaginated slugs."""
    match = _PAGE_SLUG_RE.fullmatch(slug)
    if not match:
        return None
    return PageSlug(match["entity"], match["kind"], int(match["value"]))  # type: ignore[arg-type]


def video_key(day: date, handle: str, aweme_id: str | int) -> str:
    """``videos/dt=YYYY-MM-DD/author=<handle>/<aweme_id>.mp4``, partitioned by ingest date."""
    return f"{_video_stem(day, handle, aweme_id)}.mp4"


def sidecar_key(day: date, handle: str, aweme_id: str | int) -> str:
    """The JSON metadata sidecar that sits next to the MP4 of :func:`video_key`."""
    return f"{_video_stem(day, handle, aweme_id)}.json"


def image_key(day: date, handle: str, aweme_id: str | int, number: int) -> str:
    """Image ``number`` (1, 2, ...) of a photo post: ``videos/dt=…/author=<handle>/<aweme_id>-<number>.jpg``."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidKeyPart("image number", number, "a whole number from 1")
    return f"{_video_stem(day, handle, aweme_id)}-{number}.jpg"


def sound_key(day: date, handle: str, aweme_id: str | int) -> str:
    """A photo post's sound (its ``play`` URL is an MP3, not a video): ``…/<aweme_id>.mp3`` beside the sidecar."""
    return f"{_video_stem(day, handle, aweme_id)}.mp3"


def cover_key(day: date, aweme_id: str | int) -> str:
    """``covers/dt=YYYY-MM-DD/<aweme_id>.jpg``."""
    return f"covers/dt={_check_day(day):%Y-%m-%d}/{check_id(aweme_id, 'aweme_id')}.jpg"


def _video_stem(day: date, handle: str, aweme_id: str | int) -> str:
    day = _check_day(day)
    return f"videos/dt={day:%Y-%m-%d}/author={check_handle(handle)}/{check_id(aweme_id, 'aweme_id')}"


def video_slug(window: Window, qhash: str, generation: int, cursor: int) -> str:
    """Slug for one Research API video query page: a cursor page (:func:`slug_page`) of the query
    ``<window>-q<qhash>-g<generation>``."""
    return slug_page(f"{window.key}-q{qhash}-g{int(generation)}", "cursor", int(cursor))


@dataclass(frozen=True)
class VideoSlug:
    window: Window
    qhash: str
    generation: int
    cursor: int


def parse_video_slug(slug: str) -> VideoSlug | None:
    """Inverse of :func:`video_slug`, or None for anything else (an error response's slug)."""
    page = parse_page_slug(slug)
    query = _VIDEO_QUERY_RE.fullmatch(page.entity) if page is not None and page.kind == "cursor" else None
    if page is None or query is None:
        return None
    return VideoSlug(Window.from_key(query["window"]), query["qhash"], int(query["gen"]), page.value)


# --- reading listed keys back, leniently: a listing also holds conflict copies and foreign objects ------------
def _date(match: re.Match[str] | None) -> date | None:
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def raw_key_day(key: str, prefix: str = RAW_PREFIX) -> date | None:
    """The day a key under ``prefix`` names in its first segments (``<prefix>/YYYY/MM/DD/…``), or None."""
    head = prefix.rstrip("/") + "/"
    return _date(_DAY_PATH_RE.match(key, len(head))) if key.startswith(head) else None


@dataclass(frozen=True)
class RawKeyParts:
    """A listed key in the raw layout: ``day`` is None when the date is not one, ``slug`` is the object's slug
    (a conflict copy's is the slug of the object it conflicts with)."""

    day: date | None
    endpoint: str
    slug: str

    @property
    def entity(self) -> str:
        """What the slug is about: the id or handle before the first ``-`` (the page part follows it)."""
        return self.slug.split("-", 1)[0]

    @property
    def page(self) -> PageSlug | None:
        return parse_page_slug(self.slug)


@dataclass(frozen=True)
class RawKey(RawKeyParts):
    """A raw key exactly as :func:`raw_key` writes it: a real day, a valid endpoint and slug."""

    day: date


def split_raw_key(key: str, prefix: str = RAW_PREFIX) -> RawKeyParts | None:
    """The parts of any key under ``prefix`` with the raw layout's five segments, or None (see :func:`parse_raw_key`
    for the strict inverse of :func:`raw_key`)."""
    head = prefix.rstrip("/") + "/"
    if not key.startswith(head):
        return None
    parts = key[len(head) :].split("/")
    if len(parts) != 5:
        return None
    name = parts[4]
    cut = name.find(CONFLICT_MARKER)
    if cut >= 0:
        name = name[:cut]
    return RawKeyParts(raw_key_day(key, prefix), parts[3], name.removesuffix(RAW_SUFFIX))


def parse_raw_key(key: str, prefix: str = RAW_PREFIX) -> RawKey:
    """Inverse of :func:`raw_key`; raises InvalidKeyPart for anything else (including conflict copies)."""
    check_prefix(prefix)
    parts = split_raw_key(key, prefix) if isinstance(key, str) and key.endswith(RAW_SUFFIX) else None
    parsed = RawKey(parts.day, check_endpoint(parts.endpoint), check_slug(parts.slug)) if parts and parts.day else None
    if parsed is None or raw_key(parsed.day, parsed.endpoint, parsed.slug, prefix) != key:  # e.g. 2026/5/29
        raise InvalidKeyPart("raw key", key, f"{prefix}/YYYY/MM/DD/<endpoint>/<slug>{RAW_SUFFIX}")
    return parsed


def split_video_key(key: str) -> tuple[str, str] | None:
    """(handle, aweme_id) of a media key ``videos/dt=…/author=<handle>/<aweme_id>…`` (a video, its sidecar, a
    photo post's ``<aweme_id>-<n>.jpg`` images and sound), or None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != VIDEOS_PREFIX[:-1] or not parts[2].startswith("author="):
        return None
    return parts[2][len("author=") :], parts[3].split(".", 1)[0].split("-", 1)[0]


def split_cover_key(key: str) -> str | None:
    """The aweme_id of a cover key ``covers/dt=…/<aweme_id>.jpg``, or None."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != COVERS_PREFIX[:-1]:
        return None
    return parts[2].split(".", 1)[0]


def day_of_key(key: str) -> date | None:
    """The archive day of a raw key (either API's), a media key or a cover key, or None."""
    for prefix in (RAW_PREFIX, RESEARCH_PREFIX):
        if key.startswith(prefix + "/"):
            parts = split_raw_key(key, prefix)
            return parts.day if parts else None
    return _date(_MEDIA_DAY_RE.match(key))

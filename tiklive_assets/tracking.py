"""What to track and how hard to pull: the ``TIKLIVE_CONFIG`` YAML file (default ``tiklive.yaml``), validated.

A malformed file, a duplicate key, an unknown key or a value that cannot be used (a handle that cannot become an
object key) fails with the file, the line, the field and what is allowed, before any credit is spent. The
repository's ``tiklive.yaml`` documents every option.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tiklive_assets.capture.cdn import parse_origin
from tiklive_assets.pricing import Provider, StoragePrices
from tiklive_assets.storage.keys import InvalidKeyPart, check_handle

ID_PATTERN = r"^[0-9]{1,32}$"
MIB = 1024 * 1024


def _key_safe_handle(value: str, field: str = "handle") -> str:
    """A handle becomes a segment of object keys: the key layout's own rule decides (storage/keys.py)."""
    try:
        return check_handle(value, field)
    except InvalidKeyPart as exc:
        raise ValueError(f"{value!r} cannot become an object key: allowed is {exc.allowed}") from None


class ConfigError(ValueError):
    """The tracking config is unusable; the message names the file, the field and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Per-source bounds on one day's discovery."""

    max_pages: int = Field(5, ge=1, le=1000, description="listing pages per source per day (30 ids a page)")
    max_videos_per_day: int = Field(300, ge=0, description="new ids a source may enqueue per day")


class CommentOptions(_Strict):
    recent_videos: int = Field(3, ge=0, description="how many of the account's newest videos get comments captured")
    max_pages: int = Field(2, ge=0, description="comment pages per video (50 comments a page)")
    reply_depth: int = Field(1, ge=0, le=1, description="0: top-level comments only; 1: also replies")
    max_reply_pages: int = Field(1, ge=0, description="reply pages per comment that has replies")


def _promote(key: str):
    """Let a list item be a bare string (the common case) or a mapping with options."""

    def before(cls, value: Any) -> Any:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return {key: str(value)}
        return value

    # pydantic types this decorator for a class body, where @classmethod is transparent to mypy; built here at run
    # time, the classmethod object is what pydantic expects and what its typing cannot express
    return model_validator(mode="before")(classmethod(before))  # type: ignore[arg-type]


class Account(_Strict):
    handle: str
    max_pages: int | None = Field(None, ge=1, le=1000)
    max_videos_per_day: int | None = Field(None, ge=0)
    followers: bool = True
    following: bool = True
    follow_max_pages: int = Field(3, ge=0, description="followers/following pages per day (50 a page)")
    comments: CommentOptions = CommentOptions()

    _from_string = _promote("handle")

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str) -> str:
        return _key_safe_handle(value.lstrip("@") if isinstance(value, str) else value)


class Hashtag(_Strict):
    id: str = Field(pattern=ID_PATTERN, description="challenge id (hashtag name to id: /challenge-info-name/)")
    region: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    max_pages: int | None = Field(None, ge=1, le=1000)
    max_videos_per_day: int | None = Field(None, ge=0)

    _from_string = _promote("id")


class Keyword(_Strict):
    keyword: str = Field(min_length=1, max_length=100)
    publish_time: Literal[0, 1, 7, 30, 90, 180] | None = None
    sort_by: Literal[0, 1, 2] | None = None
    region: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    max_pages: int | None = Field(None, ge=1, le=1000)
    max_videos_per_day: int | None = Field(None, ge=0)

    _from_string = _promote("keyword")


class Music(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    max_pages: int | None = Field(None, ge=1, le=1000)
    max_videos_per_day: int | None = Field(None, ge=0)

    _from_string = _promote("id")


class Plan(_Strict):
    requests_per_minute: int = Field(200, ge=1, description="your TikLiveAPI plan's rate (standard: 200)")
    window_seconds: float = Field(
        60, gt=0, le=3600, description="the window the plan's rate is counted over (TikLiveAPI's: a minute)"
    )
    daily_credit_budget: int | None = Field(None, ge=1, description="stop cleanly before spending more in a UTC day")
    max_retry_after_seconds: float = Field(
        300, ge=0, description="longest Retry-After obeyed; a longer one stops the run at once, saying when to retry"
    )
    request_deadline_seconds: float = Field(
        600, gt=0, description="one API request in total: every attempt's connect and read, and the waits between"
    )
    max_response_bytes: int = Field(
        16 * MIB, ge=1024, description="largest API response read; a larger one is refused (never archived)"
    )


class Capture(_Strict):
    download_concurrency: int = Field(20, ge=1, le=256, description="parallel CDN downloads")
    api_concurrency: int = Field(8, ge=1, le=64, description="parallel API calls (the rate limiter still rules)")
    max_attempts: int = Field(5, ge=1, description="runs that may try an id before it is dead-lettered")
    dead_letter_retention_days: int = Field(90, ge=1, description="the janitor ages dead letters out after this")
    claim_lease_seconds: float = Field(
        600,
        gt=0,
        description="how long a claim without a known owner (an older release's) holds a queue id; a "
        "claim with an owner is held while the owner heartbeats and freed at once when its process is gone",
    )
    allowed_media_origins: list[str] = Field(
        default_factory=list,
        description="origins (scheme://host[:port]) media may come from besides https and the API's own origin, "
        "even over http or on a private address",
    )
    max_video_bytes: int = Field(512 * MIB, ge=1, description="largest media file downloaded; a larger one fails")
    download_deadline_seconds: float = Field(
        900, gt=0, description="one media download in total (connect, redirects, body); past it the CDN stalls"
    )

    @field_validator("allowed_media_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if isinstance(values, list):
            for text in values:
                if isinstance(text, str):
                    parse_origin(text)  # ValueError: says what an origin looks like
        return values

    claim_heartbeat_seconds: float = Field(
        10,
        gt=0,
        description="how often a run renews its claims; "
        "a run silent for 3 of these (or whose process is gone) loses them",
    )
    # Read by the daily capture schedule at each tick (defs/capture/jobs.py), never by a run: a UI backfill or a
    # run launched by hand is one run per partition whatever this says. Workers split the day's walks and queued
    # videos by claims in the state database, so N runs send the requests one run sends (never more credits), under
    # the plan's one rate window; they only finish sooner. They run together only as far as the Dagster instance
    # lets them: the `tiklive_api` pool limit (`dagster instance concurrency set tiklive_api N`) and
    # `concurrency.runs.max_concurrent_runs` in dagster.yaml; below that, the extra runs wait in the queue.
    workers: int = Field(
        1,
        ge=1,
        le=16,
        description="capture runs the daily schedule launches for the day (one by default); more than 1 needs "
        "the tiklive_api pool limit raised to match, and across hosts a shared state database "
        "(TIKLIVE_STATE_URL), rate window (TIKLIVE_RATELIMIT_URL) and archive",
    )


class ResearchConfig(_Strict):
    """The official TikTok Research API (``tiklive research`` and the ``research`` assets)."""

    usernames: list[str] = Field(default_factory=list, description="accounts whose videos are collected")
    hashtags: list[str] = Field(default_factory=list, description="hashtag names (without #) to filter on")
    keywords: list[str] = Field(default_factory=list, description="keywords in the video description")
    regions: list[str] = Field(default_factory=list, description="two-letter region codes")
    start_date: date | None = Field(None, description="first create date for `tiklive research` without --from")
    end_date: date | None = Field(None, description="last create date for `tiklive research` without --to")
    page_pause_seconds: float = Field(10.0, ge=0, description="pause between pages of one search (API needs ~10 s)")
    max_count: int = Field(100, ge=1, le=100, description="records a request")
    daily_quota: int = Field(1000, ge=1, description="requests a UTC day, shared by every run (state database)")
    run_request_cap: int | None = Field(None, ge=1, description="stop a run cleanly after this many requests")
    max_retries: int = Field(3, ge=0, le=10, description="internal_error retries of one page (each costs quota)")
    users: bool = Field(True, description="also collect user info of the usernames")
    followers: bool = True
    following: bool = True
    follow_max_pages: int | None = Field(None, ge=1, description="followers/following pages a user (100 a page)")
    refresh_days: int = Field(
        15,
        ge=1,
        le=15,
        description="the platform's terms: research records are refreshed at least every 15 days (1-15)",
    )

    @field_validator("usernames", "hashtags", "keywords", "regions", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if value is None:
            return []
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("usernames")
    @classmethod
    def _handles(cls, value: list[str]) -> list[str]:
        return [_key_safe_handle(v.lstrip("@"), "username") for v in value]


DEFAULT_REFRESH_AGES_HOURS = (1, 6, 24, 72, 168, 720)  # 1 h, 6 h, 24 h, 3 d, 7 d, 30 d after posting


class Refresh(_Strict):
    """Re-resolving tracked videos at set ages after posting, for engagement curves."""

    enabled: bool = Field(True, description="run the refresh at all")
    ages_hours: list[float] = Field(
        default_factory=lambda: [float(age) for age in DEFAULT_REFRESH_AGES_HOURS],
        min_length=1,
        description="ages after posting (hours) at which a video is re-resolved once each",
    )
    daily_credits: int = Field(200, ge=0, description="credits the refresh may spend in one UTC day")
    max_age_days: int = Field(35, ge=1, description="videos older than this are no longer refreshed")

    @field_validator("ages_hours")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if any(age <= 0 for age in value):
            raise ValueError("every age must be more than 0 hours")
        if sorted(set(value)) != list(value):
            raise ValueError("ages must be given once each, in ascending order")
        return value


class Tombstones(_Strict):
    """Content that answered "not found" or "private" on a refresh."""

    purge_raw_after_days: int | None = Field(
        None,
        ge=1,
        description="delete a tombstoned video's raw objects this many days after it was first seen missing; "
        "unset (the default): keep them, they are the only record of deleted content",
    )


class Compaction(_Strict):
    """Packing a day's small raw objects into one bundle per endpoint once the day is past the hot period."""

    enabled: bool = Field(True, description="compact days older than hot_days")
    hot_days: int = Field(30, ge=1, description="days a day's raw objects stay loose (hot) before compaction")
    provider: Provider = Field("s3", description="whose prices the cost figures use: s3, r2 or b2")


class TrackingConfig(_Strict):
    plan: Plan = Plan()
    limits: Limits = Limits()
    capture: Capture = Capture()
    accounts: list[Account] = []
    hashtags: list[Hashtag] = []
    keywords: list[Keyword] = []
    music: list[Music] = []
    research: ResearchConfig | None = None
    refresh: Refresh = Refresh()
    tombstones: Tombstones = Tombstones()
    compaction: Compaction = Compaction()
    storage_prices: StoragePrices = StoragePrices()

    @field_validator("accounts", "hashtags", "keywords", "music", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    def max_pages(self, source: Account | Hashtag | Keyword | Music) -> int:
        return source.max_pages or self.limits.max_pages

    def max_videos(self, source: Account | Hashtag | Keyword | Music) -> int:
        value = source.max_videos_per_day
        return self.limits.max_videos_per_day if value is None else value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error (PyYAML keeps the last one
    silently, so a second ``capture:`` section would quietly replace the first)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: construct_mapping reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first given at line {first.start_mark.line + 1}); give each key once",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep)


def parse_config(data: Any, source: str = "<config>", *, _node: yaml.Node | None = None) -> TrackingConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return TrackingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(source, exc, _node)) from None


def load_config(path: str | Path) -> TrackingConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such file. Create it (the repository's tiklive.yaml is a documented starting point) or point "
            "TIKLIVE_CONFIG at your file."
        )
    loader = _UniqueKeyLoader(path.read_text())
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    return parse_config(data, str(path), _node=node)


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """The line (1-based) of the YAML node at a validation error's location, as deep as the document goes."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None
            )
            if match is None:
                continue  # a pydantic-internal step (a validator's name): stay at this node
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _explain(source: str, exc: ValidationError, node: yaml.Node | None = None) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the tracking config:"]
    for error in exc.errors():
        location = _location(error["loc"])
        line = _line_of(node, error["loc"])
        at = f" (line {line})" if line is not None else ""
        if error["type"] == "extra_forbidden":
            parent = _model_at(error["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see the documented tiklive.yaml"
            lines.append(f"  - {location}: unknown key{at}; allowed here: {allowed}")
        else:
            lines.append(f"  - {location}: {error['msg']} (got {error.get('input')!r}){at}")
    lines.append("  The repository's tiklive.yaml documents every option.")
    return "\n".join(lines)


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-before[before(), Account]",) or "function-" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = TrackingConfig
    for part in loc:
        if isinstance(part, int) or "function-" in str(part):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidate = inner[0] if inner else annotation
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
        else:
            return None
    return model

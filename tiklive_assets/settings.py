"""The environment: every variable the project reads, its default, and the data root layout, in one module.

Nothing else in ``tiklive_assets`` reads ``os.environ``: code asks a function here, at the time it needs the value,
so a test or a CLI flag that sets a variable is seen by the next call. The one read when definitions load is
``TIKLIVE_FIRST_DAY`` (``defs/partitions.py``): Dagster builds the daily partitions as it loads the code location.
The tracking file (what to capture, how hard to pull) is :mod:`tiklive_assets.tracking`; this module only says
where it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# --- where things are -----------------------------------------------------------------------------------------
HOME = "TIKLIVE_HOME"  # data root, default ./data
CONFIG = "TIKLIVE_CONFIG"  # tracking YAML, default tiklive.yaml
STATE_URL = "TIKLIVE_STATE_URL"  # queue, cursors, credits: sqlite (default, under HOME) or postgresql://
RATELIMIT_URL = "TIKLIVE_RATELIMIT_URL"  # sqlite (default, one host), redis:// or postgresql:// (many hosts)
WAREHOUSE_URL = "TIKLIVE_WAREHOUSE_URL"  # postgresql://… or a DuckDB path; default HOME/warehouse.duckdb
DAGSTER_HOME = "DAGSTER_HOME"  # the Dagster instance; the CLI falls back to HOME/dagster

# --- the raw archive's store ----------------------------------------------------------------------------------
ARCHIVE_BUCKET = "TIKLIVE_ARCHIVE_BUCKET"  # unset: local disk under HOME/archive; set: an S3-compatible bucket
ARCHIVE_PREFIX = "TIKLIVE_ARCHIVE_PREFIX"  # key prefix inside the bucket, default none
S3_ENDPOINT_URL = "TIKLIVE_S3_ENDPOINT_URL"  # unset: AWS S3; set: R2, B2 or any S3-compatible endpoint
S3_REGION = "TIKLIVE_S3_REGION"  # the bucket's region, default the AWS SDK's
S3_CONDITIONAL_WRITES = "TIKLIVE_S3_CONDITIONAL_WRITES"  # "false" for stores without If-None-Match on PUT
SECONDARY_BUCKET = "TIKLIVE_ARCHIVE_SECONDARY_BUCKET"  # a second bucket every object is mirrored to
SECONDARY_S3_ENDPOINT_URL = "TIKLIVE_SECONDARY_S3_ENDPOINT_URL"  # the secondary's endpoint (another provider)

# --- the APIs -------------------------------------------------------------------------------------------------
API_KEY = "TIKLIVE_API_KEY"  # the X-Api-Key secret; read through dg.EnvVar, never logged
BASE_URL = "TIKLIVE_BASE_URL"  # default https://api.tikliveapi.com
RESEARCH_CLIENT_KEY = "TIKTOK_RESEARCH_CLIENT_KEY"  # the Research API's OAuth client key
RESEARCH_CLIENT_SECRET = "TIKTOK_RESEARCH_CLIENT_SECRET"  # ... and secret; never logged
RESEARCH_BASE_URL = "TIKTOK_RESEARCH_BASE_URL"  # default https://open.tiktokapis.com

DEFAULT_BASE_URL = "https://api.tikliveapi.com"
DEFAULT_RESEARCH_BASE_URL = "https://open.tiktokapis.com"

# --- the calendar and the checks ------------------------------------------------------------------------------
FIRST_DAY = "TIKLIVE_FIRST_DAY"  # first daily partition (YYYY-MM-DD, UTC): the project's first capture day
QUARANTINE_MAX_RATIO = "TIKLIVE_QUARANTINE_MAX_RATIO"  # share of a day's objects that may be quarantined, 0.01
RESTORE_TOLERANCE = "TIKLIVE_RESTORE_TOLERANCE"  # relative row-count difference a restore may show, per table, 0
RESTORE_SEED = "TIKLIVE_RESTORE_SEED"  # fixes the nightly restore's sample (tests); default a fresh one each night
LANDED_BY_HOUR = "TIKLIVE_LANDED_BY_HOUR"  # UTC hour by which today's capture must have landed, 6

# --- operations -----------------------------------------------------------------------------------------------
ALERT_WEBHOOK_URL = "TIKLIVE_ALERT_WEBHOOK_URL"  # failed runs and checks are posted here; unset: the log only
OPERATOR = "TIKLIVE_OPERATOR"  # who places holds and runs erasures when not given; default the login name
PROGRESS_SECONDS = "TIKLIVE_PROGRESS_SECONDS"  # seconds between plain progress lines when stderr is no terminal
CRASH_AT = "TIKLIVE_CRASH_AT"  # tests only: NAME or NAME:N kills the process at that named point


def _get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = (os.environ if environ is None else environ).get(name)
    return value if value and value.strip() else None


def _number(name: str, default: float) -> float:
    text = _get(name)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is not a number: set it to a number (default {default:g}) or unset it"
        ) from None


@dataclass(frozen=True)
class DataRoot:
    """Where an embedded deployment keeps everything, under ``TIKLIVE_HOME``."""

    home: Path

    @classmethod
    def from_env(cls) -> DataRoot:
        return cls(Path(_get(HOME) or "data").absolute())

    @property
    def archive(self) -> Path:
        return self.home / "archive"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def state_url(self) -> str:
        return _get(STATE_URL) or f"sqlite:///{self.home / 'state.sqlite'}"

    @property
    def ratelimit_url(self) -> str:
        return _get(RATELIMIT_URL) or f"sqlite:///{self.home / 'ratelimit.sqlite'}"


def use_home(path: Path) -> None:
    """Point this process (and what it starts) at a data root: a CLI's ``--home``."""
    os.environ[HOME] = str(path.absolute())


def use_config(path: Path) -> None:
    """Point this process (and what it starts) at a tracking file: a CLI's ``--config``."""
    os.environ[CONFIG] = str(path)


def use_api(base_url: str, api_key: str) -> None:
    """Point this process (and what it starts) at an API host and key: ``--sandbox``."""
    os.environ[BASE_URL] = base_url
    os.environ[API_KEY] = api_key


def config_path() -> Path:
    return Path(_get(CONFIG) or "tiklive.yaml")


def dagster_home() -> Path | None:
    """``DAGSTER_HOME`` when set."""
    value = _get(DAGSTER_HOME)
    return Path(value).absolute() if value else None


def api_key() -> str | None:
    """The TikLiveAPI key, for code that cannot take it through ``dg.EnvVar`` (the CLI's key check, preflight)."""
    return _get(API_KEY)


def base_url() -> str:
    return _get(BASE_URL) or DEFAULT_BASE_URL


def research_credentials() -> tuple[str | None, str | None]:
    """The Research API's client key and secret (either may be missing; the client says which)."""
    return _get(RESEARCH_CLIENT_KEY), _get(RESEARCH_CLIENT_SECRET)


def research_base_url() -> str:
    return _get(RESEARCH_BASE_URL) or DEFAULT_RESEARCH_BASE_URL


def archive_bucket() -> str | None:
    return _get(ARCHIVE_BUCKET)


def archive_prefix() -> str:
    return _get(ARCHIVE_PREFIX) or ""


def s3_endpoint_url() -> str | None:
    return _get(S3_ENDPOINT_URL)


def s3_region() -> str | None:
    return _get(S3_REGION)


def s3_conditional_writes() -> bool:
    return (_get(S3_CONDITIONAL_WRITES) or "true").lower() != "false"


def secondary_bucket() -> str | None:
    return _get(SECONDARY_BUCKET)


def secondary_s3_endpoint_url() -> str | None:
    return _get(SECONDARY_S3_ENDPOINT_URL)


def prefer_when_required_checksums() -> None:
    """Ask botocore to checksum only when an operation requires it, unless the user chose otherwise.

    R2, B2 and moto reject or ignore the CRC trailers newer botocore sends by default on every PUT."""
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")


def warehouse_url(home: Path | None = None) -> str:
    """``TIKLIVE_WAREHOUSE_URL``, else the embedded DuckDB file under ``home`` (default ``TIKLIVE_HOME``)."""
    return _get(WAREHOUSE_URL) or str((DataRoot(home) if home else DataRoot.from_env()).warehouse)


def first_day_text(environ: Mapping[str, str] | None = None) -> str | None:
    """``TIKLIVE_FIRST_DAY`` as written, or None (the partitions module validates it)."""
    value = _get(FIRST_DAY, environ)
    return value.strip() if value else None


def quarantine_max_ratio() -> float:
    return _number(QUARANTINE_MAX_RATIO, 0.01)


def restore_tolerance() -> float:
    return _number(RESTORE_TOLERANCE, 0.0)


def restore_seed() -> int | None:
    value = _get(RESTORE_SEED)
    return int(value) if value else None


def landed_by_hour() -> int:
    return int(_number(LANDED_BY_HOUR, 6))


def alert_webhook_url() -> str | None:
    return _get(ALERT_WEBHOOK_URL)


def operator() -> str:
    """Who is acting: ``TIKLIVE_OPERATOR``, else the login name, else "unknown"."""
    return _get(OPERATOR) or _get("USER") or "unknown"


def operator_if_set() -> str | None:
    return _get(OPERATOR)


def progress_seconds() -> float:
    return _number(PROGRESS_SECONDS, 30.0)


def crash_at() -> str | None:
    return _get(CRASH_AT)


def environment() -> dict[str, str]:
    """A copy of this process's environment, for a child process the CLI starts."""
    return dict(os.environ)

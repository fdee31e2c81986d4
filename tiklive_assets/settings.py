"""Environment variables and the data root layout: every name other code, docs and checks rely on, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

API_KEY = "TIKLIVE_API_KEY"  # the X-Api-Key secret; read through dg.EnvVar, never logged
BASE_URL = "TIKLIVE_BASE_URL"  # default https://api.tikliveapi.com
HOME = "TIKLIVE_HOME"  # data root, default ./data
CONFIG = "TIKLIVE_CONFIG"  # tracking YAML, default tiklive.yaml
STATE_URL = "TIKLIVE_STATE_URL"  # queue, cursors, credits: sqlite (default, under HOME) or postgresql://
ARCHIVE_BUCKET = "TIKLIVE_ARCHIVE_BUCKET"  # unset: local disk under HOME/archive; set: an S3-compatible bucket
RATELIMIT_URL = "TIKLIVE_RATELIMIT_URL"  # sqlite (default, one host), redis:// or postgresql:// (many hosts)
S3_ENDPOINT_URL = "TIKLIVE_S3_ENDPOINT_URL"  # unset: AWS S3; set: R2, B2 or any S3-compatible endpoint
WAREHOUSE_URL = "TIKLIVE_WAREHOUSE_URL"  # postgresql://… or a DuckDB path; default HOME/warehouse.duckdb
FIRST_DAY = "TIKLIVE_FIRST_DAY"  # first daily partition (YYYY-MM-DD, UTC): the project's first capture day

DEFAULT_BASE_URL = "https://api.tikliveapi.com"


@dataclass(frozen=True)
class DataRoot:
    """Where an embedded deployment keeps everything, under ``TIKLIVE_HOME``."""

    home: Path

    @classmethod
    def from_env(cls) -> DataRoot:
        return cls(Path(os.environ.get(HOME, "data")).absolute())

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
        return os.environ.get(STATE_URL) or f"sqlite:///{self.home / 'state.sqlite'}"

    @property
    def ratelimit_url(self) -> str:
        return os.environ.get(RATELIMIT_URL) or f"sqlite:///{self.home / 'ratelimit.sqlite'}"


def config_path() -> Path:
    return Path(os.environ.get(CONFIG, "tiklive.yaml"))


def base_url() -> str:
    return os.environ.get(BASE_URL) or DEFAULT_BASE_URL


def archive_bucket() -> str | None:
    return os.environ.get(ARCHIVE_BUCKET) or None


def s3_endpoint_url() -> str | None:
    return os.environ.get(S3_ENDPOINT_URL) or None


def warehouse_url() -> str:
    """``TIKLIVE_WAREHOUSE_URL``, else the embedded DuckDB file under ``TIKLIVE_HOME``."""
    return os.environ.get(WAREHOUSE_URL) or str(DataRoot.from_env().warehouse)

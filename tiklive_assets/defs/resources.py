"""Thin resources: the TikLiveAPI client, the archive store, the state database and the tracking config.

Switched by deployment through environment variables (embedded defaults under ``TIKLIVE_HOME``); the API key
comes from ``dg.EnvVar("TIKLIVE_API_KEY")``. Nothing here connects or opens a file at definition-load time.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import dagster as dg
from dagster_aws.s3 import S3Resource

from tiklive_assets import settings
from tiklive_assets.tracking import Plan, TrackingConfig, load_config
from tiklive_assets.state import StateDB
from tiklive_assets.storage import MirroredStore, ObjectStore
from tiklive_assets.storage.local import LocalStore
from tiklive_assets.storage.s3 import S3Store
from tiklive_assets.tikliveapi.client import CreditLedger, TikLiveClient
from tiklive_assets.tikliveapi.ratelimit import RateLimiter, RatePlan


class TrackingConfigResource(dg.ConfigurableResource):
    """What to track: the YAML file named by TIKLIVE_CONFIG (default tiklive.yaml)."""

    path: str | None = None

    def load(self) -> TrackingConfig:
        return load_config(self.path or settings.config_path())


class DataRootResource(dg.ConfigurableResource):
    """The embedded data root (TIKLIVE_HOME, default ./data) and the state database URL."""

    home: str | None = None
    state_url: str | None = None

    def root(self) -> settings.DataRoot:
        return settings.DataRoot(Path(self.home).absolute()) if self.home else settings.DataRoot.from_env()

    @contextmanager
    def state(self) -> Iterator[StateDB]:
        """The state database for the length of a ``with`` block, closed however the block ends."""
        db = self.open_state()
        try:
            yield db
        finally:
            db.close()

    def open_state(self) -> StateDB:
        """The state database, opened; the caller closes it (prefer ``with data_root.state() as state:``)."""
        root = self.root()
        url = self.state_url or root.state_url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return StateDB.from_url(url)

    @property
    def scratch(self) -> Path:
        return self.root().home / "tmp"


class ArchiveStoreResource(dg.ConfigurableResource):
    """The object store: local disk (default) or an S3-compatible bucket through dagster-aws's S3Resource.

    ``bucket`` unset means ``TIKLIVE_HOME/archive`` on local disk. For Cloudflare R2 or Backblaze B2 set the
    S3Resource's ``endpoint_url``; checksums are sent only when required (what R2 and B2 accept), and B2,
    which lacks conditional writes, takes ``conditional_writes: false``. ``secondary_bucket`` mirrors every write.
    """

    bucket: str | None = None
    prefix: str = ""
    s3: S3Resource | None = None
    conditional_writes: bool = True
    secondary_bucket: str | None = None
    secondary_s3: S3Resource | None = None
    secondary_conditional_writes: bool = True
    local_root: str | None = None

    def open(self) -> ObjectStore:
        settings.prefer_when_required_checksums()
        if self.bucket:
            primary: ObjectStore = S3Store(
                (self.s3 or S3Resource()).get_client(), self.bucket, self.prefix, self.conditional_writes
            )
        elif self.local_root:
            primary = LocalStore(Path(self.local_root))
        else:
            primary = LocalStore(settings.DataRoot.from_env().archive)
        if self.secondary_bucket:
            client = (self.secondary_s3 or self.s3 or S3Resource()).get_client()
            secondary = S3Store(client, self.secondary_bucket, self.prefix, self.secondary_conditional_writes)
            return MirroredStore(primary, secondary)
        return primary


class TikLiveApiResource(dg.ConfigurableResource):
    """TikLiveAPI: the key (an EnvVar, never logged), the host, and where the shared rate limit lives."""

    api_key: str
    base_url: str | None = None
    ratelimit_url: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5
    backoff_initial: float = 0.5

    def client(
        self,
        *,
        requests_per_minute: int,
        max_attempts: int | None = None,
        credit_ledger: CreditLedger | None = None,
        on_response=None,
        period_seconds: float = 60.0,
        plan: Plan | None = None,
    ) -> TikLiveClient:
        """A client at the plan's rate. ``plan`` (the tracking config's) sets the bounded waits: the longest
        Retry-After obeyed, the deadline of one request and the largest answer read; without it, their defaults."""
        plan = plan or Plan(requests_per_minute=requests_per_minute)
        limit = max(1, round(requests_per_minute * period_seconds / 60.0))
        limiter = RateLimiter(
            RatePlan(limit, period_seconds), self.ratelimit_url or settings.DataRoot.from_env().ratelimit_url
        )
        return TikLiveClient(
            self.api_key,
            self.base_url or settings.base_url(),
            rate_limiter=limiter,
            credit_ledger=credit_ledger,
            on_response=on_response,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=max_attempts or self.max_attempts,
            backoff_initial=self.backoff_initial,
            max_retry_after=plan.max_retry_after_seconds,
            request_deadline=plan.request_deadline_seconds,
            max_response_bytes=plan.max_response_bytes,
        )


def _archive_store_from_env() -> ArchiveStoreResource:
    bucket = settings.archive_bucket()
    if not bucket:
        return ArchiveStoreResource()
    secondary = settings.secondary_bucket()
    return ArchiveStoreResource(
        bucket=bucket,
        prefix=settings.archive_prefix(),
        s3=S3Resource(endpoint_url=settings.s3_endpoint_url(), region_name=settings.s3_region()),
        conditional_writes=settings.s3_conditional_writes(),
        secondary_bucket=secondary,
        secondary_s3=S3Resource(endpoint_url=settings.secondary_s3_endpoint_url()) if secondary else None,
    )


class DefaultResources(TypedDict):
    """The project's resources by key, each with its own type (the CLI opens them outside Dagster)."""

    tiklive_api: TikLiveApiResource
    archive_store: ArchiveStoreResource
    data_root: DataRootResource
    tracking: TrackingConfigResource


def default_resources() -> DefaultResources:
    return {
        "tiklive_api": TikLiveApiResource(api_key=dg.EnvVar(settings.API_KEY)),
        "archive_store": _archive_store_from_env(),
        "data_root": DataRootResource(),
        "tracking": TrackingConfigResource(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=dict(default_resources()))

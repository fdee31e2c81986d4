"""Thin resources: the TikLiveAPI client, the archive store, the state database and the tracking config.

Switched by deployment through environment variables (embedded defaults under ``TIKLIVE_HOME``); the API key
comes from ``dg.EnvVar("TIKLIVE_API_KEY")``. Nothing here connects or opens a file at definition-load time.
Each resource that opens something owns its lifecycle: ``DataRootResource.state()`` and ``CaptureResources``'
``open()`` and ``session()`` are context managers that close what they opened however the block ends.
"""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypedDict

import dagster as dg
from dagster_aws.s3 import S3Resource

from tiklive_assets import settings
from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.capture.session import CaptureSession, StateCreditLedger
from tiklive_assets.preflight import require_ready
from tiklive_assets.state import StateDB
from tiklive_assets.storage import MirroredStore, ObjectStore
from tiklive_assets.storage.base import StoreError
from tiklive_assets.storage.keys import InvalidKeyPart
from tiklive_assets.storage.local import LocalStore
from tiklive_assets.storage.s3 import S3Store
from tiklive_assets.tikliveapi.client import ApiResponse, CreditLedger, TikLiveClient
from tiklive_assets.tikliveapi.errors import (
    AuthError,
    BadResponse,
    BalanceExhausted,
    CreditBudgetExhausted,
    CursorStuck,
    RateLimited,
)
from tiklive_assets.tikliveapi.ratelimit import RateLimiter, RatePlan
from tiklive_assets.tracking import ConfigError, Plan, TrackingConfig, load_config

# Errors a retry cannot fix: Dagster's retry policy never re-runs a step for them (see CaptureResources.session).
# RateLimited: a Retry-After beyond the plan's cap (the message says when to retry); CursorStuck: drift.
NEVER_RETRIED = (AuthError, BadResponse, InvalidKeyPart, ConfigError, StoreError, RateLimited, CursorStuck)


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

    @property
    def state_database_url(self) -> str:
        """Where the state database is: ``state_url`` when set, else the data root's (TIKLIVE_STATE_URL)."""
        return self.state_url or self.root().state_url

    def open_state(self) -> StateDB:
        """The state database, opened; the caller closes it (prefer ``with data_root.state() as state:``)."""
        url = self.state_database_url
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
        on_response: Callable[[ApiResponse], object] | None = None,  # its return value is ignored
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


def never_retried(exc: Exception, credits_spent: int) -> dg.Failure:
    """Retrying these only spends credits again (a rejected key, an answer that stays unreadable, a value that
    cannot become an object key, a store or configuration problem): fail once and say what to fix."""
    return dg.Failure(
        description=f"{type(exc).__name__}: {exc}",
        allow_retries=False,
        metadata={"credits_spent": credits_spent, "error": type(exc).__name__},
    )


def budget_failure(
    exc: CreditBudgetExhausted, session: CaptureSession, more: Mapping[str, dg.MetadataValue] | None = None
) -> dg.Failure:
    """A credit stop (the day's budget, or the account's balance) fails the step without retries: retrying only
    spends more. Nothing was marked done, so the rerun after a top-up (or tomorrow) resumes where this stopped.
    ``more``: what the step has to add (what it did before the stop, what it left)."""
    spent_today = sum(session.state.credits_spent(datetime.now(UTC).date()).values())
    stop = "credit_balance" if isinstance(exc, BalanceExhausted) else "daily_budget"
    return dg.Failure(
        description=f"{exc} ({spent_today} credits recorded today across all runs)",
        allow_retries=False,
        metadata={
            "stop": stop,
            "credits_spent_today": spent_today,
            "credits_spent_by_this_step": exc.spent,
            "budget": exc.budget if exc.budget is not None else "account balance",
            **(more or {}),
        },
    )


@dataclass(frozen=True)
class CaptureResources:
    """The four resources a capture needs, wired into one ``CaptureSession``: the client (at the plan's rate, its
    credits reserved in the state database's ledger, each answer handed to the raw archive before anyone reads it),
    the raw archive of the day, the state database and the tracking config.

    The capture assets, the sensors and so ``tiklive run`` (which runs the assets) all build their sessions here."""

    tiklive_api: TikLiveApiResource
    archive_store: ArchiveStoreResource
    data_root: DataRootResource
    tracking: TrackingConfigResource

    @contextmanager
    def open(
        self,
        day: date,
        config: TrackingConfig | None = None,
        *,
        preflight: bool = False,
        max_attempts: int | None = None,
        plan: Plan | None = None,
    ) -> Iterator[CaptureSession]:
        """A session archiving under ``day``; the client and the state database are closed however the block ends.

        ``preflight``: check first that the store takes a write, the state database is migrated and the key is set
        (before the first credit). ``plan``: bounded waits other than the config's (a sensor tick's shorter ones)."""
        config = config or self.tracking.load()
        with self.data_root.state() as state:
            store = self.archive_store.open()
            if preflight:
                require_ready(store, self.data_root.state_database_url, api_key_present=bool(self.tiklive_api.api_key))
            archive = RawArchive(store, day)
            client = self.tiklive_api.client(
                requests_per_minute=config.plan.requests_per_minute,
                period_seconds=config.plan.window_seconds,
                max_attempts=max_attempts,
                credit_ledger=StateCreditLedger(state, config.plan.daily_credit_budget),
                on_response=archive.write,
                plan=plan or config.plan,  # the bounded waits: longest Retry-After obeyed, deadline, largest answer
            )
            try:  # creating the session first flushes the spool: a StoreError there spends no credit
                yield CaptureSession(client, archive, state, store, config, day, self.data_root.scratch)
            finally:
                client.close()

    @contextmanager
    def session(self, context: dg.AssetExecutionContext) -> Iterator[CaptureSession]:
        """An asset's session for its partition's day, preflight checked. What a retry cannot fix fails the step
        once (``NEVER_RETRIED``), and so does a credit stop (the day's budget or the balance), with what to do."""
        day = date.fromisoformat(context.partition_key)
        try:
            with self.open(day, preflight=True) as session:
                try:
                    yield session
                except CreditBudgetExhausted as exc:
                    raise budget_failure(exc, session) from None
                except NEVER_RETRIED as exc:
                    raise never_retried(exc, session.credits_spent) from exc
        except NEVER_RETRIED as exc:  # before the session existed: nothing was spent
            raise never_retried(exc, 0) from exc


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

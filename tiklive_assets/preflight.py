"""Preflight: before the first credit is spent, check that everything a capture writes to will take it.

A run that buys responses it cannot keep wastes money, and a set-up error found after the first request surfaces as
a raw ``NoSuchBucket``, ``403 HeadObject`` or psycopg traceback that names no setting. So ``tiklive run`` and each
capture asset check first, without any request to the API:

- the archive store is writable: a small object is written and deleted under ``_preflight/`` (bucket exists,
  credentials work, the disk has room); a mirror's secondary is checked too, as a warning only (its misses are
  journaled and repaired);
- the state database is reachable and migrated (it is opened and migrated; migrating is idempotent and safe when
  two first runs do it at once);
- the API key is set.

Each problem names the setting to fix (``TIKLIVE_ARCHIVE_BUCKET``, ``TIKLIVE_S3_ENDPOINT_URL``,
``TIKLIVE_STATE_URL``, ``TIKLIVE_API_KEY``...).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tiklive_assets import settings
from tiklive_assets.storage import LocalStore, MirroredStore, ObjectStore, StoreError
from tiklive_assets.storage.s3 import S3Store
from tiklive_assets.tracking import ConfigError

log = logging.getLogger(__name__)

PREFLIGHT_PREFIX = "_preflight/"
STATE_CONNECT_TIMEOUT = 5  # seconds: an unreachable database host fails the preflight fast, not after minutes
S3_PROBE_ATTEMPTS = 2  # the probe retries less than a capture does: a dead endpoint is reported in seconds


@dataclass(frozen=True)
class Problem:
    """One thing that stops (``fatal``) or weakens a capture, and the setting that fixes it."""

    part: str  # "archive store", "mirror secondary", "state database", "API key"
    setting: str  # the environment variable to fix
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.part}: {self.message} [fix: {self.setting}]"


class PreflightError(ConfigError):
    """The capture cannot start: nothing was requested, no credit was spent. The message lists what to fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"preflight failed before any request to the API (no credit spent):\n{lines}")


def redact_url(url: str) -> str:
    """A URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


# -- the store ----------------------------------------------------------------------------------------------------


def _quick_s3(store: S3Store) -> S3Store:
    """The same bucket through a client that retries less (the probe should fail in seconds); the store itself
    when its client cannot be copied."""
    try:
        import boto3
        from botocore.config import Config

        client = store.client
        credentials = client._request_signer._credentials  # botocore keeps them here; None without credentials
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        config = client.meta.config.merge(
            Config(retries={"max_attempts": S3_PROBE_ATTEMPTS, "mode": "standard"}, connect_timeout=5, read_timeout=15)
        )
        quick = boto3.session.Session().client(
            "s3",
            endpoint_url=client.meta.endpoint_url,
            region_name=client.meta.region_name,
            config=config,
            aws_access_key_id=frozen.access_key if frozen else None,
            aws_secret_access_key=frozen.secret_key if frozen else None,
            aws_session_token=frozen.token if frozen else None,
        )
    except Exception:  # noqa: BLE001 - a client we cannot copy: probe with the store's own
        return store
    probe = S3Store(quick, store.bucket, store.prefix, store.conditional_writes, settings=store.settings)
    return probe


def _probe(store: ObjectStore) -> None:
    """Write and delete one small object under _preflight/; raises StoreError."""
    if isinstance(store, S3Store):
        store = _quick_s3(store)
    key = f"{PREFLIGHT_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    store.put_bytes(key, b"preflight: this store takes writes\n", content_type="text/plain")
    store.delete(key)


def _store_setting(store: ObjectStore, secondary: bool = False) -> str:
    if isinstance(store, S3Store):
        return f"{store.settings.bucket} / {store.settings.endpoint}"
    if isinstance(store, LocalStore):
        return settings.HOME if not secondary else "TIKLIVE_ARCHIVE_SECONDARY_BUCKET"
    return settings.ARCHIVE_BUCKET


def check_store(store: ObjectStore) -> list[Problem]:
    """The store takes a write (and a delete); a mirror's secondary is checked as a warning."""
    problems = []
    primary = store.primary if isinstance(store, MirroredStore) else store
    try:
        _probe(primary)
    except StoreError as exc:
        problems.append(Problem("archive store", _store_setting(primary), str(exc)))
    except Exception as exc:  # noqa: BLE001 - any other failure of the store is still the store's
        problems.append(
            Problem(
                "archive store",
                _store_setting(primary),
                f"{primary.describe()}: a test write failed: {type(exc).__name__}: {exc}",
            )
        )
    if isinstance(store, MirroredStore):
        try:
            _probe(store.secondary)
        except Exception as exc:  # noqa: BLE001 - the secondary is best effort: misses are journaled and repaired
            problems.append(
                Problem(
                    "mirror secondary",
                    _store_setting(store.secondary, secondary=True),
                    f"{exc}. The capture runs anyway: keys the secondary misses are journaled and copied by "
                    "`tiklive mirror repair` (and the hourly mirror_repair job)",
                    fatal=False,
                )
            )
    return problems


# -- the state database ---------------------------------------------------------------------------------------------


def _with_connect_timeout(url: str) -> str:
    if not url.startswith(("postgresql", "postgres")) or "connect_timeout=" in url:
        return url
    return url + ("&" if "?" in url else "?") + f"connect_timeout={STATE_CONNECT_TIMEOUT}"


def check_state(state_url: str) -> list[Problem]:
    """The state database opens, migrates (idempotent, safe concurrently) and answers a query."""
    from tiklive_assets.state import StateDB

    shown = redact_url(state_url)
    try:
        if state_url.startswith("sqlite:///"):
            Path(state_url.removeprefix("sqlite:///").split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        state = StateDB.from_url(_with_connect_timeout(state_url))
    except (ValueError, OSError) as exc:
        return [Problem("state database", settings.STATE_URL, f"{shown}: {exc}")]
    try:
        state.migrate()
        state.queue_depth()
    except Exception as exc:  # noqa: BLE001 - psycopg/sqlite operational errors, auth, missing database...
        detail = " ".join(str(exc).split())
        password = urlsplit(state_url).password if "://" in state_url else None
        if password:
            detail = detail.replace(password, "***")
        return [
            Problem(
                "state database",
                settings.STATE_URL,
                f"cannot open and migrate {shown} ({type(exc).__name__}: {detail[:300]}). Check that the "
                "server is up and the URL, user, password and database are right",
            )
        ]
    finally:
        state.close()
    return []


# -- everything -----------------------------------------------------------------------------------------------------


def preflight(store: ObjectStore, state_url: str, api_key_present: bool = True) -> list[Problem]:
    """Every problem found (fatal or not), without a single request to the API; [] when all is ready."""
    problems = []
    if not api_key_present:
        problems.append(
            Problem(
                "API key",
                settings.API_KEY,
                "no TikLiveAPI key is set: export TIKLIVE_API_KEY (or use the bundled sandbox)",
            )
        )
    problems += check_store(store)
    problems += check_state(state_url)
    return problems


def require_ready(store: ObjectStore, state_url: str, api_key_present: bool = True) -> list[Problem]:
    """Raise PreflightError when anything fatal is wrong; return the warnings (log or print them)."""
    problems = preflight(store, state_url, api_key_present)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise PreflightError(fatal)
    for problem in problems:
        log.warning("preflight: %s", problem)
    return problems


# -- the Dagster instance of `tiklive run` --------------------------------------------------------------------------


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def prepare_instance_dir(path: Path) -> None:
    """Create and migrate a local Dagster instance's SQLite storages once, under a file lock.

    Two ``tiklive run`` started at once on a fresh ``TIKLIVE_HOME`` would both stamp Dagster's alembic version
    table (``UNIQUE constraint failed: alembic_version.version_num``, or a table left with two heads that fails
    every later run); with the lock the second waits and finds the storages ready.
    """
    import dagster as dg

    path.mkdir(parents=True, exist_ok=True)
    with _file_lock(path / ".tiklive-init.lock"):
        instance: Any = dg.DagsterInstance.local_temp(tempdir=str(path))
        try:
            instance.get_runs(limit=1)
            instance.get_latest_materialization_event(dg.AssetKey("tiklive_preflight"))
            instance.all_instigator_state()
        finally:
            instance.dispose()


def run_preflight(root: settings.DataRoot, store: ObjectStore, *, dagster_dir: Path | None = None) -> str:
    """What ``tiklive run`` checks before its first step: raises PreflightError; returns a line to print."""
    problems = require_ready(store, root.state_url, bool(settings.api_key()))
    if dagster_dir is not None:
        prepare_instance_dir(dagster_dir)
    warnings = "".join(f"\n  warning: {p}" for p in problems)
    return (
        f"preflight ok: {store.describe()} takes writes, state database {redact_url(root.state_url)} is ready"
        + warnings
    )

"""A scratch copy for a drill: a temp data root, a small tracking YAML and the bundled sandbox API.

The sandbox runs in this process (so a drill can revoke its key or change its answers mid-run, and read what it
was asked); the pipeline runs as ``tiklive`` commands in child processes, exactly as an operator runs them, pointed
at the scratch data root and the sandbox. A child never inherits the settings that name the real deployment's
stores, state database, warehouse, Dagster instance or alert webhook, so a drill cannot touch production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from tiklive_assets import settings
from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer
from tiklive_assets.sandbox.endpoints import parse_aweme_id, query_params
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.keys import cover_key
from tiklive_assets.tikliveapi.endpoints import POST_DETAIL
from tiklive_assets.warehouse.raw import raw_day_prefix, video_day_prefix

# One tracked account and one hashtag, a page each, a few videos: every capture step runs, in seconds.
DRILL_TRACKING: dict[str, Any] = {
    "plan": {"requests_per_minute": 100_000},
    "limits": {"max_pages": 1, "max_videos_per_day": 4},
    "capture": {"download_concurrency": 4, "api_concurrency": 4},
    "accounts": [{"handle": "alice123", "followers": False, "following": False, "comments": {"recent_videos": 0}}],
    "hashtags": ["1001"],
}
# Settings a child must not inherit: each would point the scratch run at the real deployment.
NOT_INHERITED = (
    settings.HOME,
    settings.CONFIG,
    settings.STATE_URL,
    settings.RATELIMIT_URL,
    settings.WAREHOUSE_URL,
    settings.DAGSTER_HOME,
    settings.ARCHIVE_BUCKET,
    settings.ARCHIVE_PREFIX,
    settings.S3_ENDPOINT_URL,
    settings.SECONDARY_BUCKET,
    settings.SECONDARY_S3_ENDPOINT_URL,
    settings.ALERT_WEBHOOK_URL,
    settings.CRASH_AT,
    settings.FIRST_DAY,
)
_MAIN = "import sys; from tiklive_assets.cli import main; sys.exit(main(sys.argv[1:]))"
COMMAND_TIMEOUT = 900.0


class DrillSandbox(SandboxServer):
    """The bundled sandbox, which can also revoke its key after a number of API requests (a key revoked mid-run)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__(config)
        self._count_lock = threading.Lock()
        self._requests = 0
        self._revoke_after: int | None = None
        self._next_key = ""
        self.revoked_at: int | None = None  # the request count when the key was revoked
        self.paid_details: Counter[str] = Counter()  # /post-detail/ answers billed (200 or 404), by video id

    def revoke_key_after(self, requests: int, new_key: str) -> None:
        """Accept the current key for ``requests`` more API requests, then only ``new_key``."""
        with self._count_lock:
            self._revoke_after, self._next_key = self._requests + requests, new_key

    def handle_api(self, path: str, query: str, headers: Any) -> tuple[int, dict | bytes, dict[str, str]]:
        with self._count_lock:
            self._requests += 1
            if self._revoke_after is not None and self._requests > self._revoke_after:
                self.config.api_key, self._revoke_after, self.revoked_at = self._next_key, None, self._requests - 1
        status, body, extra = super().handle_api(path, query, headers)
        if path == POST_DETAIL.path and status in (200, 404):
            aweme_id = parse_aweme_id(query_params(query).get("url"))
            with self._count_lock:
                self.paid_details[str(aweme_id)] += 1
        return status, body, extra

    def answered(self, *statuses: int) -> int:
        """API requests answered with one of ``statuses``."""
        return sum(1 for _, _, status in self.arrivals() if status in statuses)


@dataclass(frozen=True)
class Ran:
    """One ``tiklive`` command a drill ran: its arguments, exit status, output and wall time."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


@dataclass
class Scratch:
    """The scratch data root and its sandbox; ``api_key`` is the key the next command is given."""

    home: Path
    sandbox: DrillSandbox
    api_key: str = DEFAULT_API_KEY

    @property
    def config_path(self) -> Path:
        return self.home / "tiklive.yaml"

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.home / "archive")

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def warehouse_url(self) -> str:
        return str(self.warehouse_path)

    @property
    def state_path(self) -> Path:
        return self.home / "state.sqlite"

    def track(self, **sections: Any) -> None:
        """Rewrite the tracking YAML with ``sections`` replacing the drill's own (``hashtags=[...]``)."""
        self.config_path.write_text(yaml.safe_dump({**DRILL_TRACKING, **sections}))

    def move_day_back(self, day: date) -> date:
        """Move everything archived on ``day`` (responses, videos, covers) to the day before, and forget the state
        database and the warehouse that describe it: the API only serves the present, so a drill that needs an
        earlier day captures today and moves it back. The fetch times inside the objects stay as they were."""
        before = day - timedelta(days=1)
        root = self.store.root
        for old, new in (
            (raw_day_prefix(day), raw_day_prefix(before)),
            (video_day_prefix(day), video_day_prefix(before)),
            (cover_key(day, "0").rsplit("/", 1)[0], cover_key(before, "0").rsplit("/", 1)[0]),
        ):
            source = root / old.rstrip("/")
            if source.exists():
                (root / new).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, root / new.rstrip("/"))
        self.forget_state()
        for path in (self.warehouse_path, self.warehouse_path.with_name(self.warehouse_path.name + ".wal")):
            path.unlink(missing_ok=True)
        return before

    def forget_state(self) -> None:
        """Delete the state database (and SQLite's journal files beside it)."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.state_path.with_name(self.state_path.name + suffix).unlink(missing_ok=True)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in settings.environment().items() if k not in NOT_INHERITED}
        env[settings.BASE_URL] = self.sandbox.base_url
        env[settings.API_KEY] = self.api_key
        return env

    def tiklive(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Ran:
        """``tiklive ARGS`` in a child process on the scratch data root and the sandbox."""
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _MAIN, *args],
            env=self.environment(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Ran(tuple(args), done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def run_day(self, day: date) -> Ran:
        """``tiklive run --date DAY``: the day's whole pipeline, capture to marts."""
        return self.tiklive(
            "run", "--date", day.isoformat(), "--home", str(self.home), "--config", str(self.config_path)
        )


@contextmanager
def scratch(*, keep: bool = False, say: Callable[[str], None] = print) -> Iterator[Scratch]:
    """A fresh scratch data root and a sandbox on 127.0.0.1, both gone afterwards (``keep``: the root stays)."""
    home = Path(tempfile.mkdtemp(prefix="tiklive-drill-"))
    (home / "tiklive.yaml").write_text(yaml.safe_dump(DRILL_TRACKING))
    try:
        sandbox = DrillSandbox(SandboxConfig())
        with sandbox:
            yield Scratch(home, sandbox)
    finally:
        if keep:
            say(f"  scratch data root kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)

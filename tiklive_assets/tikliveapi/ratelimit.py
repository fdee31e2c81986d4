"""The plan's request rate, enforced across threads, processes and (with Redis or Postgres) hosts.

Built on pyrate-limiter's sliding-window log, the same algorithm the API applies: at most ``limit`` requests
in any window of ``period_seconds``. Backends, chosen by URL:

- ``memory://``: one process (tests, benchmarks of the limiter itself);
- ``sqlite:///path/ratelimit.sqlite`` (default, a file under ``TIKLIVE_HOME``): every process on one host,
  which is what the Dagster daemon needs since it launches each run as its own process;
- ``redis://host:6379/0`` or ``postgresql://...``: shared by every host (Kubernetes run launcher).

A small safety margin is added to the window so that network jitter between the client's clock and the
server's arrival times cannot push two windows' worth of requests into one server window.

A wait longer than ``long_wait_seconds`` (default 2 s) is announced once, before it starts, on the
``tiklive_assets.tikliveapi.ratelimit`` logger at INFO ("waiting 41 s for the plan's rate window (200/min)"): a run
that sits silent for a minute looks hung, while one that says it waits for the plan's window does not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyrate_limiter import AbstractBucket, InMemoryBucket, Limiter, Rate, SQLiteBucket

from tiklive_assets import progress
from tiklive_assets.tikliveapi.errors import TransientError

DEFAULT_MARGIN = 0.005  # 0.5 % of the window ...
JITTER_MS = 250  # ... plus 250 ms for scheduling and network delay between a slot's grant and its arrival (100 ms
# let a loaded host send requests late enough, between three workers, for the API to refuse one: a 429 costs a credit)
LONG_WAIT_SECONDS = 2.0  # waits longer than this are announced on the logger below

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RatePlan:
    limit: int
    period_seconds: float = 60.0

    @property
    def per_minute(self) -> float:
        return self.limit * 60.0 / self.period_seconds

    def describe(self) -> str:
        """The plan as people state it: "200/min", or "10 per 2 s" for a window that is not a minute."""
        if self.period_seconds == 60:
            return f"{self.limit}/min"
        return f"{self.limit} per {self.period_seconds:g} s"


class RateLimiter:
    """Blocks until one more request fits in the plan's window."""

    def __init__(
        self,
        plan: RatePlan,
        backend_url: str = "memory://",
        margin: float = DEFAULT_MARGIN,
        long_wait_seconds: float = LONG_WAIT_SECONDS,
    ):
        if plan.limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per window, got {plan.limit}")
        self.plan = plan
        self.backend_url = backend_url
        interval_ms = int(plan.period_seconds * 1000 * (1 + margin)) + JITTER_MS
        self.window_ms = interval_ms  # the client's effective window: slightly longer than the plan's
        self._rate = Rate(plan.limit, interval_ms)
        self._bucket_key = f"tiklive-api-{plan.limit}-per-{interval_ms}ms"
        self.long_wait_seconds = long_wait_seconds
        self._limiter: Limiter | None = None
        self._announced = False  # whether this acquire already said it waits (one line per long wait)
        self._init_lock = threading.Lock()
        # Threads of one process queue here, not on the backend's file lock (whose 50 ms retry sleep wastes budget).
        self._acquire_lock = threading.Lock()

    def _build(self) -> Limiter:
        parsed = urlparse(self.backend_url)
        scheme = parsed.scheme
        bucket: AbstractBucket
        if scheme == "memory":
            return self._limiter_for(InMemoryBucket([self._rate]))
        if scheme == "sqlite":
            path = Path(parsed.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            bucket = SQLiteBucket.init_from_file(
                [self._rate], table=self._bucket_key.replace("-", "_"), db_path=str(path), use_file_lock=True
            )
            # the same lock file, flocked the same way, through a lighter lock (see HostLock)
            bucket.lock = HostLock(f"{path}.lock")  # type: ignore[assignment]
            return self._limiter_for(bucket)
        if scheme in ("redis", "rediss"):
            from pyrate_limiter import RedisBucket
            from redis import Redis

            bucket = RedisBucket.init([self._rate], Redis.from_url(self.backend_url), self._bucket_key)
            return self._limiter_for(bucket)
        if scheme in ("postgresql", "postgres"):
            from psycopg_pool import ConnectionPool
            from pyrate_limiter import PostgresBucket

            pool = ConnectionPool(self.backend_url, min_size=1, max_size=4, open=True)
            bucket = PostgresBucket(pool, self._bucket_key.replace("-", "_"), [self._rate])
            return self._limiter_for(bucket)
        raise ValueError(
            f"unknown rate-limit backend {self.backend_url!r}: use memory://, sqlite:///path, redis://host:port/db "
            "or postgresql://..."
        )

    def _limiter_for(self, bucket: AbstractBucket) -> Limiter:
        """The limiter over ``bucket``, with the bucket's ``waiting`` wrapped to announce long waits.

        pyrate-limiter asks ``bucket.waiting(item)`` (the time to the window's next free slot) right before it
        sleeps, and again only if another process took that slot first: the announcement comes from that figure,
        before the sleep, at no extra backend round trip, and at most once per ``acquire``.
        """
        compute = bucket.waiting

        def waiting(item):
            wait_ms = compute(item)
            if isinstance(wait_ms, int) and not self._announced and wait_ms / 1000 > self.long_wait_seconds:
                self._announced = True
                log.info("waiting %.0f s for the plan's rate window (%s)", wait_ms / 1000, self.plan.describe())
            return wait_ms

        bucket.waiting = waiting  # type: ignore[method-assign]  # this instance only (see the docstring)
        return Limiter(bucket, buffer_ms=0)

    def acquire(self) -> None:
        """Block until one more request fits. A shared window that cannot be reached (Redis or Postgres down) is
        an outage of the system, not of the request: it raises TransientError naming TIKLIVE_RATELIMIT_URL."""
        for attempt in (1, 2):
            limiter = self._ensure()
            try:
                with self._acquire_lock:
                    self._announced = False
                    limiter.try_acquire("api", blocking=True)
                progress.requested()  # counted by `tiklive run`'s progress; nothing happens otherwise
                return
            except Exception as exc:  # noqa: BLE001 - classified below; anything else propagates unchanged
                kind = _backend_failure(exc)
                if kind is None:
                    raise
                self._limiter = None  # rebuilt on the next call: a restarted Redis has forgotten the Lua script
                if kind == "reload" and attempt == 1:
                    continue
                raise TransientError(
                    "rate limiter",
                    f"the shared rate window at {_redact(self.backend_url)} is "
                    f"unreachable ({type(exc).__name__}); check TIKLIVE_RATELIMIT_URL",
                ) from None

    def close(self) -> None:
        """Release the backend: the limiter's buckets (their connections, pyrate-limiter's leak thread) and, for the
        sqlite window, this process's lock file. The next ``acquire`` builds them again."""
        with self._init_lock:
            limiter, self._limiter = self._limiter, None
        if limiter is None:
            return
        locks = [lock for bucket in limiter.buckets() if isinstance(lock := getattr(bucket, "lock", None), HostLock)]
        limiter.close()  # its leak thread; a bucket given to it is not "owned", so close those here
        for bucket in limiter.buckets():
            with contextlib.suppress(Exception):
                bucket.close()
        for lock in locks:
            lock.close()

    def _ensure(self) -> Limiter:
        limiter = self._limiter
        if limiter is None:
            with self._init_lock:
                if self._limiter is None:
                    self._limiter = self._build()
                limiter = self._limiter
        return limiter


class HostLock:
    """The sqlite window's lock, across the threads and the processes of one host: a re-entrant thread lock, and
    an exclusive ``flock`` of ``path`` held by the outermost holder.

    It locks the very file pyrate-limiter's ``FileLock`` locks, in the same way, so processes using either wait on
    each other; but the file is opened once per process (again after a fork, never unlocking the parent's) rather
    than at every request, whose bookkeeping cost more CPU than the window's own query.
    """

    POLL_SECONDS = 0.005

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = os.getpid()
        self._closed = False
        _HOST_LOCKS.add(self)

    def _after_fork_in_child(self) -> None:
        """A forked child drops the parent's descriptor at once: a flock belongs to the open file, so a child that
        kept the copy would hold the parent's lock for as long as it lives, even after the parent was killed.
        Closing the copy (never ``LOCK_UN`` on it) leaves the parent's lock as it is."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._thread_lock, self._depth, self._fd, self._pid = threading.RLock(), 0, None, os.getpid()

    def close(self) -> None:
        """Close this process's descriptor of the lock file (unlocking it if held). A late user (pyrate-limiter's
        leak thread, until it sees the stop) still locks, but no longer keeps the file open between uses."""
        with self._thread_lock:
            self._closed = True
            fd, self._fd, self._depth = self._fd, None, 0
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        return self._fd

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._pid != os.getpid():  # forked without the hook below (it runs for every fork of Python code)
            self._after_fork_in_child()
        deadline = None if not blocking or timeout is None or timeout < 0 else time.monotonic() + timeout
        if not self._thread_lock.acquire(blocking, -1 if deadline is None else timeout):
            return False
        if self._depth == 0:
            try:
                if not self._lock_file(blocking, deadline):
                    self._thread_lock.release()
                    return False
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1
        return True

    def _lock_file(self, blocking: bool, deadline: float | None) -> bool:
        try:
            return self._flock(blocking, deadline)
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL):
                raise OSError(
                    exc.errno,
                    f"the rate window's lock file {self.path} is on a filesystem without flock ({exc.strerror}); "
                    "point TIKLIVE_RATELIMIT_URL at a sqlite file on a local disk, or at redis:// or postgresql://",
                ) from None
            raise

    def _flock(self, blocking: bool, deadline: float | None) -> bool:
        fd = self._file()
        if blocking and deadline is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if deadline is None or time.monotonic() >= deadline:
                    return False
                time.sleep(self.POLL_SECONDS)

    def release(self) -> None:
        if self._depth <= 0:
            raise RuntimeError("HostLock released more often than acquired")
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                if self._closed:
                    os.close(self._fd)
                    self._fd = None
        finally:
            self._thread_lock.release()

    def __enter__(self) -> HostLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_HOST_LOCKS: weakref.WeakSet[HostLock] = weakref.WeakSet()


def _close_inherited_locks() -> None:
    for lock in list(_HOST_LOCKS):
        lock._after_fork_in_child()


os.register_at_fork(after_in_child=_close_inherited_locks)


def _backend_failure(exc: Exception) -> str | None:
    """'reload' (the backend lost its script: rebuild and try again), 'down' (unreachable), or None (not ours)."""
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    else:
        if isinstance(exc, redis.exceptions.NoScriptError):
            return "reload"
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return "down"
    try:
        import psycopg
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
        return "down"
    return None


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url

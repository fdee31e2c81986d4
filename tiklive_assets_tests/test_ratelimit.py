"""The shared rate limiter holds the sandbox's plan across OS processes (sqlite) and across limiters (Redis, Postgres).

Each test gives the sandbox a small plan (a few requests per 1-2 s window), lets two independent limiter users
send more requests than one window allows, and asserts from the server's own arrival log that no window ever
held more than the plan: no 429 at all, and ``max_in_window(W) <= L``.
"""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tikliveapi.ratelimit import RateLimiter, RatePlan

# The plans hold at the server only while our requests reach it within the limiter's jitter margin of when they were
# allowed, and the counter-check needs its requests inside one window: both are about real time, so no other test
# of the run (on another xdist worker) runs beside them (conftest.py, ``alone``).
pytestmark = pytest.mark.alone


def _send(base_url: str, backend_url: str, limit: int, window: float, n: int) -> int:
    """n /userid/ calls through a limiter of its own on the shared backend; max_attempts=1 so a 429 raises."""
    limiter = RateLimiter(RatePlan(limit, window), backend_url)
    client = TikLiveClient(DEFAULT_API_KEY, base_url, rate_limiter=limiter, max_attempts=1)
    try:
        for _ in range(n):
            client.userid("cristiano")
    finally:
        client.close()
    return client.credits.total


def _process_worker(base_url, backend_url, limit, window, n, barrier, results) -> None:
    """Runs in a spawned process: wait for the sibling (so both really overlap), then send."""
    try:
        barrier.wait(timeout=60)
        results.put(("ok", _send(base_url, backend_url, limit, window, n)))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _assert_plan_held(sb: SandboxServer, limit: int, window: float, total: int) -> None:
    stats = sb.stats()
    assert stats["rate_limited"] == 0
    assert stats["by_status"] == {"200": total}
    assert sb.max_in_window(window) <= limit
    # the requests could not all fit in one window, so the limiter really made someone wait
    arrivals = sb.arrivals()
    assert arrivals[-1][0] - arrivals[0][0] >= window * (total // limit - 1)


def test_plan_holds_across_two_processes_sharing_a_sqlite_limiter(tmp_path):
    limit, window, per_process = 10, 2.0, 10
    backend = f"sqlite:///{tmp_path}/rl.sqlite"
    ctx = multiprocessing.get_context("spawn")
    with SandboxServer(SandboxConfig(rate_limit=limit, rate_window_seconds=window)) as sb:
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_worker, args=(sb.base_url, backend, limit, window, per_process, barrier, results)
            )
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        try:
            outcomes = [results.get(timeout=60) for _ in procs]
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
        assert outcomes == [("ok", per_process), ("ok", per_process)]
        assert [p.exitcode for p in procs] == [0, 0]
        _assert_plan_held(sb, limit, window, 2 * per_process)


def _threads_sharing_a_backend(backend: str, limit: int, window: float, per_thread: int) -> SandboxServer:
    with SandboxServer(SandboxConfig(rate_limit=limit, rate_window_seconds=window)) as sb:
        # two limiters (as two hosts would have), built one after the other so their table/key setup does not race
        limiters = [RateLimiter(RatePlan(limit, window), backend) for _ in range(2)]
        for limiter in limiters:
            limiter.acquire()  # takes a slot too: it only makes the plan stricter for the threads below
        outcomes: list[object] = []
        start = threading.Barrier(2)

        def work(limiter: RateLimiter) -> None:
            client = TikLiveClient(DEFAULT_API_KEY, sb.base_url, rate_limiter=limiter, max_attempts=1)
            try:
                start.wait(timeout=30)
                for _ in range(per_thread):
                    client.userid("cristiano")
                outcomes.append(client.credits.total)
            except Exception as exc:  # surfaced by the assertion below
                outcomes.append(exc)
            finally:
                client.close()

        threads = [threading.Thread(target=work, args=(limiter,)) for limiter in limiters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert outcomes == [per_thread, per_thread]
        _assert_plan_held(sb, limit, window, 2 * per_thread)
        return sb


def test_plan_holds_across_limiters_sharing_redis(redis_url):
    _threads_sharing_a_backend(redis_url, limit=7, window=2.0, per_thread=7)


def test_plan_holds_across_limiters_sharing_postgres(postgres_url):
    _threads_sharing_a_backend(postgres_url, limit=7, window=2.0, per_thread=7)


def test_memory_limiter_blocks_within_one_process():
    """The single-process backend: 2L calls take at least one window, and the server never sees L+1 in one."""
    limit, window = 5, 1.0
    with SandboxServer(SandboxConfig(rate_limit=limit, rate_window_seconds=window)) as sb:
        assert _send(sb.base_url, "memory://", limit, window, 2 * limit) == 2 * limit
        _assert_plan_held(sb, limit, window, 2 * limit)


def test_without_a_shared_limiter_the_sandbox_does_throttle():
    """The counter-check: the server's limit is real, so the tests above would fail if the limiter did not hold."""
    limit, window = 5, 2.0
    with SandboxServer(SandboxConfig(rate_limit=limit, rate_window_seconds=window)) as sb:
        client = TikLiveClient(DEFAULT_API_KEY, sb.base_url, max_attempts=1)
        for _ in range(limit):
            client.userid("cristiano")
        with pytest.raises(Exception) as info:
            client.userid("cristiano")
        assert type(info.value).__name__ == "RateLimited"
        assert sb.stats()["rate_limited"] == 1
        assert sb.max_in_window(window) == limit + 1


def test_bad_backend_and_plan_are_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(RatePlan(0, 60))
    with pytest.raises(ValueError, match=r"memory://, sqlite:///path, redis://"):
        RateLimiter(RatePlan(1, 60), "mongodb://nowhere").acquire()
    assert RatePlan(200, 60).per_minute == 200
    assert RatePlan(10, 2).per_minute == 300

"""Shared fixtures: the sandbox API over real HTTP, a real S3 endpoint (moto server), real Postgres and Redis.

Servers bind to 127.0.0.1 only. Postgres and Redis tests run whenever the server is reachable, are skipped
with a reason on a laptop without it, and fail (never skip) when ``CI=true``.

The suite's disk writes are commits: SQLite (state, rate window, Dagster instances), DuckDB checkpoints, Postgres.
None of them needs to survive a power loss here, so the temporary directories live on a RAM filesystem when the
machine has one (``/dev/shm``: a SQLite commit took 0.4 ms there and 26 ms on the disk under /tmp, measured on the
shared 2-core machine), and the Postgres fixtures commit without waiting for the WAL flush. Both change durability
only: what one connection or process sees of another's writes (a SIGKILL included: the page cache survives it) is
the same.
``PYTEST_DEBUG_TEMPROOT`` or ``--basetemp`` still choose the directory.

The suite is ready for pytest-xdist (``-n 4 --dist loadgroup``; not yet the default: under load its longest
end-to-end tests outlast their waits): most tests wait on subprocesses, HTTP servers and databases, so workers
can overlap those waits even on two cores. Every fixture isolates its test
(ephemeral ports, a Postgres schema or database and an S3 bucket of its own, files under tmp_path). A test whose
assertion is about real time measured beside the work of other processes (a rate window counted from the server's
arrival log, three workers overlapping) is marked ``alone``: it starts once the other workers' tests have ended,
and no other test starts until it has ended, so the run's other workers cannot delay its requests past the
limiter's jitter margin (see ``_turn``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest_plugins = ["tiklive_assets_tests.support.servers"]  # the hostile CDN fixtures (hostile, internal)

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("TIKLIVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIKLIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Postgres connections of the tests: no wait for the WAL flush at commit (an autocommit insert took 8.3 ms, 0.9 ms
# without the wait, on the same machine); what another connection sees is unchanged, only a server crash could lose
# the last commits.
POSTGRES_FAST_COMMIT = "-csynchronous_commit%3Doff"
RAM_TEMPROOT = Path("/dev/shm")
RAM_TEMPROOT_MIN_FREE = 2 * 1024**3  # the whole suite's temporary files stay well below this


def _ram_temproot() -> Path | None:
    """``/dev/shm`` when it is a tmpfs we can write with room to spare, else None (the usual temporary dir)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    if not any(line.split()[1:3] == [str(RAM_TEMPROOT), "tmpfs"] for line in mounts if len(line.split()) > 2):
        return None
    if not os.access(RAM_TEMPROOT, os.W_OK | os.X_OK) or shutil.disk_usage(RAM_TEMPROOT).free < RAM_TEMPROOT_MIN_FREE:
        return None
    return RAM_TEMPROOT


def pytest_configure(config: pytest.Config) -> None:
    """tmp_path and tmp_path_factory on a RAM filesystem (see the module docstring), unless told otherwise."""
    config.addinivalue_line(
        "markers", "alone: runs while no other test of the run does (its assertion is about real time under load)"
    )
    # pytest-xdist registers it too; here as well so a run without xdist (-p no:xdist) does not warn about it
    config.addinivalue_line("markers", "xdist_group(name): the tests of one group run on one xdist worker")
    if config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT"):
        return
    root = _ram_temproot()
    if root is not None:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(root)  # read by pytest when it makes the session's basetemp


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d.scope == "module" for same_name in defs for d in same_name)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of one file that share a module-scoped fixture (a Dagster webserver, a captured world) go to one
    xdist worker together (``--dist loadgroup``), so the fixture is built once, not once per worker."""
    for item in items:
        if _uses_a_module_fixture(item) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@contextmanager
def _turn(config: pytest.Config, alone: bool) -> Iterator[None]:
    """Between the xdist workers of one run: a shared turn for every test, an exclusive one for an ``alone`` test.

    Two lock files in the run's base temporary directory (shared by its workers, by no other run). A test takes the
    gate, then the running lock (shared, or exclusive when alone), and lets go of the gate at once unless it is
    alone: an alone test holding the gate keeps new tests from starting while it waits for the running ones to end,
    so it cannot be starved. Outside xdist (one process) there is nothing to wait for.
    """
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or not config.option.basetemp:
        yield
        return
    root = Path(config.option.basetemp).parent  # xdist gives each worker <the run's basetemp>/<worker id>
    with open(root / "turn.gate", "a") as gate, open(root / "turn.running", "a") as running:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(running, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(running, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: the wait for a turn is not counted in the test's timeout
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with _turn(item.config, item.get_closest_marker("alone") is not None):
        return (yield)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true makes it mandatory (.ci/run starts it)")
    pytest.skip(f"{message}; start it to run this test (see README, 'Running the tests')")


@pytest.fixture
def sandbox() -> Iterator:
    """A fresh sandbox TikLiveAPI on an ephemeral port."""
    from tiklive_assets.sandbox import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig()) as server:
        yield server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, reached through boto3's endpoint_url."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A new empty bucket on the moto server."""
    import boto3

    name = f"tiklive-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL on the real local Postgres, isolated in a schema of its own that is dropped afterwards."""
    _require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}%20{POSTGRES_FAST_COMMIT}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> str:
    _require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL

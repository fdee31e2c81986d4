"""Outages blame no id and lose no paid response: the store down mid-run (S3 stopped, the disk full), the store's
failure classes, Redis (the shared rate window) and Postgres (the state database) losing their connections.

Real servers: our own moto server (stopped and restarted on the same port while the session's stays up), tiny HTTP
servers that answer 503, drop the connection or never answer, our own ``redis-server`` on a free port, the shared
Postgres (its connections killed with pg_terminate_backend, never the cluster restarted). The disk-full case
injects ENOSPC through a LocalStore subclass: mounting a small filesystem needs privileges a test run lacks.
"""

from __future__ import annotations

import errno
import gzip
import http.server
import shutil
import socket
import socketserver
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from dagster_aws.s3 import S3Resource

from tiklive_assets.capture.raw_archive import RawArchive
from tiklive_assets.defs.capture.assets import account_profiles, archived_videos, discovery_queue
from tiklive_assets.defs.resources import ArchiveStoreResource
from tiklive_assets.preflight import PreflightError, require_ready
from tiklive_assets.storage import LocalStore, S3Store, StoreMisconfigured, StoreUnavailable
from tiklive_assets_tests.support.capture import Rig, base_config, failures, frozen_sandbox, today
from tiklive_assets_tests.support.servers import RestartableMoto as Server
from tiklive_assets_tests.support.servers import moto_with_bucket

CONCURRENCY = 4


def _config() -> dict:
    return base_config(
        limits={"max_pages": 1, "max_videos_per_day": 8},
        capture={"download_concurrency": CONCURRENCY, "api_concurrency": CONCURRENCY, "max_attempts": 2},
    )


def _s3(endpoint: str) -> S3Resource:
    return S3Resource(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        max_attempts=1,
    )  # an outage fails at once, not after backoffs


class FullDisk(LocalStore):
    """A LocalStore whose disk fills up: while ``full`` is set every write raises ENOSPC from the OS layer."""

    full = False

    def _publish(self, path, write):  # noqa: ANN001 - the LocalStore hook that writes the bytes
        if FullDisk.full:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return super()._publish(path, write)


def _tripwire(kind: str, tmp_path: Path, server: Server | None, bucket: str | None, after: int):
    """An ArchiveStoreResource whose store breaks (S3 server stopped / disk full) as the ``after``-th
    /post-detail/ response is being written: deterministic, never a sleep."""
    hits = {"n": 0}
    lock = threading.Lock()

    def trip(key: str) -> None:
        if "/post-detail/" not in key:
            return
        with lock:
            hits["n"] += 1
            now = hits["n"] == after
        if now:
            if kind == "s3 down":
                server.stop()
            else:
                FullDisk.full = True

    class Tripping(ArchiveStoreResource):
        def open(self):
            if kind == "s3 down":

                class Store(S3Store):
                    def put_bytes(self, key, data, **kw):  # noqa: ANN001
                        trip(key)
                        return super().put_bytes(key, data, **kw)

                return Store(_s3(server.endpoint).get_client(), bucket)

            class Disk(FullDisk):
                def put_bytes(self, key, data, **kw):  # noqa: ANN001
                    trip(key)
                    return super().put_bytes(key, data, **kw)

            return Disk(tmp_path / "archive")

    return Tripping(local_root=str(tmp_path / "archive"))


def _raw_detail_ids(rig: Rig) -> dict[str, int]:
    """aweme_id -> number of archived /post-detail/ objects (answers kept beside included)."""
    out: dict[str, int] = {}
    for key in rig.raw_keys() + rig.raw_keys(conflicts=True):
        if "/post-detail/" in key:
            name = key.rsplit("/", 1)[1].split(".")[0].split("-")[0]
            out[name] = out.get(name, 0) + 1
    return out


@pytest.fixture
def own_moto(moto_endpoint: str) -> Iterator[tuple[Server, str]]:
    with moto_with_bucket("outage") as pair:
        yield pair


@pytest.mark.parametrize("kind", ["s3 down", "disk full"])
def test_the_store_down_mid_run_blames_no_id_and_loses_no_paid_response(
    kind: str, tmp_path: Path, own_moto: tuple[Server, str]
) -> None:
    server, bucket = own_moto
    FullDisk.full = False
    resource = _tripwire(kind, tmp_path, server, bucket, after=5)
    with frozen_sandbox() as sb:
        rig = Rig(sb, tmp_path, resource, _config())
        assert rig.run(account_profiles, discovery_queue).success
        queued = set(rig.queue())
        assert len(queued) >= 10

        broken = rig.run(archived_videos)
        assert not broken.success
        message = failures(broken)["archived_videos"]
        expected = "TIKLIVE_S3_ENDPOINT_URL" if kind == "s3 down" else "the disk is full"
        assert "StoreUnavailable" in message and expected in message and "spool" in message, message
        assert not rig.ids_in("dead")  # nothing blamed on any id ...
        with sqlite3.connect(tmp_path / "state.sqlite") as conn:
            assert (
                conn.execute("SELECT max(attempts) FROM archive_queue WHERE state != 'downloaded'").fetchone()[0] == 0
            )  # refunded
        spooled = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
        assert any("/post-detail/" in str(p) for p in spooled)
        paid_before = dict(sb.stats()["detail_requests_by_id"])

        # A rerun while the store is still down buys nothing: the preflight (and the session's spool flush, which
        # runs before any request) stop it first.
        store = resource.open()
        with pytest.raises(PreflightError, match="TIKLIVE_S3_ENDPOINT_URL" if kind == "s3 down" else "disk is full"):
            require_ready(store, f"sqlite:///{tmp_path / 'state.sqlite'}")
        with pytest.raises(StoreUnavailable):
            RawArchive(store, today(), spool=tmp_path / "spool").flush_spool()
        assert sb.stats()["detail_requests_by_id"] == paid_before
        assert [p for p in (tmp_path / "spool").rglob("*") if p.is_file()] == spooled  # still all there

        if kind == "s3 down":
            server.start()  # the same port; moto keeps its buckets in-process
        FullDisk.full = False
        done = rig.run(archived_videos)
        assert done.success, failures(done)
        paid = sb.stats()["detail_requests_by_id"]

    assert not [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]  # the spool went to the store
    states = rig.queue()
    assert set(states) == queued and set(states.values()) <= {"downloaded", "dead"}
    archived = _raw_detail_ids(rig)
    assert set(paid) <= set(archived)  # every /post-detail/ answer the sandbox gave is in the archive
    for aweme_id in rig.ids_in("dead"):  # a dead letter only ever comes from the API's own 404
        assert any(k.endswith(f"/post-detail/{aweme_id}-http404.json.gz") for k in rig.raw_keys()), aweme_id
    rig.assert_archived(rig.ids_in("downloaded"))
    twice = [aweme_id for aweme_id, n in paid.items() if n > 1]
    assert len(twice) <= CONCURRENCY, twice  # only the requests in flight when the store broke were bought again


def test_a_spooled_response_is_written_first_and_same_bytes_change_nothing(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tiklive_assets.tikliveapi.client import ApiResponse

    FullDisk.full = True
    store = FullDisk(tmp_path / "archive")
    archive = RawArchive(store, today(), spool=tmp_path / "spool")
    response = ApiResponse(
        "/userinfo-by-id/", {"userid": "6800000000000000001"}, 200, b'{"user": {}}', datetime.now(UTC), 1, None
    )
    with pytest.raises(StoreUnavailable) as info:
        archive.write(response)
    assert (
        "disk is full" in str(info.value)
        and "spool" in str(info.value)
        and str(tmp_path / "archive") in str(info.value)
    )
    assert archive.spooled == [archive.key_for(response)]
    FullDisk.full = False
    fresh = RawArchive(store, today(), spool=tmp_path / "spool")
    assert fresh.flush_spool() == {"created": 1}
    assert gzip.decompress(store.get_bytes(archive.key_for(response))) == b'{"user": {}}'
    fresh.write(response)  # the same answer again: identical, not a conflict
    assert fresh.written == {"identical": 1} and not list(fresh.spool.list(""))


# -- the store's failure classes ---------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "503"

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.server.mode == "503":
            body = b"<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.server.mode == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
        else:  # "stall": never answer
            time.sleep(3)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer


@pytest.fixture
def fake_s3() -> Iterator:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _fake_store(port: int) -> S3Store:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=0.5, connect_timeout=0.5),
    )
    return S3Store(client, "bucket")


@pytest.mark.parametrize(
    "mode,kind,words",
    [
        ("503", StoreUnavailable, "(HTTP 503) through botocore's retries"),
        ("drop", StoreUnavailable, "cannot reach the S3 endpoint"),
        ("stall", StoreUnavailable, "ReadTimeoutError"),
    ],
)
def test_every_store_failure_is_a_store_error_naming_the_setting(fake_s3, mode: str, kind: type, words: str) -> None:
    fake_s3.mode = mode
    store = _fake_store(fake_s3.server_address[1])
    operations = [
        lambda: store.put_bytes("a/b.json", b"{}", content_type="application/json"),
        lambda: store.get_bytes("a/b.json"),
        lambda: store.stat("a/b.json"),
        lambda: list(store.list("a/")),
        lambda: store.delete("a/b.json"),
    ]
    for operation in operations[:2] if mode == "stall" else operations:  # each stall costs a read timeout
        with pytest.raises(kind) as info:
            operation()
        assert words in str(info.value) and "TIKLIVE_S3_ENDPOINT_URL" in str(info.value), str(info.value)
        assert "testing" not in str(info.value)


def test_a_closed_endpoint_a_missing_bucket_and_a_denied_disk(tmp_path: Path, moto_endpoint: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailable, match="EndpointConnectionError.*TIKLIVE_S3_ENDPOINT_URL"):
        _fake_store(port).put_bytes("a/b.json", b"{}", content_type="application/json")
    missing = S3Store(_s3(moto_endpoint).get_client(), "no-such-bucket-here")
    with pytest.raises(StoreMisconfigured, match="does not exist.*TIKLIVE_ARCHIVE_BUCKET"):
        missing.put_bytes("a/b.json", b"{}", content_type="application/json")
    with pytest.raises(StoreMisconfigured, match="does not exist"):
        missing.get_bytes("a/b.json")

    class Denied(LocalStore):
        def _publish(self, path, write):  # noqa: ANN001 - what a read-only or foreign-owned directory raises
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with pytest.raises(StoreMisconfigured, match="writable.*TIKLIVE_HOME"):
        Denied(tmp_path / "denied").put_bytes("a/b.json", b"{}", content_type="application/json")


# -- Redis, the shared rate window ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@needs_redis
def test_redis_restarted_mid_run_stops_cleanly_then_recovers() -> None:
    """While the shared window's Redis is down, acquire() is a systemic TransientError naming the setting; once it is
    back, the same limiter works again (it reloads the script the restarted Redis forgot)."""
    from tiklive_assets.tikliveapi.errors import TransientError
    from tiklive_assets.tikliveapi.ratelimit import RateLimiter, RatePlan

    port = _free_port()
    proc = _redis(port)
    try:
        limiter = RateLimiter(RatePlan(100, 60.0), f"redis://127.0.0.1:{port}/0")
        limiter.acquire()
        proc.kill()
        proc.wait()
        with pytest.raises(TransientError, match="TIKLIVE_RATELIMIT_URL"):
            limiter.acquire()
        proc = _redis(port)
        limiter.acquire()
    finally:
        proc.kill()
        proc.wait()


# -- Postgres, the state database -----------------------------------------------------------------------------------


def test_postgres_connections_killed_mid_run_fail_one_call_then_reconnect(postgres_url: str) -> None:
    """pg_terminate_backend on this test's connections (the shared cluster is never restarted): the next call on a
    killed connection raises StateUnavailable (systemic: capture blames no id) naming TIKLIVE_STATE_URL and never the
    password; the call after it reconnects and sees every committed row."""
    import psycopg

    from tiklive_assets.capture.videos import SYSTEMIC
    from tiklive_assets.state import StateDB, StateUnavailable

    name = f"tiklive_outage_{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}&application_name={name}"
    state = StateDB.from_url(url)
    try:
        state.set_value("k", "before")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()[0]
        assert killed >= 1
        with pytest.raises(StateUnavailable, match="TIKLIVE_STATE_URL") as info:
            state.get_value("k")
        assert isinstance(info.value, SYSTEMIC) and isinstance(info.value.__cause__, psycopg.OperationalError)
        assert state.get_value("k") == "before"  # a fresh connection; nothing committed was lost
    finally:
        state.close()

"""The cheaper capture paths keep their rules: a downloaded file handed to a local store whole is published by hard
link (synced, never replacing, its digest checked against what it claims); the rate window's host lock excludes other
holders of the same lock file while staying re-entrant for its own thread; and an API request sent through urllib3
directly carries what the requests session would send, while a proxy or a login keeps the session."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tiklive_assets.storage import LocalStore, StoreError
from tiklive_assets.storage.base import StagedFile, staged_digest
from tiklive_assets.tikliveapi.client import TikLiveClient
from tiklive_assets.tikliveapi.errors import TransientError
from tiklive_assets.tikliveapi.ratelimit import HostLock


def _staged(directory: Path, data: bytes, *, name: str = "dl.1.mp4.part", claim: bytes | None = None) -> StagedFile:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    os.chmod(path, 0o600)  # as mkstemp leaves a download
    claimed = data if claim is None else claim
    return StagedFile.of(path, hashlib.sha256(claimed).hexdigest(), len(claimed))


def test_a_staged_download_is_published_by_hard_link_with_the_store_mode(tmp_path):
    store = LocalStore(tmp_path / "archive")
    data = os.urandom(70_000)
    part = _staged(tmp_path / "scratch", data)
    result = store.put_file("videos/d/a/1.mp4", part, content_type="video/mp4")
    assert (result.status, result.sha256, result.size) == ("created", hashlib.sha256(data).hexdigest(), len(data))
    stored = tmp_path / "archive" / "videos" / "d" / "a" / "1.mp4"
    assert os.path.samefile(stored, part)  # the file itself, not a copy
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644
    part.unlink()  # the downloader removes its own name afterwards
    assert store.get_bytes("videos/d/a/1.mp4") == data
    assert list((tmp_path / "archive").rglob("*.part")) == []
    # the same bytes again: identical, nothing written; other bytes: kept beside it, the first object untouched
    again = _staged(tmp_path / "scratch", data, name="dl.2.mp4.part")
    assert store.put_file("videos/d/a/1.mp4", again, content_type="video/mp4").status == "identical"
    other = _staged(tmp_path / "scratch", b"other bytes", name="dl.3.mp4.part")
    beside = store.put_file("videos/d/a/1.mp4", other, content_type="video/mp4")
    assert beside.status == "conflict" and store.get_bytes(beside.conflict_key) == b"other bytes"
    assert store.get_bytes("videos/d/a/1.mp4") == data


def test_a_staged_file_that_is_not_what_it_claims_is_never_linked(tmp_path):
    store = LocalStore(tmp_path / "archive")
    # the size it claims differs: copied instead, and the copy's digest check refuses it
    wrong = _staged(tmp_path / "scratch", b"the bytes on disk", claim=b"the bytes it claims to hold")
    with pytest.raises(StoreError, match="changed while it was being stored"):
        store.put_file("videos/d/a/2.mp4", wrong, content_type="video/mp4")
    assert not store.exists("videos/d/a/2.mp4")
    # already linked elsewhere (a second store took it): copied, so no two objects share one file
    data = b"shared"
    part = _staged(tmp_path / "scratch", data, name="dl.4.mp4.part")
    os.link(part, tmp_path / "elsewhere")
    assert store.put_file("videos/d/a/3.mp4", part, content_type="video/mp4").status == "created"
    assert not os.path.samefile(tmp_path / "archive" / "videos" / "d" / "a" / "3.mp4", part)
    assert store.get_bytes("videos/d/a/3.mp4") == data


def test_paths_derived_from_a_staged_file_claim_nothing(tmp_path):
    part = StagedFile.of(tmp_path / "dl.part", "a" * 64, 3)
    assert staged_digest(part) == ("a" * 64, 3)
    assert staged_digest(part.parent) is None and staged_digest(part.parent / "x") is None
    assert staged_digest(Path(part)) is None


def test_the_host_lock_excludes_another_holder_of_the_file_and_is_reentrant(tmp_path):
    path = str(tmp_path / "rl.sqlite.lock")
    lock = HostLock(path)
    with lock:
        with lock:  # re-entrant: pyrate-limiter takes it around the put and again inside it
            pass
        # still held: another open file description of the same file (another process, or FileLock) cannot lock it
        other = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at the outermost exit
        assert lock.acquire(blocking=False) is False
        assert lock.acquire(timeout=0.05) is False
        fcntl.flock(other, fcntl.LOCK_UN)
        assert lock.acquire(timeout=1) is True
        lock.release()
    finally:
        os.close(other)
    with pytest.raises(RuntimeError):
        lock.release()


def test_the_host_lock_makes_other_threads_wait(tmp_path):
    lock = HostLock(str(tmp_path / "rl.sqlite.lock"))
    inside, order = threading.Event(), []
    lock.acquire()

    def other() -> None:
        inside.set()
        with lock:
            order.append("other")

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    thread.join(0.2)
    assert thread.is_alive() and order == []  # waiting for the holder
    order.append("holder")
    lock.release()
    thread.join(5)
    assert order == ["holder", "other"]


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with a small JSON body (or never, for a path starting /stall), recording what it got."""

    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path.startswith("/stall"):
            time.sleep(1.5)
            return
        body = b'{"id": "12345"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))


def test_direct_requests_carry_what_the_session_would_send_and_reuse_the_connection(recorder, monkeypatch, tmp_path):
    _no_environment(monkeypatch, tmp_path)
    client = TikLiveClient("the-key", f"http://127.0.0.1:{recorder.server_port}", max_attempts=1)
    try:
        assert client.sender.pools is not None  # nothing requests must apply per request: urllib3 directly
        for _ in range(3):
            assert client.userid("a b&c=é").json() == {"id": "12345"}
        pool = client.sender.pools.connection_from_url(client.base_url)
        assert pool.num_connections == 1  # each body read to its end: one keep-alive connection for all three
    finally:
        client.close()
    path, headers = _Recorder.seen[0]
    assert path == "/userid/?username=a+b%26c%3D%C3%A9"  # encoded as requests encodes params
    sent = {k.lower(): v for k, v in client.session.headers.items()}
    assert {k: headers.get(k) for k in sent} == sent  # the key, Accept, User-Agent, Accept-Encoding, Connection
    assert {p for p, _ in _Recorder.seen} == {path}


def test_a_request_without_an_answer_is_transient_and_named_as_requests_names_it(recorder, monkeypatch, tmp_path):
    _no_environment(monkeypatch, tmp_path)
    client = TikLiveClient(
        "the-key", f"http://127.0.0.1:{recorder.server_port}/stall", max_attempts=1, read_timeout=0.3
    )
    try:
        with pytest.raises(TransientError, match="connection failed: ReadTimeout"):
            client.userid("x")
        assert dict(client.credits.by_status) == {"connection-error": 1}
    finally:
        client.close()


def test_a_proxy_or_a_login_from_the_environment_keeps_the_requests_session(monkeypatch, tmp_path):
    _no_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = TikLiveClient("the-key", "https://api.example.com")
    assert client.sender.pools is None and client.session.proxies.get("https") == "http://127.0.0.1:9"
    client.close()
    monkeypatch.delenv("HTTPS_PROXY")
    (tmp_path / "netrc").write_text("machine api.example.com login me password pw\n")
    client = TikLiveClient("the-key", "https://api.example.com")
    assert client.sender.pools is None and client.session.auth == ("me", "pw")
    client.close()

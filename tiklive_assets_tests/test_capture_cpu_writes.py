"""The cheaper write paths keep their rules: a downloaded file handed to a local store whole is published by hard link
(synced, never replacing, its digest checked against what it claims), and the rate window's host lock excludes other
holders of the same lock file while staying re-entrant for its own thread."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from tiklive_assets.storage import LocalStore, StoreError
from tiklive_assets.storage.base import StagedFile, staged_digest
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

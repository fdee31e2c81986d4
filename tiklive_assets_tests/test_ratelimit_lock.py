"""The sqlite rate window's host lock across forks, and a limiter that gives its descriptors back when closed.

A flock belongs to the open file, not the process: a forked child that kept the descriptor it inherited would hold
its parent's lock for as long as it lives, even after the parent was killed, and every capture worker of the host
would wait on it forever.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tiklive_assets.tikliveapi.ratelimit import HostLock, RateLimiter, RatePlan

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")


def _open_files(directory: Path) -> list[str]:
    """This process's open descriptors of files under ``directory`` (pyrate-limiter's leak thread keeps its event
    loop's sockets a little while after a close: they end with the thread, so they are not counted)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "window.lock")
    holder = HostLock(path)
    assert holder.acquire()
    child = os.fork()
    if child == 0:  # a long-lived child (a process pool worker, say) that never touches the lock
        time.sleep(3)
        os._exit(0)
    try:
        holder.close()  # the holder is gone (as if killed): only the child's inherited copy could still hold it
        other = HostLock(path)  # another open file of the same path: flock makes it wait like another process
        assert other.acquire(timeout=1.0), "the forked child still holds the rate window's lock"
        other.release()
        other.close()
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_the_lock_still_excludes_after_a_fork(tmp_path: Path) -> None:
    path = str(tmp_path / "window.lock")
    holder = HostLock(path)
    assert holder.acquire()
    child = os.fork()
    if child == 0:  # the child's own lock must wait for the parent's
        mine = HostLock(path)
        os._exit(0 if not mine.acquire(timeout=0.3) else 1)
    _, status = os.waitpid(child, 0)
    holder.release()
    holder.close()
    assert os.waitstatus_to_exitcode(status) == 0, "a forked child took a lock its parent holds"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_a_closed_limiter_gives_back_its_lock_file_and_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'window.sqlite'}"
    for _ in range(10):
        limiter = RateLimiter(RatePlan(1000, 1.0), url)
        limiter.acquire()
        limiter.close()
    import gc

    gc.collect()
    left = _open_files(tmp_path)
    assert not left, f"closed limiters left open: {left}"

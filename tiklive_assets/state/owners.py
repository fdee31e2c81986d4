"""Who holds a claim: the capture process (Dagster run id, host, pid) that registered as a claim owner.

A claim is held while its owner heartbeats. An owner that stops (killed, OOM, machine lost) loses its claims to the
next run: at once when the owner ran on this host and its process is gone, otherwise once it has missed
``STALE_AFTER_BEATS`` heartbeats. A live owner's claims are never taken.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

STALE_AFTER_BEATS = 3  # missed heartbeats after which an owner on another host is presumed dead


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def host_key() -> str:
    """What makes two processes' pids comparable: the same host name, boot and pid namespace.

    Two containers may share a host name but never a pid namespace; a reboot reuses pids but changes the boot id.
    """
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = ""
    return f"{socket.gethostname()}|{_read('/proc/sys/kernel/random/boot_id')}|{pid_ns}"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for the owner."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:
        return stat.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return None


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host is still the process that registered (same start time when it is known)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    if started:
        current = process_start(pid)
        if current is not None and current != started:
            return False  # the pid was reused by another process
    return True


@dataclass(frozen=True)
class ClaimOwner:
    owner_id: str
    run_id: str | None
    host: str
    host_key: str
    pid: int
    pid_start: str | None
    heartbeat_seconds: float

    @classmethod
    def this_process(cls, run_id: str | None = None, heartbeat_seconds: float = 10.0) -> ClaimOwner:
        """An owner for this process; ``run_id`` is the Dagster run's (when there is one), else a generated id."""
        pid = os.getpid()
        return cls(
            owner_id=uuid.uuid4().hex,
            run_id=run_id or f"local-{uuid.uuid4().hex[:12]}",
            host=socket.gethostname(),
            host_key=host_key(),
            pid=pid,
            pid_start=process_start(pid),
            heartbeat_seconds=float(heartbeat_seconds),
        )

    @property
    def stale_after(self) -> float:
        """Seconds of silence after which this owner's claims may be taken."""
        return STALE_AFTER_BEATS * self.heartbeat_seconds


@dataclass(frozen=True)
class OwnerStatus:
    """One claim owner as `tiklive status` shows it."""

    owner_id: str
    run_id: str | None
    host: str
    pid: int
    heartbeat_at: object
    alive: bool
    why: str  # 'heartbeating', 'process gone', 'silent since ...', 'unregistered'
    claims: int

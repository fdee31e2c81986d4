"""Who holds a claim: the capture process (Dagster run id, host, pid) that registered as a claim owner.

A claim is held while its owner lives. How that is decided depends on where the owner runs:

* On this host (same host name, boot and pid namespace: ``host_key``) the process table is the proof. An owner whose
  process is gone (or is a zombie, or whose pid now belongs to a process started later) is dead, and its claims are
  free at once. An owner whose process is still the one that registered is alive and keeps its claims *however late
  its heartbeat is*: a worker starved of CPU, stalled on a slow store, or whose wall clock jumped is slow, not dead.
  Claimers vouch for such owners (``vouch_for_local``) before they claim, so a late heartbeat never hands a live
  owner's ids to another worker of this host.
* On another host nothing can be proven, so a lease remains: the owner is presumed dead once it has missed
  ``STALE_AFTER_BEATS`` heartbeats. Its heartbeat runs on a thread of its own, and every paid request renews it and
  re-checks the claim in one transaction right before the credit is spent (``confirm_claim``), so a claim taken over
  meanwhile is never paid for twice. What remains: a request already sent when its owner's lease runs out on another
  host (a process that stayed silent ``stale_after`` seconds between its last check and the answer) can be bought by
  the taker too. On one host that cannot happen; the price is that a process that hangs without exiting keeps its
  claims until it exits or is killed (``tiklive status`` shows it "alive (heartbeat late)").
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


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3, the state, first), or None where there is no such file."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for the owner."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host is still the process that registered (same start time when it is known).

    A zombie (exited, not yet reaped by its parent) is dead: it will never heartbeat or pay for anything again."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _stat_fields(pid)
    if fields is not None and fields and fields[0] in ("Z", "X", "x"):
        return False
    if started:
        current = fields[19] if fields is not None and len(fields) > 19 else None
        if current is not None and current != started:
            return False  # the pid was reused by another process
    return True


def provably_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host is certainly still the registered process: alive, with its start time known and
    unchanged. Only such an owner is vouched for past its heartbeat (a pid without a start time may be reused)."""
    return bool(started) and process_alive(pid, started) and process_start(pid) == started


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

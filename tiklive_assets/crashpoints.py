"""Named crash points for fault-injection tests: ``crashpoint("videos.mp4.stored")`` kills the process there.

When the environment variable ``TIKLIVE_CRASH_AT`` names a point (``name``, or ``name:N`` for the N-th time the
process reaches it), the process sends itself SIGKILL at that point: no ``finally`` block, no atexit handler and no
buffered write runs, exactly like a power cut or an OOM kill. The crash suite uses this to stop the pipeline at
every place where state and store could disagree, and proves that an immediate rerun converges.

The variable is read once, at the first crash point a process reaches (never at import); after that, and unset
(always, in production), a crash point is one comparison.
"""

from __future__ import annotations

import os
import signal
import threading

from tiklive_assets import settings

ENV = settings.CRASH_AT


def _parse(value: str | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    name, _, nth = value.strip().partition(":")
    try:
        count = int(nth) if nth else 1
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected NAME or NAME:N (N a positive integer)") from None
    if count < 1:
        raise ValueError(f"{ENV}={value!r}: N must be 1 or more")
    return name.strip() or None, count


_TARGET: str | None = None
_NTH = 0
_armed = False
_seen = 0
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``TIKLIVE_CRASH_AT`` names ``name`` (at its N-th arrival); else nothing."""
    if not _armed:
        rearm()
    if _TARGET is None or name != _TARGET:
        return
    global _seen
    with _lock:
        _seen += 1
        if _seen < _NTH:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def rearm() -> None:
    """Read ``TIKLIVE_CRASH_AT`` again and restart the count (a test's forked child gets its own crash point)."""
    global _TARGET, _NTH, _seen, _armed
    _TARGET, _NTH = _parse(settings.crash_at())
    _seen = 0
    _armed = True

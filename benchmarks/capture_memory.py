#!/usr/bin/env python
"""Capture memory: downloading ~100 MB videos keeps the pipeline's peak RSS <= 200 MB.

The sandbox (its own process) serves ``--video-size`` byte MP4s (default 100,000,000; each video is 0.5-1.5x
that); the capture pipeline captures ``--videos`` of them (default 5) in a CHILD process with a
temp TIKLIVE_HOME (the capture assets only, materialized like ``tiklive run`` does, without its warehouse steps),
and the parent reads that child's peak RSS (``ru_maxrss`` from ``os.wait4``: the child alone,
not the sandbox, not this parent). For scale, the same capture with 50 KB videos is run first as a baseline:
the difference is what the file size costs (it should be ~0: downloads stream in 64 KiB chunks to a .part file).

Target: peak RSS of the capture child <= 200 MB. ``--run-day`` measures ``tiklive run``'s whole process instead
(pipeline.run_day: the capture, then the warehouse steps, with everything that imports).

    .venv/bin/python benchmarks/capture_memory.py                       # 5 x ~100 MB (~1 min)
    .venv/bin/python benchmarks/capture_memory.py --video-size 300000000 --videos 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_overhead import SandboxProcess, capture_day, pipeline_env, write_config

TARGET_MB = 200.0


def _child(home: str, base_url: str, config: str, how: str) -> int:
    """Runs in the measured child process: one capture of today, then its own figures on stdout as JSON."""
    import resource

    with pipeline_env(Path(home), base_url, Path(config)):
        t0 = time.monotonic()
        if how == "run-day":
            from tiklive_assets.cli.run import run_day

            rc = run_day(datetime.now(UTC).date(), out=sys.stderr)
        else:
            rc, _, _ = capture_day(datetime.now(UTC).date(), out=sys.stderr)
        wall = time.monotonic() - t0
    from tiklive_assets.state import StateDB

    state = StateDB.from_url(f"sqlite:///{Path(home) / 'state.sqlite'}")
    depth = state.queue_depth()
    state.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"rc": rc, "wall": wall, "downloaded": depth.get("downloaded", 0), "maxrss_kb": ru.ru_maxrss}))
    return rc


def measure(videos: int, video_size: int, download_concurrency: int, quiet: bool, how: str = "capture") -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="tiklive-memory-"))
    try:
        config = tmp / "tiklive.yaml"
        write_config(config, [("alice123", videos)], download_concurrency=download_concurrency)
        with SandboxProcess(accounts=6, video_size=video_size) as sandbox:
            cmd = [sys.executable, __file__, "--child", str(tmp / "home"), sandbox.base_url, str(config), how]
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None, text=True
            )
            out = proc.stdout.read()
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            bytes_on_disk = sum(p.stat().st_size for p in (tmp / "home" / "archive" / "videos").rglob("*.mp4"))
        result = json.loads(out.strip().splitlines()[-1])
        result["wait4_maxrss_kb"] = ru.ru_maxrss
        result["bytes"] = bytes_on_disk
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 6 and sys.argv[1] == "--child":
        return _child(*sys.argv[2:6])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=5, help="videos to capture (default 5)")
    ap.add_argument(
        "--video-size", type=int, default=100_000_000, help="mean sandbox MP4 size in bytes (default 100000000)"
    )
    ap.add_argument("--download-concurrency", type=int, default=20, help="capture.download_concurrency (default 20)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the 50 KB baseline run")
    ap.add_argument("--verbose", action="store_true", help="show the child's progress")
    ap.add_argument(
        "--run-day",
        action="store_true",
        help="measure `tiklive run` instead: pipeline.run_day, which also builds the warehouse and imports it",
    )
    args = ap.parse_args(argv)

    how = "run-day" if args.run_day else "capture"
    print(
        f"capture memory ({'pipeline.run_day: capture + warehouse' if args.run_day else 'capture assets'}): "
        f"{args.videos} videos of ~{args.video_size / 1e6:g} MB (each 0.5-1.5x), "
        f"download_concurrency {args.download_concurrency}; capture in a child process, sandbox in another",
        flush=True,
    )
    base = None
    if not args.no_baseline:
        base = measure(args.videos, 50_000, args.download_concurrency, not args.verbose, how)
        print(
            f"  baseline (50 KB videos): peak RSS {base['wait4_maxrss_kb'] / 1024:.1f} MB, "
            f"{base['downloaded']} videos in {base['wall']:.1f} s",
            flush=True,
        )
    big = measure(args.videos, args.video_size, args.download_concurrency, not args.verbose, how)
    peak = big["wait4_maxrss_kb"] / 1024
    print(
        f"  large videos: {big['downloaded']} videos, {big['bytes'] / 1e6:.0f} MB written in {big['wall']:.1f} s "
        f"({big['bytes'] / 1e6 / big['wall']:.0f} MB/s); peak RSS {peak:.1f} MB"
        + (f" (+{peak - base['wait4_maxrss_kb'] / 1024:.1f} MB over the baseline)" if base else "")
    )
    ok = big["rc"] == 0 and big["downloaded"] == args.videos and peak <= TARGET_MB
    print(
        f"VERDICT: {'PASS' if ok else 'FAIL'}: peak RSS {peak:.1f} MB (target <= {TARGET_MB:g} MB) while capturing "
        f"{big['downloaded']}/{args.videos} videos of ~{args.video_size / 1e6:g} MB ({how})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

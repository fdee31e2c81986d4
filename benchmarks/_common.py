"""Shared helpers of the benchmarks: a sandbox in its own process, a generated tracking YAML, a temp data root.

Not a benchmark itself. The sandbox runs as a separate process (``python benchmarks/_common.py serve ...``)
so that the CPU time a benchmark reports is the pipeline's own, not the sandbox's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml



class SandboxProcess:
    """A sandbox server in a child process; its stats and controls over HTTP."""

    def __init__(self, *, accounts: int = 6, video_size: int = 50_000, rate_limit: int | None = None,
                 rate_window: float = 60.0, latency_ms: float = 0.0, cdn_ttl: float = 300.0):
        cfg = {"accounts": accounts, "video_size": video_size, "rate_limit": rate_limit,
               "rate_window_seconds": rate_window, "latency_ms": latency_ms, "cdn_ttl_seconds": cdn_ttl}
        cmd = [sys.executable, "-c", _SERVE, json.dumps(cfg)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.proc.kill()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.base_url = line

    def _call(self, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self._call("/__sandbox__/stats")

    def reset_stats(self) -> None:
        self._call("/__sandbox__/reset-stats", {})

    def faults(self, **body: Any) -> dict:
        return self._call("/__sandbox__/faults", body)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "SandboxProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def accounts_for(videos: int, seed: int = 7, max_accounts: int = 400) -> tuple[int, list[tuple[str, int]]]:
    """The fewest tracked sandbox accounts whose visible posts add up to ``videos``, with per-account quotas."""
    from tiklive_assets.sandbox import Corpus

    for n in range(6, max_accounts + 1, 2):
        corpus = Corpus(seed=seed, accounts=n)
        counts = [(a.handle, len(corpus.visible_posts(a))) for a in corpus.accounts]
        if sum(c for _, c in counts) >= videos:
            quotas, left = [], videos
            for handle, count in counts:
                if left <= 0:
                    break
                take = min(count, left)
                quotas.append((handle, take))
                left -= take
            return n, quotas
    raise SystemExit(f"{max_accounts} sandbox accounts do not hold {videos} posts")


def write_config(path: Path, quotas: list[tuple[str, int]], *, hashtags: list[dict] | None = None,
                 download_concurrency: int = 20, api_concurrency: int = 8) -> None:
    """A tracking YAML capturing exactly ``quota`` posts of each account (no follow graph, no comments)."""
    config = {
        "plan": {"requests_per_minute": 10_000_000},
        "limits": {"max_pages": 1000, "max_videos_per_day": 1_000_000},
        "capture": {"download_concurrency": download_concurrency, "api_concurrency": api_concurrency},
        "accounts": [
            {"handle": h, "max_videos_per_day": q, "followers": False, "following": False,
             "comments": {"recent_videos": 0}}
            for h, q in quotas
        ],
        "hashtags": hashtags or [],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@contextmanager
def pipeline_env(home: Path, base_url: str, config: Path) -> Iterator[None]:
    from tiklive_assets import settings
    from tiklive_assets.sandbox import DEFAULT_API_KEY

    names = {settings.HOME: str(home), settings.BASE_URL: base_url, settings.API_KEY: DEFAULT_API_KEY,
             settings.CONFIG: str(config), "DAGSTER_HOME": ""}
    saved = {k: os.environ.get(k) for k in names}
    for k, v in names.items():
        if v:
            os.environ[k] = v
        else:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_SERVE = """
import json, sys
from tiklive_assets.sandbox import SandboxConfig, SandboxServer
server = SandboxServer(SandboxConfig(**json.loads(sys.argv[1])), port=0)
print(server.base_url, flush=True)
server.serve_forever()
"""

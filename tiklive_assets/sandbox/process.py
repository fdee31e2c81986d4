"""The sandbox in a process of its own, logging every API request, driven over its stdin.

A benchmark that measures the pipeline's CPU keeps the sandbox out of its own process this way (the sandbox's
answers cost CPU too), and reads back what arrived: each API request's arrival time, path, the ``/post-detail/``
id it asked for and its status, so a duplicate resolution or a 429 can be told apart from a retry.

``python -m tiklive_assets.sandbox.process CONFIG_JSON`` (``SandboxConfig`` fields as JSON) prints its base URL,
then answers one line per command on stdin: ``cpu`` (the process's CPU seconds, every thread) and ``dump PATH``
(writes the server's stats and the request log to PATH as JSON, answers ``ok``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tiklive_assets.tikliveapi.endpoints import POST_DETAIL

from .endpoints import parse_aweme_id, query_params
from .server import SandboxConfig, SandboxServer


class LoggedSandboxServer(SandboxServer):
    """The sandbox, keeping ``(arrival, path, /post-detail/ id or None, status)`` for every API request."""

    def __init__(self, config: SandboxConfig | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.request_log: list[tuple[float, str, str | None, int]] = []
        super().__init__(config, port, host)

    def handle_api(self, path: str, query: str, headers: Any) -> tuple[int, dict | bytes, dict[str, str]]:
        arrived = self.clock()
        status, body, extra = super().handle_api(path, query, headers)
        detail = parse_aweme_id(query_params(query).get("url")) if path == POST_DETAIL.path else None
        with self._lock:
            self.request_log.append((arrived, path, detail, status))
        return status, body, extra


def main(argv: list[str]) -> None:  # pragma: no cover - runs in the child process
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    server = LoggedSandboxServer(SandboxConfig(**json.loads(argv[0])), port=0)
    for account in server.corpus.accounts:  # every schedule built before the first request
        server.corpus.visible_posts(account)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.base_url, flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["cpu"]:
            times = os.times()
            print(times.user + times.system, flush=True)
        elif command[:1] == ["dump"] and len(command) == 2:
            with server._lock:
                log = sorted(server.request_log)
            Path(command[1]).write_text(json.dumps({"stats": server.stats(), "log": log}))
            print("ok", flush=True)
        else:
            print("unknown command", flush=True)


class SandboxProcess:
    """Start the sandbox in a child process (``SandboxConfig`` fields as keywords); ``stop()`` ends it."""

    def __init__(self, env: dict[str, str] | None = None, **config: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tiklive_assets.sandbox.process", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.stop()
            raise RuntimeError("the sandbox process did not start")

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def cpu(self) -> float:
        return float(self.ask("cpu"))

    def dump(self, path: Path) -> dict[str, Any]:
        self.ask(f"dump {path}")
        return json.loads(path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

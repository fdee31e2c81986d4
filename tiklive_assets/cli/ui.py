"""``tiklive ui``: the Dagster UI for this code location (the webserver and the daemon, as ``dg dev`` starts them),
optionally in front of the bundled sandbox API.

- ``--sandbox`` serves the sandbox TikLiveAPI on 127.0.0.1 in this process and points every run at it
  (``TIKLIVE_BASE_URL``, ``TIKLIVE_API_KEY=sandbox-key``): synthetic data, no credits billed.
- The Dagster instance is ``DAGSTER_HOME`` when it is set; otherwise ``TIKLIVE_HOME/dagster``, the instance
  ``tiklive run`` records its runs in, so its runs appear in the UI too. That folder gets the project's
  ``dagster.yaml`` settings (pools, run queue, run retries, no telemetry) with its SQLite storage kept there.
- ``dg dev`` runs in its own process group with the instance folder as its working directory (so it never mistakes
  another folder's ``dagster.yaml`` for the instance's); ``TIKLIVE_HOME`` and ``TIKLIVE_CONFIG`` are passed on as
  absolute paths, so runs read and write exactly where ``tiklive run`` does from here.
- Nothing prints a framework warning: ``dg dev`` rather than the superseded ``dagster dev`` (which says so at every
  start), given its target as a workspace file (no project checks, no virtual-environment notice); the services log
  at level error unless ``--log-level`` says otherwise.
- Ctrl-C or SIGTERM stops the webserver, the daemon, their code servers and run workers, then the sandbox; nothing
  is left running. If this process is killed outright, ``dg dev`` is told to stop (Linux: the parent-death signal).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import yaml

from tiklive_assets import settings
from tiklive_assets.cli.common import (
    EPILOG,
    EXIT_ERROR,
    REALISM_NEEDS_SANDBOX,
    add_command,
    add_config,
    add_home,
    fail,
    use_location,
)

LOCATION = "tiklive_assets"
CODE_LOCATION_MODULE = "tiklive_assets.definitions"
READY_TIMEOUT = 180.0  # seconds for the webserver to answer and the code location to load
STOP_TIMEOUT = 15.0  # seconds dg dev gets to stop its services before what is left of its process group is ended


SUMMARY = "start the Dagster UI (webserver + daemon) for this project; --sandbox puts the sandbox API behind it"
DESCRIPTION = (
    "Start the Dagster UI and its daemon (schedules, sensors, the run queue) for this code location, on 127.0.0.1 "
    "unless --host names another address. With --sandbox, the bundled sandbox TikLiveAPI is started first and "
    "every run captures from it (no key, no credits). Runs are recorded in $DAGSTER_HOME, else in "
    "$TIKLIVE_HOME/dagster, where `tiklive run` records its own. Ctrl-C stops everything it started."
)


def add_parser(sub: argparse._SubParsersAction, epilog: str = EPILOG) -> None:
    ui = add_command(sub, "ui", SUMMARY, DESCRIPTION, epilog=epilog)
    ui.add_argument(
        "--sandbox",
        action="store_true",
        help="start the bundled sandbox API and point every run at it (TIKLIVE_BASE_URL, sandbox-key)",
    )
    ui.add_argument(
        "--realism", action="store_true", help="with --sandbox: serve the payload variants real responses show"
    )
    ui.add_argument("--port", type=int, default=3000, help="port of the Dagster UI (default 3000)")
    ui.add_argument("--host", default="127.0.0.1", help="address the Dagster UI listens on (default 127.0.0.1)")
    ui.add_argument(
        "--sandbox-port",
        type=int,
        default=8765,
        help="port of the sandbox API on 127.0.0.1 (default 8765; 0 picks a free one)",
    )
    ui.add_argument(
        "--log-level",
        default="error",
        choices=["debug", "info", "warning", "error"],
        help="log level of the Dagster services (default error: their routine lines, such as a new "
        "instance's first daemon notices, stay out of the way; the UI shows every run's logs)",
    )
    add_config(ui)
    add_home(ui)


class _Stop(Exception):
    """SIGTERM arrived: stop like Ctrl-C."""


def run(args: argparse.Namespace) -> int:
    if args.realism and not args.sandbox:
        return fail(REALISM_NEEDS_SANDBOX)
    root = use_location(args)
    env = settings.environment()
    env[settings.HOME] = str(root.home)
    env[settings.CONFIG] = str(settings.config_path().absolute())
    dagster_home = instance_folder(root)
    env[settings.DAGSTER_HOME] = str(dagster_home)
    if not settings.first_day_text(env):
        env[settings.FIRST_DAY] = first_partition_day()
        print(
            f"partitions start at {env[settings.FIRST_DAY]}, the first archived day (today when nothing is "
            f"archived yet); set {settings.FIRST_DAY} to choose another",
            file=sys.stderr,
            flush=True,
        )
    url = f"http://{args.host}:{args.port}"
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with ExitStack() as stack:  # closed in reverse: dg dev stops first, the sandbox last
            sandbox_note = None
            if args.sandbox:
                sandbox_note = _start_sandbox(stack, args, env)
                if sandbox_note is None:
                    return 2
            elif not settings.api_key():
                print(
                    "note: TIKLIVE_API_KEY is not set, so capture runs will fail before any request; the warehouse "
                    "can still be loaded from the archive. Add --sandbox to capture from the bundled sandbox.",
                    file=sys.stderr,
                )
            workspace = stack.enter_context(_workspace_file())
            print(f"starting the Dagster UI on {url} (instance: {dagster_home}) ...", flush=True)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dagster_dg_cli.cli",
                    "dev",
                    "--workspace",
                    str(workspace),
                    "--port",
                    str(args.port),
                    "--host",
                    args.host,
                    "--log-level",
                    args.log_level,
                ],
                cwd=dagster_home,
                env=env,
                start_new_session=True,
                preexec_fn=_stop_with_parent,
            )
            stack.callback(_stop, proc)
            try:
                problem = _wait_ready(proc, url)
                if problem is not None:
                    return fail(problem, EXIT_ERROR)
                _banner(url, sandbox_note)
                code = proc.wait()
            except (KeyboardInterrupt, _Stop):
                print(
                    "\nstopping the Dagster UI, its daemon" + (" and the sandbox" if args.sandbox else "") + " ...",
                    file=sys.stderr,
                    flush=True,
                )
                return 0
            return fail(f"dg dev exited with status {code}", EXIT_ERROR)
    except (KeyboardInterrupt, _Stop):  # before dg dev started: nothing of it to stop
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_stop(signum, frame) -> None:  # noqa: ARG001 - the signal handler interface
    raise _Stop()


def _start_sandbox(stack: ExitStack, args: argparse.Namespace, env: dict[str, str]) -> str | None:
    from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer

    try:
        server = SandboxServer(SandboxConfig(realism=args.realism), port=args.sandbox_port)
    except OSError as exc:
        print(
            f"the sandbox cannot listen on 127.0.0.1:{args.sandbox_port} ({exc.strerror}); another sandbox may be "
            "running there: stop it, or pass --sandbox-port 0 to pick a free port",
            file=sys.stderr,
        )
        return None
    stack.enter_context(server)
    env[settings.BASE_URL] = server.base_url
    env[settings.API_KEY] = DEFAULT_API_KEY
    print(
        f"sandbox TikLiveAPI started at {server.base_url} (synthetic data, no credits billed; every run gets its key)",
        flush=True,
    )
    return server.base_url


def instance_folder(root: settings.DataRoot) -> Path:
    """``DAGSTER_HOME`` as set, else ``TIKLIVE_HOME/dagster`` with the project's instance settings written there."""
    configured = settings.dagster_home()
    if configured:
        return configured
    folder = root.home / "dagster"
    folder.mkdir(parents=True, exist_ok=True)
    shipped = project_instance_settings()
    config: dict = dict(shipped[1]) if shipped else {"telemetry": {"enabled": False}}
    storage = config.get("storage")
    if not storage or set(storage) == {"sqlite"}:  # the embedded SQLite storage lives with the data, here
        config["storage"] = {"sqlite": {"base_dir": str(folder)}}
    source = f"from {shipped[0]}" if shipped else "(no project dagster.yaml found: Dagster's defaults)"
    text = (
        f"# Written by `tiklive ui` at each start {source}, with the SQLite storage in this folder.\n"
        "# Edit the project's dagster.yaml instead, or set DAGSTER_HOME to an instance of your own.\n"
    )
    (folder / "dagster.yaml").write_text(text + yaml.safe_dump(config, sort_keys=False))
    return folder


def project_instance_settings() -> tuple[Path, dict] | None:
    """The project's ``dagster.yaml``: in the current folder, else beside the package (a checkout)."""
    import tiklive_assets

    for folder in (Path.cwd(), Path(tiklive_assets.__file__).resolve().parent.parent):
        path = folder / "dagster.yaml"
        if path.is_file():
            return path, yaml.safe_load(path.read_text()) or {}
    return None


@contextmanager
def _workspace_file():
    """A workspace naming the code location by module: the installed package, wherever this runs from."""
    with tempfile.TemporaryDirectory(prefix="tiklive-ui-") as folder:
        path = Path(folder) / "workspace.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {
                            "python_module": {
                                "module_name": CODE_LOCATION_MODULE,
                                "location_name": LOCATION,
                                "working_directory": str(Path.cwd()),
                            }
                        }
                    ]
                }
            )
        )
        yield path


def _stop_with_parent() -> None:
    """In the child, before exec: SIGINT it (a clean dg dev shutdown) should this process die without stopping it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 10.0) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_ready(proc: subprocess.Popen, url: str) -> str | None:
    """None once the webserver answers and the code location has loaded; else what went wrong."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"dg dev stopped with status {proc.returncode} before the UI answered (see its output above)"
        try:
            answer = graphql(url, LOCATION_QUERY, timeout=5)
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.5)
            continue
        entries = (answer.get("data") or {}).get("workspaceOrError", {}).get("locationEntries") or []
        entry = next((e for e in entries if e.get("name") == LOCATION), None)
        if entry and entry.get("loadStatus") == "LOADED":
            error = entry.get("locationOrLoadError") or {}
            if error.get("__typename") == "PythonError":
                print(
                    f"the code location {LOCATION} failed to load; fix it, then press Reload on the UI's "
                    f"Deployment page:\n{error.get('message', '').strip()}",
                    file=sys.stderr,
                )
            return None
        time.sleep(0.5)
    return f"the Dagster UI did not answer on {url} within {READY_TIMEOUT:.0f} s"


def first_partition_day() -> str:
    """The first day the archive holds (today, UTC, when it holds none): where the UI's partitions begin unless
    TIKLIVE_FIRST_DAY says otherwise, so the asset pages and the backfill dialog show only days that can hold data."""
    from datetime import UTC, datetime

    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.verification.integrity import first_archived_day

    try:
        first = first_archived_day(default_resources()["archive_store"].open())
    except Exception:  # noqa: BLE001 - an unreachable store must not keep the UI from starting
        first = None
    return (first or datetime.now(UTC).date()).isoformat()


def _banner(url: str, sandbox: str | None) -> None:
    jobs = f"{url}/locations/{LOCATION}/jobs"
    lines = [
        f"Dagster UI: {url}",
        f"  1. today's capture: open {jobs}/daily_capture, press \"Materialize all\" and pick today's partition "
        "(UTC); the API only serves the present.",
        f'  2. then the warehouse: open {jobs}/daily_warehouse, "Materialize all" for the same day, or select '
        "several days to backfill them from the archive (one run per range).",
        f"  runs: {url}/runs (those of `tiklive run` are there too, as daily_capture and daily_warehouse)",
    ]
    if sandbox:
        lines.append(f"  every run captures from the sandbox at {sandbox}: synthetic data, no credits billed")
    lines.append("Ctrl-C stops the UI, the daemon" + (" and the sandbox." if sandbox else "."))
    print("\n".join(lines), flush=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT dg dev (it stops the webserver and the daemon, which stop their code servers), then end whatever is
    left in its process group (a run worker still running: SIGTERM lets it record the run as interrupted). Further
    Ctrl-C or SIGTERM are ignored meanwhile: an interrupted cleanup is what leaves processes behind."""
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        group = proc.pid  # start_new_session: the group carries dg dev's pid
        if proc.poll() is None:
            # The whole group: dg dev alone would stop the webserver and daemon but may leave their code servers
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(group) and time.monotonic() < deadline:  # the code servers end on their own SIGINT
            time.sleep(0.1)
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not _group_alive(group):
                print("stopped: nothing of the Dagster UI is left running", file=sys.stderr, flush=True)
                return
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + grace
            while _group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.1)
        if _group_alive(group):
            print(
                f"could not stop every process of the Dagster UI: end them with `kill -9 -- -{group}`",
                file=sys.stderr,
                flush=True,
            )
        else:
            print("stopped: nothing of the Dagster UI is left running", file=sys.stderr, flush=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True

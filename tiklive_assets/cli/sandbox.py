"""``tiklive sandbox`` (and ``python -m tiklive_assets.sandbox``): serve the bundled sandbox TikLiveAPI over HTTP.

Both entry points take the same options (:func:`add_options`) and build the same :class:`SandboxConfig` from them
(:func:`sandbox_config`); only the default port and the banner differ.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack, suppress

from tiklive_assets import settings
from tiklive_assets.cli.common import add_command

DEFAULT_PORT = 8765


def add_options(parser: argparse.ArgumentParser, *, port: int = DEFAULT_PORT) -> None:
    """The sandbox's options: where it listens, the key it accepts, its corpus and its faults."""
    parser.add_argument(
        "--port", type=int, default=port, help=f"port on 127.0.0.1 (default {port}; 0 picks a free one)"
    )
    parser.add_argument("--api-key", default=None, help="key the sandbox accepts (default: sandbox-key)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic corpus (default 7)")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests allowed per window (default: unlimited)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds (default 60)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every API call")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of API calls answered with a 5xx")
    parser.add_argument(
        "--cdn-ttl", type=float, default=300.0, help="seconds before signed CDN URLs expire (default 300)"
    )
    parser.add_argument("--video-size", type=int, default=50_000, help="approximate bytes of each sandbox MP4")
    parser.add_argument("--accounts", type=int, default=6, help="synthetic accounts (default 6; more for load tests)")
    parser.add_argument(
        "--realism",
        action="store_true",
        help="serve the payload variants real responses show: ids under video_id/id and as integers, "
        "string or null counters, hasMore 1/0, bioLink objects, photo posts (images + an MP3), the "
        "{code, msg, data} envelope, and now and then an upstream error or a truncated body inside "
        "HTTP 200 (the retry gets the real answer)",
    )
    parser.add_argument(
        "--credit-balance",
        type=int,
        default=None,
        help="credits the account has; once spent, every request is answered HTTP 200 "
        '{"message": "Insufficient balance..."}, as TikLiveAPI does (default: unlimited)',
    )


SUMMARY = "serve the bundled sandbox TikLiveAPI over HTTP"
DESCRIPTION = (
    "Serve the sandbox: every TikLiveAPI endpoint with the exact wire format, from deterministic synthetic data, "
    "with optional faults. Point TIKLIVE_BASE_URL at it and use its key."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_options(add_command(sub, "sandbox", SUMMARY, DESCRIPTION, epilog=None))


def sandbox_config(args: argparse.Namespace):
    """The :class:`SandboxConfig` the options of :func:`add_options` describe."""
    from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig

    return SandboxConfig(
        api_key=args.api_key or DEFAULT_API_KEY,
        seed=args.seed,
        rate_limit=args.rate_limit,
        rate_window_seconds=args.rate_window,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        cdn_ttl_seconds=args.cdn_ttl,
        video_size=args.video_size,
        accounts=args.accounts,
        realism=args.realism,
        credit_balance=args.credit_balance,
    )


def serve(args: argparse.Namespace, banner: list[str]) -> int:
    """Serve the sandbox the options describe in the foreground until Ctrl-C; ``banner`` lines are printed first
    (``{url}``, ``{key}`` and ``{accounts}`` in them are filled in)."""
    from tiklive_assets.sandbox import SandboxServer

    config = sandbox_config(args)
    server = SandboxServer(config, port=args.port)
    accounts = ", ".join(account.handle for account in server.corpus.accounts)
    for line in banner:
        print(line.format(url=server.base_url, key=config.api_key, accounts=accounts), flush=True)
    with suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def run(args: argparse.Namespace) -> int:
    return serve(
        args,
        [
            "sandbox TikLiveAPI listening on {url}",
            "  export TIKLIVE_BASE_URL={url}",
            "  export TIKLIVE_API_KEY=<the sandbox key: --api-key, default sandbox-key>",
            "  accounts: {accounts}",
            "Ctrl-C stops it.",
        ],
    )


def start_in_process(stack: ExitStack, *, realism: bool, port: int = 0) -> str:
    """Start the sandbox on 127.0.0.1 for this process and what it starts (stopped when ``stack`` closes), point
    the API settings at it (its URL and key) and return its URL."""
    from tiklive_assets.sandbox import DEFAULT_API_KEY, SandboxConfig, SandboxServer

    server = stack.enter_context(SandboxServer(SandboxConfig(realism=realism), port=port))
    settings.use_api(server.base_url, DEFAULT_API_KEY)
    return server.base_url

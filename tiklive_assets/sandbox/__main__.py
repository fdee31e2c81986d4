"""Run the sandbox in the foreground: ``python -m tiklive_assets.sandbox --port 8080``."""

import argparse

from .server import DEFAULT_API_KEY, SandboxConfig, SandboxServer


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tiklive_assets.sandbox", description=__doc__)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--api-key", default=DEFAULT_API_KEY)
    ap.add_argument("--rate-limit", type=int, default=None)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--video-size", type=int, default=50_000)
    ap.add_argument("--realism", action="store_true", help="serve the payload variants real responses show")
    ap.add_argument("--credit-balance", type=int, default=None, help="credits before 'Insufficient balance' answers")
    args = ap.parse_args(argv)
    cfg = SandboxConfig(
        api_key=args.api_key,
        seed=args.seed,
        rate_limit=args.rate_limit,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        video_size=args.video_size,
        realism=args.realism,
        credit_balance=args.credit_balance,
    )
    sb = SandboxServer(cfg, port=args.port)
    print(f"tiklive sandbox on {sb.base_url} (X-Api-Key: {args.api_key})", flush=True)
    sb.serve_forever()


if __name__ == "__main__":
    main()

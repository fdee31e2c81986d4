#!/usr/bin/env python
"""Research API efficiency: requests spent to collect one year of one account vs the floor.

The floor is what no client can beat: one request per ≤30-day window plus one per extra page of 100 videos,
``sum(max(1, ceil(videos_in_window / 100)))``. The collector runs against the sandbox over real HTTP (pages
``--pause`` seconds apart instead of 10 s) with a fresh state DB and archive; the server counts the requests.

Target: requests == floor, with 0 errors (no pacing violations, no retries, no restarts). With ``--realism`` the
sandbox withholds some videos (the cursor still counts them, so the floor is unchanged) and answers its scripted
transient failures: the target is then requests == floor + retries, every returned video collected.

    .venv/bin/python benchmarks/research_efficiency.py                          # 20minuten, 2024, ~5 s
    .venv/bin/python benchmarks/research_efficiency.py --user tagesschau --year 2023
    .venv/bin/python benchmarks/research_efficiency.py --realism
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from tiklive_assets.research.archive import ResearchArchive
from tiklive_assets.research.client import ResearchClient, build_query
from tiklive_assets.research.collect import CollectOptions, collect_videos
from tiklive_assets.research.quota import QuotaLedger, ResearchState
from tiklive_assets.research.windows import split_range
from tiklive_assets.sandbox.research import (
    DEFAULT_CLIENT_KEY,
    DEFAULT_CLIENT_SECRET,
    ResearchSandboxConfig,
    corpus_videos,
)
from tiklive_assets.sandbox.server import SandboxConfig, SandboxServer
from tiklive_assets.state import StateDB
from tiklive_assets.storage import LocalStore


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", default="20minuten")
    ap.add_argument("--year", type=int, default=2024)
    ap.add_argument("--pause", type=float, default=0.1, help="seconds between pages (the real API needs ~10)")
    ap.add_argument("--realism", action="store_true", help="withheld videos and scripted transient failures")
    args = ap.parse_args(argv)
    start, end = date(args.year, 1, 1), date(args.year, 12, 31)
    windows = split_range(start, end)
    per_window = [len(corpus_videos(args.user, w.start, w.end)) for w in windows]
    floor = sum(max(1, math.ceil(n / 100)) for n in per_window)
    returned = sum(len(corpus_videos(args.user, w.start, w.end, realism=args.realism)) for w in windows)
    config = ResearchSandboxConfig(page_interval=args.pause, realism=args.realism)
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(SandboxConfig(research=config)) as server:
        db = StateDB.from_url(f"sqlite:///{Path(tmp) / 'state.sqlite'}")
        state = ResearchState(db)
        ledger = QuotaLedger(state, today=server.research.today)
        archive = ResearchArchive(LocalStore(Path(tmp) / "archive"), ledger.today())
        client = ResearchClient(
            DEFAULT_CLIENT_KEY,
            DEFAULT_CLIENT_SECRET,
            server.base_url,
            quota=ledger,
            on_response=archive.write,
            backoff_initial=0.01,
        )
        started = time.monotonic()
        report = collect_videos(
            client, archive, state, build_query([args.user]), windows, CollectOptions(pause=args.pause * 1.1)
        )
        elapsed = time.monotonic() - started
        db.close()
        spent = server.research.stats.requests["/v2/research/video/query/"]
        stats = server.research.stats
    videos = sum(per_window)
    print(
        f"@{args.user}, created {start}..{end}: {videos} videos in {len(windows)} windows"
        f"{f' ({returned} returned, the rest withheld)' if args.realism else ''}"
    )
    print(f"floor     = {len(windows)} windows + {floor - len(windows)} extra pages = {floor} requests")
    print(
        f"spent     = {spent} requests ({spent / floor:.2f}x the floor), "
        f"collected {sum(report.videos_by_user.values())} videos"
    )
    print(
        f"errors    = {stats.pace_violations} pacing violations, {report.retries} retries, {report.restarts} restarts; "
        f"{client.meter.token_requests} token request(s); {elapsed:.1f} s with {args.pause:g} s pauses "
        f"(≈{(floor - len(windows)) * 10 / 60:.1f} min of pauses at the real 10 s)"
    )
    collected = sum(report.videos_by_user.values())
    if args.realism:
        ok = (
            spent == floor + report.retries and report.complete and stats.pace_violations == 0 and collected == returned
        )
        print(
            f"target    : at the floor plus {report.retries} counted retries, all {returned} returned videos "
            "collected -> " + ("MET" if ok else "MISSED")
        )
    else:
        ok = spent == floor and report.complete and stats.pace_violations == 0 and report.retries == 0
        print("target    : at the floor without errors -> " + ("MET" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

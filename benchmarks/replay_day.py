"""Benchmark (issue 4, item 11): replay one day of 50,000 archived /post-detail/ objects into DuckDB.

Generates the day in the sandbox's exact shape (bodies from ``tiklive_assets.sandbox.Corpus.detail``, each object
given its own aweme_id and counters, gzip JSON under ``tiklive-raw/YYYY/MM/DD/post-detail/<id>.json.gz`` on a local
store), then times ``parse_day`` + ``load_day`` into a fresh DuckDB file and reports objects/s and peak RSS.
Run it warm (the generation leaves the files in the page cache), as the issue's reference figures were:

    .venv/bin/python benchmarks/replay_day.py                 # 50,000 objects, 2 processes
    .venv/bin/python benchmarks/replay_day.py --processes 1   # single process
    .venv/bin/python benchmarks/replay_day.py --days 3        # 3 days: per-day cost of a multi-day run

Target: >= 20,000 objects/s end to end, peak RSS <= 500 MB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.keys import raw_key
from tiklive_assets.warehouse import open_warehouse, parse_day
from tiklive_assets.warehouse.reader import parser_pool

TEMPLATES = 400


def templates(now: float) -> list[dict]:
    corpus = Corpus(seed=7, clock=lambda: now, accounts=6)
    ids = corpus.all_post_ids(now)[:TEMPLATES]
    return [corpus.detail(aweme_id, now) for aweme_id in ids]


def generate(root: Path, day: date, count: int, bodies: list[dict]) -> int:
    """Write ``count`` gzip JSON objects straight into the LocalStore layout (no fsync per file: a fixture)."""
    directory = root / raw_key(day, "post-detail", "1").rsplit("/", 1)[0]
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    base = int(day.strftime("%Y%m%d")) * 10**9
    for i in range(count):
        body = dict(bodies[i % len(bodies)])
        aweme_id = str(7_000_000_000_000_000_000 + base + i)
        body["aweme_id"] = aweme_id
        for counter in ("play_count", "digg_count", "comment_count", "share_count"):
            body[counter] = int(body[counter]) + i % 997
        data = gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=6, mtime=0)
        (directory / f"{aweme_id}.json.gz").write_bytes(data)
        written += len(data)
    return written


def _generate_days(archive: Path, days: list[date], count: int) -> int:
    bodies = templates(time.time())
    return sum(generate(archive, day, count, bodies) for day in days)


def _replay(archive: Path, target: Path, days: list[date], processes: int) -> tuple:
    store = LocalStore(archive)
    per_day = []
    started = time.monotonic()
    pool = parser_pool(processes) if processes > 1 else None
    with open_warehouse(str(target)) as warehouse:
        for day in days:
            t0 = time.monotonic()
            parsed = parse_day(store, day, pool=pool)
            t1 = time.monotonic()
            warehouse.load_day(day, parsed.tables)
            per_day.append((day, parsed.objects, t1 - t0, time.monotonic() - t1))
            del parsed
        took = time.monotonic() - started
        if pool is not None:
            pool.shutdown()
        posts = warehouse.row_count("posts")
        history = warehouse.row_count("post_metrics_history")
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    return (per_day, took, posts, history, *peak_rss_mb(), cpu, os.getloadavg()[0])


def peak_rss_mb() -> tuple[float, float]:
    """(this process, largest child process) peak RSS in MB (Linux reports ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=50_000, help="objects per day (default 50,000)")
    parser.add_argument("--days", type=int, default=1, help="days to generate and replay in one run (default 1)")
    parser.add_argument("--processes", type=int, default=2, help="parser processes (default 2: this host's cores)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="tiklive-bench-"))
    archive, target = work / "archive", work / "warehouse.duckdb"
    first = date(2026, 5, 29)
    days = [first + timedelta(days=n) for n in range(args.days)]
    try:
        started = time.monotonic()
        # generate in a child process, so the replay below starts from a clean heap and its peak RSS is its own
        with multiprocessing.get_context("fork").Pool(1) as generator:
            gz_bytes = generator.apply(_generate_days, (archive, days, args.objects))
        print(f"generated {args.objects:,} /post-detail/ objects x {args.days} day(s) "
              f"({gz_bytes / 1e6:.1f} MB gzip) in {time.monotonic() - started:.1f}s under {archive}")
        target.unlink(missing_ok=True)
        # replay in a fresh child too: its RUSAGE_SELF / RUSAGE_CHILDREN are the replay's and its parsers' alone
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        runner = context.Process(target=lambda: send.send(_replay(archive, target, days, args.processes)))
        runner.start()
        per_day, took, posts, history, own, children, cpu, load = receive.recv()
        runner.join()
        total = sum(n for _, n, _, _ in per_day)
        for day, n, parse_s, load_s in per_day:
            print(f"  {day}: {n:,} objects, parse {parse_s:.2f}s + load {load_s:.2f}s = "
                  f"{n / (parse_s + load_s):,.0f} objects/s")
        print(f"replayed {total:,} objects in {took:.2f}s: {total / took:,.0f} objects/s end to end "
              f"({posts:,} posts, {history:,} metric rows) with {args.processes} process(es)")
        print(f"peak RSS: {own:.0f} MB (replaying process), {children:.0f} MB (largest parser process)")
        print(f"CPU: {cpu:.2f} s user+sys in all replay processes = {total / cpu:,.0f} objects per CPU-second "
              f"(1-minute load average at the end: {load:.1f} on {os.cpu_count()} cores; other work skews wall time)")
        ok = total / took >= 20_000 and max(own, children) <= 500
        print("target (>= 20,000 objects/s, <= 500 MB): " + ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

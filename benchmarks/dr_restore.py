"""Benchmark: restore a 90-day warehouse from its latest snapshot plus one day of replay, against a full replay.

Generates N + 1 synthetic archived days (``replay_day.py``'s generator: the sandbox's /post-detail/ bodies with the
variants real APIs send, profiles, error objects and a few unparsable ones, gzip JSON with the fetch time in the
header, in the LocalStore layout). Then, on one DuckDB warehouse and one local store:

1. **full replay**: the recovery without snapshots, every day from the first into a fresh warehouse (timed);
2. the warehouse of the first N days (a replay, not timed), then ``take_snapshot`` as the daily job takes it, once
   day N has closed (timed: the snapshot's own cost);
3. the warehouse deleted, ``restore_warehouse``: the snapshot downloaded, checked and loaded, then only day N + 1
   replayed (timed: what ``tiklive dr restore-warehouse`` does).

Every table of the restored warehouse must equal the full replay's (row counts and fingerprints). The figure is the
restore's time as a ratio of the full replay's; target <= 0.25 at 90 days (the restore is a bulk load of Parquet
files plus one day, the full replay parses every object again):

    .venv/bin/python benchmarks/dr_restore.py                          # 90 days + 1, 2,000 objects a day
    .venv/bin/python benchmarks/dr_restore.py --days 30 --objects 5000
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from replay_day import generate, templates

from tiklive_assets.recovery import restore_warehouse, take_snapshot
from tiklive_assets.storage import LocalStore
from tiklive_assets.warehouse import open_warehouse, replay

TARGET_RATIO = 0.25


def _generate(archive: Path, days: list[date], count: int) -> int:
    bodies = templates(time.time())
    return sum(generate(archive, day, count, bodies) for day in days)


def _tables(path: Path) -> dict[str, tuple[int, str]]:
    with open_warehouse(str(path), read_only=True) as wh:
        return wh.fingerprints()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=90, help="days the snapshot holds (default 90); one more follows")
    parser.add_argument("--objects", type=int, default=2_000, help="archived objects per day (default 2,000)")
    parser.add_argument("--processes", type=int, default=1, help="parser processes of both replays (default 1)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="tiklive-bench-dr-"))
    archive = work / "archive"
    first = date(2026, 5, 1)
    days = [first + timedelta(days=n) for n in range(args.days + 1)]
    last = days[-1]
    try:
        started = time.monotonic()
        with multiprocessing.get_context("fork").Pool(1) as generator:  # its heap is not this process's
            gz = generator.apply(_generate, (archive, days, args.objects))
        print(
            f"generated {len(days)} days x {args.objects:,} objects ({gz / 1e6:.1f} MB gzip) in "
            f"{time.monotonic() - started:.1f}s under {archive}"
        )
        store = LocalStore(archive)

        full = work / "full.duckdb"
        started = time.monotonic()
        replay(store, str(full), first, last, processes=args.processes)
        full_s = time.monotonic() - started
        print(f"full replay of {len(days)} days: {full_s:.1f}s")

        live = work / "warehouse.duckdb"
        replay(store, str(live), first, days[-2], processes=args.processes)
        closed = datetime.combine(last, datetime.min.time(), UTC) + timedelta(hours=1, minutes=30)
        manifest = take_snapshot(store, str(live), now=closed, scratch=work / "tmp")
        print(
            f"snapshot of the first {args.days} days: {manifest.rows:,} rows, {manifest.size / 1e6:.1f} MB of Parquet "
            f"in {manifest.seconds:.1f}s"
        )

        live.unlink()
        report = restore_warehouse(store, str(live), until=last, processes=args.processes, scratch=work / "tmp")
        restore_s = report.seconds
        print(
            f"restore: snapshot loaded in {report.restore_seconds:.1f}s + {len(report.replayed)} day(s) replayed "
            f"= {restore_s:.1f}s"
        )
        expected, got = _tables(full), _tables(live)
        differ = sorted(name for name in expected if expected[name] != got.get(name))
        ratio = restore_s / full_s
        print(f"ratio: restore / full replay = {ratio:.3f} ({full_s / restore_s:.1f}x faster)")
        if differ:
            print(f"VERDICT: FAIL: the restored tables differ from the full replay's: {', '.join(differ)}")
            return 1
        if report.replayed != [last]:
            print(f"VERDICT: FAIL: the restore replayed {report.replayed}, not only {last}")
            return 1
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"VERDICT: {verdict}: restoring {args.days} days from a snapshot + 1 day of replay took {ratio:.3f} of a "
            f"full replay ({restore_s:.1f}s vs {full_s:.1f}s; target <= {TARGET_RATIO}), every table identical"
        )
        return 0 if verdict == "PASS" else 1
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

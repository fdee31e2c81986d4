"""Benchmark: nightly restore verification of a 50,000-object day.

Generates one archived day of 50,000 /post-detail/ objects (same generator as replay_day.py), loads the warehouse
from it, then times ``verify_day``: parse every object, replay into a scratch DuckDB, compare every table with
the warehouse. Target: <= 60 s on this machine.

    .venv/bin/python benchmarks/restore_verification.py
    .venv/bin/python benchmarks/restore_verification.py --objects 10000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from replay_day import _generate_days, peak_rss_mb  # noqa: E402

from tiklive_assets.storage import LocalStore  # noqa: E402
from tiklive_assets.verification.restore import verify_day  # noqa: E402
from tiklive_assets.warehouse import load_days, open_warehouse  # noqa: E402

TARGET_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=50_000, help="objects in the verified day (default 50,000)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="restore-bench-"))
    day = datetime.now(UTC).date() - timedelta(days=1)
    try:
        archive, target = work / "archive", work / "warehouse.duckdb"
        started = time.monotonic()
        _generate_days(archive, [day], args.objects)
        print(f"generated {args.objects:,} objects for {day} in {time.monotonic() - started:.1f}s")
        store = LocalStore(archive)
        with open_warehouse(str(target)) as wh:
            load_days(store, wh, [day])
        print("warehouse loaded; verifying ...", flush=True)
        started = time.monotonic()
        with open_warehouse(str(target)) as wh:
            report = verify_day(store, wh, day, scratch_dir=work)
        took = time.monotonic() - started
        rss, _ = peak_rss_mb()
        print(
            f"restore verification of {report.objects:,} objects: {took:.1f}s "
            f"({report.objects / took:,.0f} objects/s), passed={report.passed}, peak RSS {rss:.0f} MB"
        )
        for table in report.tables:
            print(f"  {table.table:<22} replayed {table.replayed:>7,}  in warehouse {table.in_warehouse:>7,}")
        ok = report.passed and took <= TARGET_SECONDS
        print(
            f"VERDICT: {'PASS' if ok else 'FAIL'}: {took:.1f}s for {report.objects:,} objects "
            f"(target <= {TARGET_SECONDS:.0f}s)"
        )
        return 0 if ok else 1
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

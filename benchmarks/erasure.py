"""Benchmark: erase one user from a 30-day archive through the archive index, against the full scan.

Generates a synthetic archive on a local store in a temp dir (``--objects``, default 1,000,000, over ``--days``
days): gzip JSON objects in the shapes the capture archives (``/post-detail/`` bodies, comment pages, follower
pages, hashtag listings) among ``--users`` users, written straight to disk by two processes. One target user
appears the way a real account does: their profile and ``/userid/`` answer every day, posts of their own (each
with its comment page), comments on others' posts, items of others' follower pages and listings, and ``@``
mentions in others' comments, about one object in a thousand. The days are then loaded into a DuckDB warehouse
with their index parts (what the daily warehouse run does: the index costs that load, not the erasure).

It times the erasure's plan (a dry run without the warehouse, which reads exactly what ``--execute`` reads before
changing anything) through the index and with the full scan, checks both plan the same objects, and prints the
objects read (index parts + object bodies), the objects referring to the user, and the time ratio::

    .venv/bin/python benchmarks/erasure.py                       # 1,000,000 objects over 30 days
    .venv/bin/python benchmarks/erasure.py --objects 200000      # quicker

Targets: objects read through the index <= 2 x the objects that refer to the user; full scan time / index time
>= 50; the same plan.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from tiklive_assets.compliance import erase_user
from tiklive_assets.storage import LocalStore
from tiklive_assets.warehouse import load_days, open_warehouse

TARGET_ID, TARGET = "6800000000000009999", "target.user"
TARGET_RATE = 0.001  # the share of objects in which the target appears (as author, commenter, follower, mention)
FIRST_DAY = date(2026, 10, 1)


def _user(n: int) -> dict:
    return {"id": str(7100000000000000000 + n), "unique_id": f"u{n:07d}", "nickname": f"User {n}"}


TARGET_USER = {"id": TARGET_ID, "unique_id": TARGET, "nickname": "Target"}


def _post(rng: random.Random, aweme: int, author: dict) -> dict:
    return {
        "aweme_id": str(aweme),
        "region": "US",
        "title": f"clip {aweme % 997} #tag{aweme % 50}",
        "play_count": rng.randrange(10**6),
        "digg_count": rng.randrange(10**4),
        "comment_count": rng.randrange(100),
        "share_count": rng.randrange(100),
        "create_time": 1790000000 + aweme % 10**6,
        "duration": 15,
        "author": author,
        "music_info": {"id": str(9000 + aweme % 40), "title": "Song", "author": "Band"},
    }


class DayWriter:
    """One day's objects written as the capture lays them out: tiklive-raw/YYYY/MM/DD/<endpoint>/<slug>.json.gz."""

    def __init__(self, root: Path, day: date, users: int, seed: int) -> None:
        self.root, self.day, self.users = root, day, users
        self.rng = random.Random(seed * 1000 + day.toordinal())
        self.base = root / "tiklive-raw" / f"{day:%Y/%m/%d}"
        self.made: set[str] = set()
        self.written = self.target_refs = 0
        self.mtime = int(time.mktime(day.timetuple())) + 43200

    def put(self, endpoint: str, slug: str, body: object) -> None:
        directory = self.base / endpoint
        if endpoint not in self.made:
            directory.mkdir(parents=True, exist_ok=True)
            self.made.add(endpoint)
        data = gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=1, mtime=self.mtime)
        (directory / f"{slug}.json.gz").write_bytes(data)
        self.written += 1

    def someone(self) -> dict:
        if self.rng.random() < TARGET_RATE:
            self.target_refs += 1
            return TARGET_USER
        return _user(self.rng.randrange(self.users))

    def write(self, objects: int) -> tuple[int, int]:
        rng, ordinal = self.rng, self.day.toordinal()
        self.put("userid", TARGET, {"id": TARGET_ID})
        self.put("userinfo-by-id", TARGET_ID, {"user": {**TARGET_USER, "uniqueId": TARGET}, "stats": {}})
        n = 0
        while self.written < objects:
            n += 1
            aweme = 7000000000000000000 + ordinal * 10**7 + n
            kind = rng.random()
            if kind < 0.6:
                author = self.someone()
                self.put("post-detail", str(aweme), _post(rng, aweme, author))
                if author is TARGET_USER:  # the target's own post: its comment page too
                    comments = [{"id": str(aweme + 1), "text": "nice", "aweme_id": str(aweme), "user": _user(n)}]
                    self.put("post-comments", f"{aweme}-cursor0", {"comments": comments, "hasMore": False})
            elif kind < 0.8:
                comments = []
                for i in range(5):
                    mention = f"@{TARGET} look" if rng.random() < TARGET_RATE / 5 else "love this"
                    self.target_refs += mention != "love this"
                    user = self.someone() if i == 0 else _user(rng.randrange(self.users))
                    comments.append({"id": str(aweme * 10 + i), "text": mention, "aweme_id": str(aweme), "user": user})
                self.put("post-comments", f"{aweme}-cursor0", {"comments": comments, "cursor": "5", "hasMore": False})
            elif kind < 0.9:
                owner = _user(rng.randrange(self.users))["id"]
                items = [self.someone()] + [_user(rng.randrange(self.users)) for _ in range(9)]
                self.put("user-followers", f"{owner}-time{n}", {"followers": items, "time": 1, "hasMore": True})
            else:
                items = [_post(rng, aweme * 10 + i, self.someone() if i == 0 else _user(n + i)) for i in range(10)]
                self.put("challenge-posts", f"{n % 97}-cursor{n}", {"videos": items, "cursor": "10", "hasMore": True})
        return self.written, self.target_refs


def _write_day(args: tuple[str, date, int, int, int]) -> tuple[int, int]:
    root, day, objects, users, seed = args
    return DayWriter(Path(root), day, users, seed).write(objects)


def generate(root: Path, days: list[date], objects: int, users: int, seed: int) -> tuple[int, int]:
    per_day = objects // len(days)
    jobs = [(str(root), day, per_day, users, seed) for day in days]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_write_day, jobs)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects in the archive (default 1,000,000)")
    parser.add_argument("--days", type=int, default=30, help="days they are spread over (default 30)")
    parser.add_argument("--users", type=int, default=200_000, help="distinct users in the archive (default 200,000)")
    parser.add_argument("--workers", type=int, default=8, help="erasure read threads (default 8, as tiklive erase)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="erasure-bench-"))
    try:
        days = [FIRST_DAY + timedelta(days=i) for i in range(args.days)]
        started = time.monotonic()
        written, target_refs = generate(tmp / "archive", days, args.objects, args.users, args.seed)
        print(
            f"archive: {written:,} objects over {len(days)} days, {args.users:,} users, generated in "
            f"{time.monotonic() - started:.1f}s; the target appears in ~{target_refs:,} of them by construction"
        )
        store = LocalStore(tmp / "archive")
        started = time.monotonic()
        with open_warehouse(str(tmp / "warehouse.duckdb")) as wh:
            load_days(store, wh, days, index_store=store, processes=2)
            index_rows = wh.row_count("archive_index")
        index_bytes = sum(info.size for info in store.list("index/"))
        print(
            f"warehouse load with the index: {time.monotonic() - started:.1f}s; {index_rows:,} index rows, "
            f"index parts {index_bytes / 1e6:.1f} MB"
        )

        started = time.monotonic()
        indexed = erase_user(store, None, TARGET_ID, TARGET, workers=args.workers)
        index_seconds = time.monotonic() - started
        started = time.monotonic()
        full = erase_user(store, None, TARGET_ID, TARGET, workers=args.workers, use_index=False)
        full_seconds = time.monotonic() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    refs = len(full.keys)
    read = indexed.bodies_read + indexed.index_parts_read
    same = indexed.keys == full.keys and indexed.redacted == full.redacted
    speedup = full_seconds / index_seconds if index_seconds else float("inf")
    print(
        f"objects referring to the user (the full scan's plan): {refs:,} "
        f"({len(full.deleted):,} deleted, {len(full.redacted):,} redacted)"
    )
    print(f"full scan:    {full_seconds:8.2f}s, {full.scanned_objects:,} object bodies read")
    print(
        f"via index:    {index_seconds:8.2f}s, {read:,} objects read ({indexed.index_parts_read} index parts + "
        f"{indexed.bodies_read:,} bodies; {indexed.objects_named:,} objects named, the rest decided by key)"
    )
    print(
        f"read / referring = {read / max(refs, 1):.3f} (target <= 2); time ratio = {speedup:.1f}x (target >= 50); "
        f"same plan: {same}"
    )
    problems = []
    if read > 2 * refs:
        problems.append(f"read {read} > 2 x {refs}")
    if speedup < 50:
        problems.append(f"time ratio {speedup:.1f} < 50")
    if not same:
        problems.append("the plans differ")
    verdict = "PASS" if not problems else "FAIL"
    detail = "; ".join(problems) or f"{read:,} read for {refs:,} referring objects, {speedup:.0f}x faster"
    print(f"VERDICT: {verdict}: {detail} ({written:,} objects, {len(days)} days)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

"""Benchmark: what compaction saves on a 30-day archive in S3, R2 and B2, and what it costs replay.

Generates a synthetic archive on a local store in a temp dir: ``--days`` days (default 30) of ``--per-day`` raw
objects each (default 20,000, the low end of a real day's 20-50k), gzip JSON in the sandbox's shapes, with a real
day's endpoint mix (post details 40 %, comment pages 22 %, account listings 12 %, follower and following pages
14 %, comment replies 7 %, profiles 3 %, user-id lookups 2 %) and their gzip sizes (mostly 2-5 KB). Bodies come
from a pool per endpoint (made from :class:`tiklive_assets.sandbox.Corpus`), so writing the archive costs file
writes only; every object has its own key.

It then, for one day, times the replay (``parse_day``, the serial local path and two parser processes) from the
loose objects; compacts every day (``compact_day``: bundle written, read back and checked byte for byte, loose
objects deleted), timing it; replays the same day from its bundles and checks the tables are identical; and
prints the object count, bytes and the monthly bill of the archive before and after compaction on each provider
(``pricing.DEFAULT_PRICES``) in each tier of the retention policy (hot for 30 days, warm until 365, cold after), each
object billed by its class's rules (128 KiB minimum in S3 Standard-IA, 40 KiB index per object in Glacier), the
lifecycle transitions (one request per object into warm, and again into cold) and compaction's own requests (a GET
per loose object, a PUT per bundle)::

    .venv/bin/python benchmarks/compaction.py                    # 30 days x 20,000 objects
    .venv/bin/python benchmarks/compaction.py --per-day 5000     # quicker

Targets: objects after <= 1 % of objects before; S3 warm and cold bills after <= half of before (transitions
included); replay from bundles >= 0.8 x the objects/s from loose objects; identical tables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tiklive_assets.compliance.compaction import compact_day, storage_costs
from tiklive_assets.compliance.retention import RetentionPolicy
from tiklive_assets.pricing import DEFAULT_PRICES, PROVIDERS
from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.storage.bundles import bundles_of_day
from tiklive_assets.storage.keys import raw_key, slug_page
from tiklive_assets.warehouse import TABLE_NAMES, parse_day
from tiklive_assets.warehouse.reader import parser_pool

FIRST_DAY = date(2026, 6, 1)
POOL = 400  # bodies per endpoint
MIX = {  # endpoint -> share of a day's objects
    "post-detail": 0.40,
    "post-comments": 0.22,
    "user-posts": 0.12,
    "user-followers": 0.08,
    "user-following": 0.06,
    "post-comment-replies": 0.07,
    "userinfo-by-id": 0.03,
    "userid": 0.02,
}


def body_pool(seed: int) -> dict[str, list[dict | list]]:
    """Bodies per endpoint in the sandbox's shapes, sized like real pages (a listing of 4 posts, 12 comments...)."""
    corpus = Corpus(seed=seed, accounts=8)
    now = datetime(2026, 6, 15, 12, tzinfo=UTC).timestamp()
    rng = random.Random(seed)
    pools: dict[str, list] = {name: [] for name in MIX}
    authors = corpus.all_authors()
    posts = [p for a in authors for p in corpus.visible_posts(a, now)]
    while min(len(v) for v in pools.values()) < POOL:
        account = rng.choice(authors)
        post = rng.choice(posts)
        pools["post-detail"].append(corpus.detail_item(post, now))
        listing = rng.sample(posts, 4)
        pools["user-posts"].append(
            {
                "videos": [corpus.listing_item(p, now) for p in listing],
                "cursor": str(listing[-1].ct_ms),
                "hasMore": True,
            }
        )
        comments = corpus.comments(post.aweme_id, now)[:12]
        pools["post-comments"].append(
            {
                "comments": [corpus.comment_item(c, post.aweme_id, now) for c in comments],
                "cursor": "12",
                "hasMore": True,
            }
        )
        parent = comments[0] if comments else None
        replies = [r for r in parent.replies if r.ct <= now][:6] if parent else []
        pools["post-comment-replies"].append(
            {"comments": [corpus.comment_item(r, post.aweme_id, now, parent) for r in replies], "cursor": "6"}
        )
        times, followers = corpus.follow_list(account, "followers", now)
        pools["user-followers"].append({"followers": followers[:8], "time": times[:8][-1], "hasMore": True})
        times, following = corpus.follow_list(account, "following", now)
        pools["user-following"].append({"followings": following[:8], "time": times[:8][-1], "hasMore": True})
        pools["userinfo-by-id"].append(corpus.profile(account, now))
        pools["userid"].append({"id": account.id})
    return pools


# gzip size each endpoint's objects are padded to (bytes, low..high): the sandbox's bodies are terser than real
# responses, whose signed CDN URLs and extra fields make most of them 2-5 KB gzip
TARGET_SIZES = {
    "post-detail": (2_200, 4_200),
    "post-comments": (3_000, 5_200),
    "user-posts": (3_500, 5_500),
    "user-followers": (2_500, 4_500),
    "user-following": (2_500, 4_500),
    "post-comment-replies": (1_800, 3_500),
    "userinfo-by-id": (1_500, 2_500),
    "userid": (150, 400),
}
_POOLS: dict[str, list[bytes]] = {}


def gzip_pool(seed: int) -> dict[str, list[bytes]]:
    """The bodies as gzip, each padded with signed CDN URLs (random tokens: they do not compress, as real ones do
    not) up to a size drawn from its endpoint's range."""
    rng = random.Random(seed)
    out: dict[str, list[bytes]] = {}
    for endpoint, bodies in body_pool(seed).items():
        low, high = TARGET_SIZES[endpoint]
        out[endpoint] = []
        for body in bodies:
            target = rng.randint(low, high)
            data = gzip.compress(json.dumps(body, separators=(",", ":")).encode(), mtime=0)
            if len(data) < target and isinstance(body, dict):
                token = "".join(rng.choices(TOKEN_CHARS, k=int((target - len(data)) / 0.76)))
                body = {
                    **body,
                    "cdn_urls": [
                        f"https://p16-sign.tiktokcdn.com/obj/{token[i : i + 160]}" for i in range(0, len(token), 160)
                    ],
                }
                data = gzip.compress(json.dumps(body, separators=(",", ":")).encode(), mtime=0)
            out[endpoint].append(data)
    return out


TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _write_day(args: tuple[str, date, int, int]) -> list[int]:
    """Write one day's objects straight into the LocalStore layout (no fsync per file: a fixture); their sizes.
    Each object is a pool body with its own fetch time in the gzip header (MTIME, bytes 4-8)."""
    root, day, count, seed = args
    rng = random.Random(seed * 1000 + day.toordinal())
    fetched = int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp())
    made: set[Path] = set()
    sizes = []
    endpoints = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    for i, endpoint in enumerate(endpoints):
        pool = _POOLS[endpoint]
        gz = pool[rng.randrange(len(pool))]
        data = gz[:4] + (fetched + i % 36_000).to_bytes(4, "little") + gz[8:]
        slug = str(7_100_000_000_000_000_000 + i) if endpoint == "post-detail" else slug_page(1000 + i, "cursor", 0)
        path = Path(root) / raw_key(day, endpoint, slug)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(data)
        sizes.append(len(data))
    return sizes


def generate(root: Path, days: list[date], per_day: int, seed: int) -> list[int]:
    _POOLS.update(gzip_pool(seed))  # built once, inherited by the forked writers
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return [s for sizes in pool.map(_write_day, [(str(root), d, per_day, seed) for d in days]) for s in sizes]


def replay_rate(store: LocalStore, day: date, processes: int, repeat: int = 2) -> tuple[float, object]:
    """The best objects/s of ``repeat`` parses of ``day`` (the pool started before the clock), and the tables."""
    pool = parser_pool(processes) if processes > 1 else None
    best, parsed = 0.0, None
    try:
        for _ in range(repeat):
            started = time.monotonic()
            parsed = parse_day(store, day, pool=pool)
            best = max(best, parsed.objects / (time.monotonic() - started))
        return best, parsed
    finally:
        if pool is not None:
            pool.shutdown()


def bills(sizes: list[int], writes: int, reads: int) -> dict[str, dict[str, float]]:
    """Per provider: monthly bill of the objects in each tier, the transitions, and one-time requests."""
    out = {}
    for name in PROVIDERS:
        prices = DEFAULT_PRICES.provider(name)
        costs = storage_costs(sizes, prices)
        hot = prices.tier("hot")
        requests = writes * hot.put_per_1000 / 1000 + reads * hot.get_per_1000 / 1000
        out[name] = {**costs.monthly, "transitions": costs.transitions, "requests": requests}
    return out


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one linear script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="archive days (default 30)")
    parser.add_argument("--per-day", type=int, default=20_000, help="raw objects a day (default 20,000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    policy = RetentionPolicy()
    days = [FIRST_DAY + timedelta(days=n) for n in range(args.days)]
    scratch = Path(tempfile.mkdtemp(prefix="tiklive-compaction-bench-"))
    try:
        store = LocalStore(scratch / "archive")
        t0 = time.monotonic()
        sizes = generate(store.root, days, args.per_day, args.seed)
        print(
            f"generated {len(sizes):,} objects ({sum(sizes) / 2**20:,.0f} MiB) over {len(days)} days in "
            f"{time.monotonic() - t0:.0f}s"
        )
        ordered = sorted(sizes)
        pct = {p: ordered[int(p / 100 * (len(ordered) - 1))] for p in (5, 25, 50, 75, 95)}
        print("object sizes (bytes): " + ", ".join(f"p{p} {v:,}" for p, v in pct.items()))
        probe = days[len(days) // 2]
        loose_serial, loose_parsed = replay_rate(store, probe, 1)
        loose_pool, _ = replay_rate(store, probe, 2)
        t0 = time.monotonic()
        after: list[int] = []
        for day in days:
            result = compact_day(store, day)
            after += result.sizes_after
        took = time.monotonic() - t0
        bundles = sum(len(bundles_of_day(store, d)) for d in days)
        loose_left = sum(1 for _ in store.list("tiklive-raw/"))
        print(
            f"compacted {len(sizes):,} objects into {bundles:,} bundles in {took:.0f}s "
            f"({len(sizes) / took:,.0f} objects/s, verified byte for byte); {loose_left} loose left"
        )
        bundled_serial, bundled_parsed = replay_rate(store, probe, 1)
        bundled_pool, _ = replay_rate(store, probe, 2)
        identical = all(
            loose_parsed.tables[n].equals(bundled_parsed.tables[n])  # type: ignore[attr-defined]
            for n in TABLE_NAMES
        )
        print(
            f"replay of {probe} ({args.per_day:,} objects), objects/s: loose {loose_serial:,.0f} (1 process), "
            f"{loose_pool:,.0f} (2); bundled {bundled_serial:,.0f} (1), {bundled_pool:,.0f} (2); "
            f"identical tables: {identical}"
        )
        before_bills = bills(sizes, writes=0, reads=0)
        after_bills = bills(after, writes=bundles, reads=len(sizes))  # compaction: a GET per object, a PUT a bundle
        print(
            f"\nobjects {len(sizes):,} -> {len(after):,} ({len(after) / len(sizes):.4%}); bytes "
            f"{sum(sizes) / 2**20:,.1f} -> {sum(after) / 2**20:,.1f} MiB"
        )
        print(
            f"monthly bill of these {len(days)} days in each tier (hot < {policy.warm_after_days} days, "
            f"warm < {policy.cold_after_days}, cold after), USD; transitions and compaction requests: once"
        )
        print(f"{'provider':<9}{'tier':<6}{'before':>12}{'after':>12}{'ratio':>8}")
        for name in PROVIDERS:
            prices = DEFAULT_PRICES.provider(name)
            for tier in ("hot", "warm", "cold"):
                b, a = before_bills[name][tier], after_bills[name][tier]
                ratio = a / b if b else 0.0
                print(f"{name:<9}{tier:<6}{b:>12.4f}{a:>12.4f}{ratio:>8.3f}  ({getattr(prices, tier)})")
            b, a = before_bills[name]["transitions"], after_bills[name]["transitions"]
            print(f"{name:<9}{'moves':<6}{b:>12.4f}{a:>12.4f}{(a / b if b else 0):>8.3f}  (hot->warm->cold, once)")
            reqs = after_bills[name]["requests"]
            print(f"{name:<9}{'reqs':<6}{0.0:>12.4f}{reqs:>12.4f}{'':>8}  (compaction GETs and PUTs, once)")
        s3b, s3a = before_bills["s3"], after_bills["s3"]
        warm_ok = s3a["warm"] + (s3a["transitions"] + s3a["requests"]) / 12 <= 0.5 * (
            s3b["warm"] + s3b["transitions"] / 12
        )
        cold_ok = s3a["cold"] <= 0.5 * s3b["cold"]
        fewer = len(after) <= 0.01 * len(sizes)
        fast = bundled_serial >= 0.8 * loose_serial
        ok = warm_ok and cold_ok and fewer and identical and fast and loose_left == 0
        verdict = "PASS" if ok else "FAIL"
        print(
            f"VERDICT: {verdict}: objects {len(sizes):,} -> {len(after):,}; S3 warm ${s3b['warm']:.2f} -> "
            f"${s3a['warm']:.2f}/month, cold ${s3b['cold']:.2f} -> ${s3a['cold']:.2f}/month, transitions "
            f"${s3b['transitions']:.2f} -> ${s3a['transitions']:.4f}; replay from bundles "
            f"{bundled_serial / loose_serial:.2f} x loose; tables identical: {identical}"
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

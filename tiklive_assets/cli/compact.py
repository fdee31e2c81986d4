"""``tiklive compact``: pack archive days past the hot period into one bundle per endpoint, so cold storage pays.

Exit status 0; 1 when a bundle did not read back as the loose objects it packs (nothing of that endpoint was
deleted); 2 for a usage problem, a day still in the hot period, or a store or configuration that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta

from tiklive_assets.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    add_config,
    add_home,
    fail,
    parse_day,
    use_location,
)

SUMMARY = "pack archive days past the hot period into one bundle per endpoint"
DESCRIPTION = (
    "Pack each day's raw responses (TikLiveAPI and Research API) into one bundle per endpoint once the day is past "
    "the hot period (compaction.hot_days in tiklive.yaml, default 30 days): cold storage classes bill every object "
    "as at least 128 KiB and charge a request per object for each lifecycle transition, so tiering thousands of "
    "3 KB responses costs many times what a few bundles cost. Every bundle is read back and checked byte for byte "
    "against the loose objects before they are deleted; keys under a legal hold stay loose, since deleting them is "
    "what a hold forbids. Replay, erasure and holds read bundles as they read loose objects. Rerunning packs only "
    "what is still loose; an interrupted run is finished by the next one."
)
EXAMPLES = (
    "tiklive compact --older-than-hot --dry-run",
    "tiklive compact --older-than-hot",
    "tiklive compact --day 2026-05-01",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "compact", SUMMARY, textwrap.fill(DESCRIPTION, 110), EXAMPLES)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", type=parse_day, metavar="YYYY-MM-DD", help="compact this archive day")
    which.add_argument(
        "--older-than-hot",
        action="store_true",
        help="compact every day older than compaction.hot_days that still holds loose raw objects",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be packed; write and delete nothing")
    add_home(parser)
    add_config(parser)


def days_with_loose_objects(store, before: date) -> list[date]:
    """Archive days older than ``before`` that still hold loose raw objects, from listings in key order (each
    listing stops at the first key of a day not older than ``before``)."""
    from tiklive_assets.storage.keys import RAW_PREFIX, RESEARCH_PREFIX, raw_key_day

    days: set[date] = set()
    for prefix in (RAW_PREFIX, RESEARCH_PREFIX):
        for info in store.list(prefix + "/"):
            day = raw_key_day(info.key, prefix)
            if day is None:
                continue
            if day >= before:
                break
            days.add(day)
    return sorted(days)


def run(args: argparse.Namespace) -> int:
    from tiklive_assets.compliance.compaction import CompactionError
    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.storage import StoreError
    from tiklive_assets.tracking import ConfigError

    root = use_location(args)
    resources = default_resources()
    try:
        config = resources["tracking"].load()
        store = resources["archive_store"].open()
    except (ConfigError, StoreError, OSError) as exc:
        return fail(exc)
    hot_days = config.compaction.hot_days
    cutoff = datetime.now(UTC).date() - timedelta(days=hot_days - 1)  # the first day still hot
    try:
        if args.day is not None:
            if args.day >= cutoff:
                return fail(
                    f"{args.day} is still in the hot period (compaction.hot_days: {hot_days}): it can be compacted "
                    f"from {args.day + timedelta(days=hot_days)}; hot days stay loose, where capture and reruns "
                    "still write",
                    EXIT_USAGE,
                )
            days = [args.day]
        else:
            days = days_with_loose_objects(store, cutoff)
        return _compact(store, root, config, days, args.dry_run)
    except CompactionError as exc:
        return fail(f"stopped: {exc}", EXIT_ERROR)
    except StoreError as exc:
        return fail(f"stopped: {exc}; rerun the same command once the store is reachable: it finishes the day")


def _compact(store, root, config, days: list[date], dry_run: bool) -> int:
    from tqdm import tqdm

    from tiklive_assets.compliance.compaction import compact_day, raw_day_prefix, storage_costs
    from tiklive_assets.compliance.legal_hold import LegalHolds
    from tiklive_assets.state import StateDB
    from tiklive_assets.storage.keys import RAW_PREFIX, RESEARCH_PREFIX

    with StateDB.from_url(root.state_url) as state:
        holds = LegalHolds(state).snapshot()
    verb = "would compact" if dry_run else "compacting"
    print(f"{verb} {len(days)} day(s) in {store.describe()}" + (" (dry run: nothing is written)" if dry_run else ""))
    before: list[int] = []
    after: list[int] = []
    packed = held = deleted = 0
    for day in days:
        for prefix in (RAW_PREFIX, RESEARCH_PREFIX):
            loose = sum(1 for _ in store.list(raw_day_prefix(day, prefix)))
            if not loose:
                continue
            with tqdm(total=loose, desc=f"{prefix} {day}", unit="obj", file=sys.stderr, leave=False) as bar:

                def progress(endpoint: str, objects: int, bar: tqdm = bar) -> None:
                    bar.update(objects)

                result = compact_day(store, day, holds=holds, archive_prefix=prefix, dry_run=dry_run, progress=progress)
            print(result.summary())
            before += result.sizes_before
            after += result.sizes_after
            packed += result.objects_packed
            held += len(result.held_left_loose)
            deleted += result.loose_deleted
    provider = config.compaction.provider
    prices = config.storage_prices.provider(provider)
    cost_before, cost_after = storage_costs(before, prices), storage_costs(after, prices)
    print(
        f"{'would pack' if dry_run else 'packed'} {packed:,} object(s); {deleted:,} loose object(s) deleted; "
        f"{held:,} held key(s) left loose; objects {len(before):,} -> {len(after):,}"
    )
    for tier in ("warm", "cold"):
        print(
            f"  {provider} {tier} tier: ${cost_before.monthly[tier]:,.4f} -> ${cost_after.monthly[tier]:,.4f} a month"
        )
    print(
        f"  {provider} lifecycle transitions (once): ${cost_before.transitions:,.4f} -> ${cost_after.transitions:,.4f}"
    )
    return EXIT_OK

"""``tiklive cost``: this month's credits from the ledger and the storage bill of the store, projected to the month.

Read-only: it reads the state database's credit ledger and lists the archive store once; it never calls the API.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from datetime import date

from tiklive_assets.cli.common import EXIT_OK, EXIT_USAGE, add_command, add_config, add_home, fail, use_location

DESCRIPTION = (
    "Print what the archive costs this month (UTC). Credits: spent so far from the state database's credit "
    "ledger, by source (accounts, hashtags, keywords, music, videos) and endpoint; the mean a day over the last 7 "
    "complete days and its change against the 7 before; the projected month (spent, plus that mean for each day "
    "left). Storage: one listing of the archive store, by tier as the retention policy ages compacted bundles (warm "
    "from 30 days, cold from 365; loose objects stay hot). On an S3-compatible store a bundle's age counts from "
    "its creation, as bucket lifecycle rules count it (compaction creates a bundle about 30 days after its day, and "
    "an erasure rewrites it anew); on local disk from the archive day it holds. Then the projected monthly "
    "bill on AWS S3, Cloudflare R2 and Backblaze B2 at the prices of tiklive.yaml's storage_prices (defaults: list "
    "prices), each object billed by its class's rules (S3 Standard-IA bills every object as at least 128 KiB), "
    "with the month's write requests and lifecycle transitions (only where the storage class changes: R2's warm "
    "and cold share one class, B2 has one). The provider compaction.provider names is marked. "
    "Exit status 0; 2 when the state database or the store cannot be read."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = add_command(
        sub,
        "cost",
        "this month's credits and storage bill, projected to the month",
        textwrap.fill(DESCRIPTION, 110),
        examples=["tiklive cost", "tiklive cost --json | jq .credits.projected_month"],
    )
    add_home(parser)
    add_config(parser)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def figures(today: date) -> dict:
    """The month of ``today``: the credits forecast and each provider's bill, as plain values."""
    from tiklive_assets.defs.resources import default_resources
    from tiklive_assets.state import StateDB
    from tiklive_assets.warehouse import cost

    resources = default_resources()
    config = resources["tracking"].load()
    root = resources["data_root"].root()
    state = StateDB.from_url(root.state_url)
    try:
        credits = cost.credits_forecast(state, today)
    finally:
        state.close()
    store = resources["archive_store"].open()
    usage = cost.store_usage(store, config.storage_prices, today)
    bills = cost.bills(usage, config.storage_prices)
    return {
        "as_of": str(today),
        "store": store.describe(),
        "provider": config.compaction.provider,
        "ages_from": "object creation" if cost.from_creation(store) else "archive day",
        "credits": credits.as_json(),
        "storage": {
            "objects": usage.objects,
            "bytes": usage.bytes,
            "tiers": {
                t: {"objects": u.objects, "bytes": u.bytes, "billed_bytes": u.billed} for t, u in usage.tiers.items()
            },
            "writes_this_month": usage.writes,
            "written_bytes_this_month": usage.written_bytes,
            "transitions_this_month": usage.transitions,
        },
        "bills_usd": {provider: bill.as_json() for provider, bill in bills.items()},
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def show(found: dict, out) -> None:
    credits, storage = found["credits"], found["storage"]
    change = credits["change_against_previous_7_days"]
    trend = "" if change is None else f" ({change:+.0%} against the 7 before)"
    print(f"month {credits['month']} (UTC), as of {found['as_of']}", file=out)
    print(
        f"credits: {credits['spent']:,} spent this month; {credits['per_day_last_7_days']:,} a day over the last 7 "
        f"days{trend}; projected {credits['projected_month']:,} for the month",
        file=out,
    )
    for what in ("by_source", "by_endpoint"):
        shown = ", ".join(f"{k} {v:,}" for k, v in credits[what].items()) or "none"
        print(f"  {what.replace('_', ' ')}: {shown}", file=out)
    print(
        f"storage ({found['store']}): {storage['objects']:,} objects, {_mb(storage['bytes'])}; "
        f"bundles age from their {found['ages_from']}",
        file=out,
    )
    for tier, usage in storage["tiers"].items():
        print(f"  {tier:<5} {usage['objects']:>10,} objects  {_mb(usage['bytes']):>14}", file=out)
    moved = storage["transitions_this_month"]
    print(
        f"  this month: {storage['writes_this_month']:,} objects written ({_mb(storage['written_bytes_this_month'])}), "
        f"{moved['warm']:,} move to warm, {moved['cold']:,} to cold",
        file=out,
    )
    print("projected monthly storage bill (USD):", file=out)
    print(
        f"  {'':3}{'provider':<9}{'hot':>10}{'warm':>10}{'cold':>10}{'writes':>10}{'moves':>10}{'total':>11}", file=out
    )
    for provider, bill in found["bills_usd"].items():
        tiers = bill["storage_by_tier"]
        mark = "*" if provider == found["provider"] else " "
        print(
            f"  {mark}  {provider:<9}{tiers['hot']:>10.4f}{tiers['warm']:>10.4f}{tiers['cold']:>10.4f}"
            f"{bill['writes']:>10.4f}{bill['transitions']:>10.4f}{bill['total']:>11.4f}",
            file=out,
        )
    print("  * compaction.provider in tiklive.yaml", file=out)


def run(args: argparse.Namespace, out=None) -> int:
    from tiklive_assets.warehouse.cost import now_utc

    out = out or sys.stdout
    use_location(args)
    try:
        found = figures(now_utc())
    except Exception as exc:  # noqa: BLE001 - one line saying what could not be read, never a traceback
        return fail(f"cannot compute the cost ({type(exc).__name__}: {exc})", EXIT_USAGE)
    if args.json:
        print(json.dumps(found, indent=2), file=out)
    else:
        show(found, out)
    return EXIT_OK

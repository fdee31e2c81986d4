"""The cost forecast asset: each day, the month's credits from the ledger and the store's storage bill, charted."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from tiklive_assets.defs.resources import ArchiveStoreResource, DataRootResource, TrackingConfigResource
from tiklive_assets.defs.warehouse.assets import CAPTURE_KEYS, day_asset, partition_days, report_day, run_result
from tiklive_assets.warehouse import charts, cost
from tiklive_assets.warehouse.mart_text import since


@day_asset(deps=CAPTURE_KEYS, kinds={"python"})
def cost_forecast(
    context: dg.AssetExecutionContext,
    data_root: DataRootResource,
    archive_store: ArchiveStoreResource,
    tracking: TrackingConfigResource,
) -> dg.MaterializeResult:
    """What the archive costs in the month of each day: credits spent from the state database's ledger (by source
    and endpoint), the mean a day over the last 7 complete days and the projected month; the store's objects and
    bytes per tier (the retention policy tiers compacted bundles: warm from 30 days, cold from 365, counted from the
    bundle's creation on an S3-compatible store as its lifecycle rules count, from the day it holds on local disk;
    loose objects stay hot) and the projected monthly storage bill on S3, R2 and B2, each object billed by its
    class's rules (the 128 KiB minimum of S3 Standard-IA) with the month's write requests and lifecycle transitions
    (only where the storage class changes).
    The store is listed once per run, as it stands then. Same figures as `tiklive cost`."""
    days = partition_days(context)
    config = tracking.load()
    store = archive_store.open()
    today = datetime.now(UTC).date()
    usage = cost.store_usage(store, config.storage_prices, min(days[-1], today))
    bills = cost.bills(usage, config.storage_prices)
    bill_parts: dict[str, dict[str, float]] = {
        p: {
            **{str(t): v for t, v in b.storage.items()},
            "writes": b.writes,
            "transitions": b.transitions,
            "total": b.total,
        }
        for p, b in bills.items()
    }
    with data_root.state() as state:
        forecasts = {day: cost.credits_forecast(state, day) for day in days}
    for day, forecast in forecasts.items():
        first = since(day)
        shown = [(d, n) for d, n in sorted({**forecast.trend, **_totals(forecast)}.items()) if d >= first]
        figures: dict[str, Any] = {
            "credits_spent_this_month": forecast.spent,
            "credits_per_day_last_7_days": round(forecast.per_day, 1),
            "credits_projected_month": forecast.projected,
            "credits_by_source": dg.MetadataValue.json(forecast.by_source),
            "credits_by_endpoint": dg.MetadataValue.json(forecast.by_endpoint),
        }
        if day == days[-1]:
            figures["chart"] = dg.MetadataValue.md(
                charts.cost_forecast(shown, forecast.per_day, forecast.projected, bill_parts, day)
            )
        report_day(context, context.asset_key, day, figures)
    return run_result(
        days,
        data_root.root().home,
        stored_objects=usage.objects,
        stored_bytes=usage.bytes,
        storage_by_tier=dg.MetadataValue.json(
            {t: {"objects": u.objects, "bytes": u.bytes, "billed_bytes": u.billed} for t, u in usage.tiers.items()}
        ),
        storage_bill_usd=dg.MetadataValue.json({p: b.as_json() for p, b in bills.items()}),
        provider=config.compaction.provider,
        projected_storage_usd=round(bills[config.compaction.provider].total, 4),
    )


def _totals(forecast: cost.CreditsForecast) -> dict:
    return {d: sum(endpoints.values()) for d, endpoints in forecast.by_day.items()}

"""How every asset presents itself in the Dagster UI: owner, domain and layer tags, kinds that name the backends
this deployment is configured with (so the graph shows "local-disk" and "duckdb" on a laptop, "s3" and "postgres" in
production, never a backend that is not in use), and when the data team can count on it (freshness policies).

Freshness: today's capture lands by 06:00 UTC (the daily schedule starts it at 03:15, leaving room for a retry);
a day's warehouse tables, exports and marts by 01:00 the next day (the load starts at 00:30 with the closed
archive). The daemon evaluates the policies; an asset past its deadline shows as failing freshness on its page.

Applied once to the whole code location by ``definitions.py``; the assets themselves declare only what they are.
The backends are read from the environment when the definitions load (never at import time), the same variables
the resources read (``TIKLIVE_ARCHIVE_BUCKET``, ``TIKLIVE_S3_ENDPOINT_URL``, ``TIKLIVE_WAREHOUSE_URL``).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from tiklive_assets import settings

OWNER = "team:data-engineering"
DOMAIN = "tiktok"
# The layer of each group: raw archive (capture, and its compaction into bundles), derived tables and files
# (warehouse), researcher data (research)
LAYERS = {"capture": "raw", "compaction": "raw", "warehouse": "warehouse", "research": "research"}
KIND_TAG = "dagster/kind/"
FRESHNESS = {
    # materialized between 00:00 and 06:00 UTC every day
    "capture": dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6)),
    # materialized between 00:00 and 01:00 UTC every day (yesterday's partition)
    "warehouse": dg.FreshnessPolicy.cron(deadline_cron="0 1 * * *", lower_bound_delta=timedelta(hours=1)),
}


def archive_kind() -> str:
    """The kind badge of the archive store: ``local-disk`` unless a bucket is set; then the provider the S3
    endpoint names (Cloudflare R2, Backblaze B2) or ``s3``."""
    if not settings.archive_bucket():
        return "local-disk"
    endpoint = (settings.s3_endpoint_url() or "").lower()
    if "r2.cloudflarestorage.com" in endpoint:
        return "r2"
    if "backblazeb2.com" in endpoint:
        return "b2"
    return "s3"


def warehouse_kind() -> str:
    """``postgres`` when the warehouse URL is a Postgres one, else ``duckdb`` (the embedded default)."""
    return "postgres" if settings.warehouse_url().startswith(("postgres://", "postgresql://")) else "duckdb"


def _layer(spec: dg.AssetSpec) -> str:
    key = spec.key.to_user_string()
    if key.startswith("mart_"):
        return "mart"
    if key in ("parquet_exports", "account_csvs"):
        return "export"
    return LAYERS.get(spec.group_name or "", "other")


def _kinds(spec: dg.AssetSpec) -> set[str]:
    """Replace the placeholders ``archive`` and ``warehouse`` an asset declares with the configured backends."""
    backends = {"archive": archive_kind(), "warehouse": warehouse_kind()}
    return {backends.get(kind, kind) for kind in spec.kinds}


def present(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The spec with its owner, ``domain``/``layer`` tags, the configured backends' kinds and its group's
    freshness policy."""
    tags = {k: v for k, v in spec.tags.items() if not k.startswith(KIND_TAG)}  # kinds are set below, anew
    tags.update({"domain": DOMAIN, "layer": _layer(spec)})
    return spec.replace_attributes(
        owners=[*spec.owners] or [OWNER],
        tags=tags,
        kinds=_kinds(spec),
        freshness_policy=spec.freshness_policy or FRESHNESS.get(spec.group_name or ""),
    )

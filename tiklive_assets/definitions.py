"""The Dagster code location: everything under ``defs/``, loaded by folder, each asset then presented the same way
(owner, tags, the configured backends' kinds, freshness: ``defs/catalog.py``). Nothing here opens a connection."""

from pathlib import Path

import dagster as dg

from tiklive_assets.defs.catalog import present


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # An asset imported by several modules (checks, jobs, sensors) is collected once per module: keep one.
    unique = list({id(asset): asset for asset in loaded.assets or []}.values())
    return dg.Definitions(
        assets=[
            asset.map_asset_specs(present) if isinstance(asset, dg.AssetsDefinition) and asset.specs else asset
            for asset in unique
        ],
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=loaded.resources,
        executor=loaded.executor,
        loggers=loaded.loggers,
        metadata=loaded.metadata,
    )

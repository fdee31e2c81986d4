"""The warehouse resource: which backend to load (``TIKLIVE_WAREHOUSE_URL``); it connects only when an asset asks."""

from pathlib import Path

import dagster as dg

from tiklive_assets.warehouse import Warehouse, default_url, open_warehouse


class WarehouseResource(dg.ConfigurableResource):
    """``url``: ``postgresql://…`` or a DuckDB file path. Unset: ``TIKLIVE_WAREHOUSE_URL``, else
    ``TIKLIVE_HOME/warehouse.duckdb``. ``open(home)`` returns an unconnected warehouse (use it with ``with``)."""

    url: str | None = None

    def resolved_url(self, home: Path | None = None) -> str:
        return self.url or default_url(home)

    def open(self, home: Path | None = None) -> Warehouse:
        return open_warehouse(self.resolved_url(home))


def warehouse_resources() -> dict[str, dg.ConfigurableResource]:
    return {"warehouse": WarehouseResource()}


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=warehouse_resources())

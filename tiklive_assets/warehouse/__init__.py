"""The warehouse: tables derived from the raw archive only, loaded into DuckDB or Postgres, exported and marted.

It knows the archive's key layout and the store's read API, nothing of the API clients: every table is a pure
function of archived objects, which is what makes ``tiklive replay`` reproduce it.

* :mod:`.schema`    the tables, declared once for both backends and the Parquet exports
* :mod:`.raw`       one archived object: decoding, fetch time, error responses
* :mod:`.parse`     archived objects -> Arrow tables (``DayParser``), dispatching each object to the parser of its
  endpoint's parse target: :mod:`.parse_posts`, :mod:`.parse_users`, :mod:`.parse_follows`, :mod:`.parse_comments`
* :mod:`.arrow`     rows -> Arrow tables with the declared schemas
* :mod:`.reader`    listing a day, bounded parallel GETs, ``parse_day``
* :mod:`.backends`  ``open_warehouse(url)``: DuckDB file or Postgres, ``load_day`` idempotent per day
* :mod:`.exports`   Parquet per table per day and CSV per tracked account, swapped in atomically
* :mod:`.marts`     the marts file: DuckDB views over the Parquet exports; :mod:`.charts` draws them
* :mod:`.replay`    rebuild a range of days
* :mod:`.drift`     schema drift: a day's field signature per endpoint against the last earlier day
"""

from .backends import (
    WAREHOUSE_URL,
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    WarehouseError,
    default_url,
    describe_url,
    open_warehouse,
)
from .exports import export_day, exported_days, write_account_csvs
from .marts import (
    MART_COLUMNS,
    MART_DESCRIPTIONS,
    MARTS,
    build_marts,
    default_marts_path,
    mart_chart,
    mart_row_count,
    query_marts,
    sparkline,
)
from .parse import DayParser, UnreadableObject
from .reader import ParsedDay, list_day, parse_day
from .replay import ReplayReport, day_range, load_days, replay
from .schema import TABLE_NAMES, TABLES

__all__ = [
    "MARTS",
    "MART_COLUMNS",
    "MART_DESCRIPTIONS",
    "TABLES",
    "TABLE_NAMES",
    "WAREHOUSE_URL",
    "DayParser",
    "DuckDBWarehouse",
    "ParsedDay",
    "PostgresWarehouse",
    "ReplayReport",
    "UnreadableObject",
    "Warehouse",
    "WarehouseError",
    "build_marts",
    "day_range",
    "default_marts_path",
    "default_url",
    "describe_url",
    "export_day",
    "exported_days",
    "list_day",
    "load_days",
    "mart_chart",
    "mart_row_count",
    "open_warehouse",
    "parse_day",
    "query_marts",
    "replay",
    "sparkline",
    "write_account_csvs",
]

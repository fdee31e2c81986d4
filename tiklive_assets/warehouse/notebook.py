"""The marts from Python: a query's answer as a pandas DataFrame, for analysts working in a notebook.

Analysts read the marts (``TIKLIVE_HOME/marts.duckdb``: views over the Parquet exports), never the live warehouse
file, which a run may be writing: DuckDB allows one writer per file. Each call opens the marts read-only and closes
them before returning, so a notebook never holds a lock that would stop the next run from rebuilding them::

    from tiklive_assets.warehouse.notebook import mart, query

    growth = mart("follower_growth")                       # the whole mart
    top = query("SELECT * FROM top_hashtags ORDER BY posts DESC LIMIT 10")
    week = query("SELECT * FROM daily_archive_summary WHERE day >= ?", ["2026-11-24"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd

from tiklive_assets import settings
from tiklive_assets.warehouse.marts import MART_COLUMNS, default_marts_path


class MartsUnavailable(RuntimeError):
    """The marts cannot be opened: not built yet, or a run is rebuilding them right now."""


def marts_path(home: Path | str | None = None) -> Path:
    """The marts file of a data root (default ``TIKLIVE_HOME``)."""
    return default_marts_path(Path(home).absolute() if home else settings.DataRoot.from_env().home)


def query(sql: str, params: Sequence[object] | None = None, *, home: Path | str | None = None) -> pd.DataFrame:
    """The rows of one SQL statement over the marts, as a DataFrame (``?`` placeholders take ``params``)."""
    path = marts_path(home)
    if not path.is_file():
        raise MartsUnavailable(
            f"no marts at {path} yet: every `tiklive run` builds them (try `tiklive run --sandbox` first), or pass "
            "home= (or set TIKLIVE_HOME) to the data root that holds them"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        busy = " A run is rebuilding the marts right now; try again when it finishes." if "lock" in str(exc) else ""
        raise MartsUnavailable(f"cannot open {path} read-only: {exc}.{busy}") from exc
    try:
        return con.execute(sql, list(params or [])).df()
    finally:
        con.close()


def mart(name: str, *, home: Path | str | None = None) -> pd.DataFrame:
    """One whole mart by name (``follower_growth``, ``video_virality``, ...), in its declared column order."""
    if name not in MART_COLUMNS:
        raise KeyError(f"no mart named {name!r}: the marts are {', '.join(sorted(MART_COLUMNS))}")
    columns = ", ".join(column[0] for column in MART_COLUMNS[name])
    return query(f"SELECT {columns} FROM {name}", home=home)

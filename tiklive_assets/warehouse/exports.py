"""Files for analysts: Parquet per table per day, and a CSV of posts per tracked account, each swapped in atomically.

Parquet: ``exports/<table>/dt=YYYY-MM-DD/part-0.parquet`` (zstd, the explicit schema of :mod:`.schema`), the
day's rows exactly as the warehouse loads them. For entity tables (posts, users, comments, music) that is the
entity as seen that day; the marts take the newest day. Every table gets a file every day, empty or not, so a
glob over a table never comes up empty once a day is exported. Exports are written from the parsed archive, not
read back from the live warehouse, so they never contend for its lock.

A file is written to a hidden temporary name in the same directory and renamed over the final name
(``os.replace``): a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tiklive_assets.crashpoints import crashpoint

from . import schema

PARQUET_NAME = "part-0.parquet"
CSV_COLUMNS = ("aweme_id", "create_time", "region", "title", "play_count", "digg_count", "comment_count", "share_count")


def day_dir(exports: Path, table: str, day: date) -> Path:
    return Path(exports) / table / f"dt={day.isoformat()}"


def parquet_glob(exports: Path, table: str) -> str:
    return str(Path(exports).absolute() / table / "dt=*" / "*.parquet")


def _atomic_target(final: Path) -> tuple[int, str]:
    final.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)


def write_parquet_atomic(table: pa.Table, final: Path) -> int:
    """Write ``table`` to ``final`` (zstd) via a temporary file and an atomic rename; returns the file's bytes."""
    fd, tmp = _atomic_target(final)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        crashpoint("exports.parquet.swap")
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final.stat().st_size


def export_day(exports: Path, day: date, tables: dict[str, pa.Table]) -> dict[str, int]:
    """One Parquet file per table for ``day``; returns bytes written per table."""
    written = {}
    for spec in schema.TABLES:
        data = tables[spec.name]
        if data.schema != spec.arrow_schema:
            data = data.cast(spec.arrow_schema)
        written[spec.name] = write_parquet_atomic(data, day_dir(exports, spec.name, day) / PARQUET_NAME)
    return written


def exported_days(exports: Path, table: str = "credits_ledger") -> list[date]:
    base = Path(exports) / table
    if not base.is_dir():
        return []
    days = []
    for child in base.iterdir():
        if child.name.startswith("dt=") and (child / PARQUET_NAME).exists():
            try:
                days.append(date.fromisoformat(child.name[3:]))
            except ValueError:
                continue
    return sorted(days)


def write_account_csvs(exports: Path, handles: Iterable[str], day: date) -> dict[str, int]:
    """The CSV per tracked account (one row per post, the counters a daily cron job would dump).

    Its posts, with the newest counters known on or before ``day``.

    Written to ``exports/csv/dt=DAY/<handle>.csv`` (what that partition knew) and copied to
    ``exports/csv/<handle>.csv`` when ``day`` is the newest exported day. Returns rows per handle.
    """
    import duckdb

    csv_dir = Path(exports) / "csv"
    dated = csv_dir / f"dt={day.isoformat()}"
    dated.mkdir(parents=True, exist_ok=True)
    newest = max(exported_days(exports), default=day) <= day
    rows: dict[str, int] = {}
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE VIEW posts_by_day AS SELECT * FROM read_parquet('{parquet_glob(exports, 'posts')}', "
            "hive_partitioning = false, union_by_name = true)"
        )
        for handle in handles:
            final = dated / f"{handle}.csv"
            fd, tmp = _atomic_target(final)
            os.close(fd)
            try:
                relation = con.sql(
                    f"SELECT {', '.join(CSV_COLUMNS)} FROM posts_by_day WHERE author_handle = $handle AND dt <= $day "
                    "QUALIFY row_number() OVER (PARTITION BY aweme_id ORDER BY dt DESC) = 1 "
                    "ORDER BY create_time DESC, aweme_id",
                    params={"handle": handle, "day": day},
                )
                rows[handle] = len(relation)
                relation.write_csv(tmp, header=True)
                crashpoint("exports.csv.swap")
                os.replace(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            if newest:
                latest = csv_dir / f"{handle}.csv"
                fd, tmp = _atomic_target(latest)
                os.close(fd)
                shutil.copyfile(final, tmp)
                os.replace(tmp, latest)
    finally:
        con.close()
    return rows

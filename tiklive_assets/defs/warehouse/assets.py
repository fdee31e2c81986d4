"""Warehouse assets, partitioned by archive day: derived tables, Parquet exports, DuckDB marts, per-account CSVs.

Every asset here reads the raw archive (or the exports derived from it), never an API response, and replaces
its day window, so a backfill over any range reproduces what day-by-day runs produce. A backfill launched from
an asset page runs as one run (``BackfillPolicy.single_run()``) that loads the days in ascending order, one
transaction per day. Assets that write a DuckDB file take the ``duckdb_writer`` pool (limit 1 in
dagster.yaml): one writer per file. Nothing opens a database before an asset runs.
"""

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.defs.capture.assets import CAPTURE_ASSETS
from tiklive_assets.defs.partitions import daily
from tiklive_assets.defs.resources import (
    ArchiveStoreResource,
    DataRootResource,
    TrackingConfigResource,
)
from tiklive_assets.defs.warehouse.resources import WarehouseResource
from tiklive_assets.warehouse import (
    MART_COLUMNS,
    MART_DESCRIPTIONS,
    MARTS,
    TABLES,
    build_marts,
    default_marts_path,
    describe_url,
    export_day,
    load_days,
    mart_chart,
    mart_row_count,
    parse_day,
    write_account_csvs,
)
from tiklive_assets.warehouse.drift import schema_drift
from tiklive_assets.warehouse.exports import PARQUET_NAME, day_dir
from tiklive_assets.warehouse.marts import EXAMPLE_QUERIES
from tiklive_assets.warehouse.remote import publish_day

DUCKDB_POOL = "duckdb_writer"
CHARTED_DAYS = 31  # the days of one run whose mart metadata carries a drawn chart (the newest ones)
NO_CAPTURE = "no capture"  # a day's status when the archive holds nothing for it
GROUP = "warehouse"
BACKFILL = dg.BackfillPolicy.single_run()
CAPTURE_KEYS = [asset.key for asset in CAPTURE_ASSETS]
# Names that stand alone in the asset graph, the catalog and alerts (the DuckDB/Postgres tables keep their names)
TABLE_KEYS = {table.name: dg.AssetKey(f"warehouse_{table.name}") for table in TABLES}
MART_KEYS = {mart: dg.AssetKey(f"mart_{mart}") for mart in MARTS}
QUARANTINE_CHECK = dg.AssetCheckSpec(
    "quarantine_ratio",
    asset=TABLE_KEYS["quarantine"],
    description="At most a share of a day's archived objects are quarantined (TIKLIVE_QUARANTINE_MAX_RATIO, "
    "default 0.01: 1 %; the run's own figure is in the check's metadata). A few odd objects never fail a day, but "
    "more than that means the API changed shape and the parsers need a fix; replaying the day afterwards parses "
    "them again.",
)
DRIFT_CHECK = dg.AssetCheckSpec(
    "schema_drift",
    asset=TABLE_KEYS["schema_fields"],
    description="Each endpoint's fields (paths and JSON types) match the last earlier day that saw it: a warning "
    "lists fields that appeared, vanished or changed type, so an API change is known before data is lost.",
)


def day_asset(*, deps: list, kinds: set[str]) -> Callable[..., dg.AssetsDefinition]:
    """A warehouse asset: daily partitions, a backfill as one run, in the warehouse group; its docstring is its
    description in the catalog."""
    return dg.asset(deps=deps, partitions_def=daily, backfill_policy=BACKFILL, group_name=GROUP, kinds=kinds)


def run_result(days: list[date], path: Path, **figures) -> dg.MaterializeResult:
    """The run's own metadata on an asset: the days it covered, where the files are, and ``figures``."""
    return dg.MaterializeResult(
        metadata={"run_days": run_days(days), **figures, "path": dg.MetadataValue.path(str(path))}
    )


def column_schema(table) -> dg.TableSchema:
    """The table's columns as the catalog shows them (name, SQL type, NOT NULL), from the one schema declaration."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.sql.lower(), constraints=dg.TableColumnConstraints(nullable=not c.not_null))
            for c in table.columns
        ]
    )


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days of this run: one partition, or the whole range of a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def run_days(days: list[date]) -> str:
    return f"{days[0]}..{days[-1]}" if len(days) > 1 else str(days[0])


def report_day(context: dg.AssetExecutionContext, key: dg.AssetKey, day: date, metadata: dict) -> None:
    """Attach ``metadata`` to this day's materialization of ``key`` only.

    A single-run backfill materializes every day of its range in one step, and a ``MaterializeResult`` carries
    one metadata set that Dagster copies onto every partition (so each day would show the whole run's figures).
    Partition-scoped asset metadata is merged into that day's own event instead: one event per day, its own
    figures. (Yielding extra ``AssetMaterialization`` events would give each day two events, the later one
    without them.)"""
    context.add_asset_metadata(metadata, asset_key=key, partition_key=day.isoformat())


def report_unchanged(context: dg.AssetExecutionContext, key: dg.AssetKey, day: date, damaged: int) -> None:
    """The status of a day left as it was because ``damaged`` of its archived objects are not gzip."""
    report_day(
        context,
        key,
        day,
        {"status": f"left unchanged: {damaged} damaged archived object(s); restore them, then rematerialize"},
    )


def warn_no_capture(context: dg.AssetExecutionContext, asset: str, day: date, what: str) -> None:
    context.log.warning(
        "%s for %s: %s: the archive holds no raw objects for this day (capture did not run that day, or its "
        "archive was not restored), so %s. The API only serves the present: a missed day cannot be fetched later.",
        asset,
        day,
        NO_CAPTURE,
        what,
    )


def exported_rows(exports: Path, day: date) -> int | None:
    """Rows of ``day`` over every table's Parquet export (file footers only), None when the day is not exported."""
    import pyarrow.parquet as pq

    files = [day_dir(exports, table.name, day) / PARQUET_NAME for table in TABLES]
    present = [f for f in files if f.exists()]
    return sum(pq.read_metadata(f).num_rows for f in present) if present else None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            deps=CAPTURE_KEYS,
            description=table.description,
            group_name=GROUP,
            kinds={"warehouse"},
            metadata={
                "table": table.name,
                "load_mode": table.mode,
                "key": ", ".join(table.key),
                "dagster/column_schema": column_schema(table),
            },
        )
        for table, key in zip(TABLES, TABLE_KEYS.values(), strict=True)
    ],
    partitions_def=daily,
    backfill_policy=BACKFILL,
    pool=DUCKDB_POOL,
    can_subset=False,
    check_specs=[QUARANTINE_CHECK, DRIFT_CHECK],
    name="warehouse_tables",
)
def warehouse_tables(
    context: dg.AssetExecutionContext,
    archive_store: ArchiveStoreResource,
    data_root: DataRootResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Parse each day's archived objects and replace that day in the warehouse (DuckDB file or Postgres).

    Objects no parser can read are quarantined (the ``quarantine`` table) and the rest of the day loads; values
    that could not be coerced are nulled and counted per field; error responses are counted, never parsed."""
    days = partition_days(context)
    store = archive_store.open()
    url = warehouse.resolved_url(data_root.root().home)
    with warehouse.open(data_root.root().home) as wh:
        report = load_days(store, wh, days, index_store=store)  # the index part of each day beside the archive
        totals = {name: wh.row_count(name) for name in TABLE_KEYS}
        drift = {str(day): schema_drift(wh, day) for day in days}
    for problem in report.errors[:20]:
        context.log.warning("quarantined: %s", problem)
    for day, keys in report.refused.items():
        context.log.error(
            "%s left as it was: %d archived object(s) are damaged (not gzip), and replacing the day "
            "would drop the rows they fed; restore them from the secondary store, then rematerialize "
            "(or `tiklive replay --force`). First: %s",
            day,
            len(keys),
            keys[0],
        )
    for day in days:
        if day not in report.refused and not report.objects_by_day.get(day):
            warn_no_capture(context, "warehouse_tables", day, "its rows in every table are none")
    run = {
        "run_days": run_days(days),
        "run_archive_objects": report.objects,
        "run_quarantined": report.quarantined,
        "items_without_id": report.items_without_id,
        "values_nulled": report.values_nulled_total,
        "warehouse": describe_url(url),
        "seconds": round(report.seconds, 2),
    }
    for name, key in TABLE_KEYS.items():
        for day in days:
            if day in report.refused:
                report_unchanged(context, key, day, len(report.refused[day]))
                continue
            objects = report.objects_by_day.get(day, 0)
            report_day(
                context,
                key,
                day,
                {
                    "status": "loaded" if objects else NO_CAPTURE,
                    "dagster/row_count": report.rows_by_day.get(day, {}).get(name, 0),
                    "archive_objects": objects,
                    "quarantined": report.quarantined_by_day.get(day, 0),
                    "error_responses": report.error_responses_by_day.get(day, 0),
                },
            )
        metadata: dict[str, Any] = {"table_rows_total": totals[name], **run}
        if name == "quarantine":
            metadata["quarantined_keys"] = dg.MetadataValue.json(report.errors[:100])
            metadata["corrupt_objects"] = dg.MetadataValue.json(report.corrupt[:100])
        elif name == "posts":
            metadata["values_nulled_by_field"] = dg.MetadataValue.json(dict(report.values_nulled.most_common(50)))
            metadata["posts_without_author"] = report.posts_without_author
        elif name == "credits_ledger":
            metadata["error_responses_by_reason"] = dg.MetadataValue.json(dict(sorted(report.error_responses.items())))
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
    ratios = {
        str(day): report.quarantined_by_day.get(day, 0) / max(report.objects_by_day.get(day, 0), 1) for day in days
    }
    worst = max(ratios.values(), default=0.0)
    max_ratio = settings.quarantine_max_ratio()
    yield dg.AssetCheckResult(
        check_name=QUARANTINE_CHECK.name,
        asset_key=QUARANTINE_CHECK.asset_key,
        passed=worst <= max_ratio and not report.refused,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "days_left_unchanged": dg.MetadataValue.json({str(d): keys[:20] for d, keys in report.refused.items()}),
            "quarantined": report.quarantined,
            "archive_objects": report.objects,
            "worst_ratio": round(worst, 6),
            "max_ratio": max_ratio,
            "ratio_by_day": dg.MetadataValue.json({d: round(r, 6) for d, r in ratios.items()}),
            "quarantined_keys": dg.MetadataValue.json(report.errors[:100]),
        },
    )
    drifted = {day: {d.endpoint: d.as_json() for d in found} for day, found in drift.items() if found}
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK.name,
        asset_key=DRIFT_CHECK.asset_key,
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "endpoints_drifted": sum(len(found) for found in drifted.values()),
            "drift": dg.MetadataValue.json(drifted),
        },
    )


@day_asset(deps=list(TABLE_KEYS.values()), kinds={"parquet"})
def parquet_exports(
    context: dg.AssetExecutionContext, archive_store: ArchiveStoreResource, data_root: DataRootResource
) -> dg.MaterializeResult:
    """exports/<table>/dt=YYYY-MM-DD/part-0.parquet for every warehouse table (zstd, explicit schema), swapped in
    atomically; written from the archive, so they never wait for the warehouse lock."""
    exports = data_root.root().exports
    store = archive_store.open()
    days = partition_days(context)
    rows = files_bytes = 0
    for day in days:
        parsed = parse_day(store, day)
        if parsed.corrupt and (exports / "posts" / f"dt={day}").exists():  # never shrink a day's exports either
            context.log.error(
                "exports of %s left as they were: %d archived object(s) are damaged, first %s",
                day,
                len(parsed.corrupt),
                parsed.corrupt[0],
            )
            report_unchanged(context, context.asset_key, day, len(parsed.corrupt))
            continue
        if not parsed.objects:
            warn_no_capture(context, "parquet_exports", day, "its Parquet files are empty")
        written = export_day(exports, day, parsed.tables)
        published = publish_day(store, exports, day)  # beside an archive on S3, for analysts elsewhere; {} on disk
        day_rows = sum(parsed.row_counts.values())
        files_bytes += sum(written.values())
        rows += day_rows
        report_day(
            context,
            context.asset_key,
            day,
            {
                "status": "exported" if parsed.objects else NO_CAPTURE,
                "dagster/row_count": day_rows,
                "rows_by_table": dg.MetadataValue.json(dict(parsed.row_counts)),
                "bytes": sum(written.values()),
                "archive_objects": parsed.objects,
                **({"published_bytes": sum(published.values())} if published else {}),
            },
        )
    return run_result(days, exports, run_rows=rows, run_bytes=files_bytes)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            deps=[parquet_exports.key],
            group_name=GROUP,
            kinds={"duckdb"},
            description=MART_DESCRIPTIONS[mart],
            metadata={
                "view": mart,
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn(name, type=kind.lower(), description=meaning)
                        for name, kind, meaning in MART_COLUMNS[mart]
                    ]
                ),
                "example_query": dg.MetadataValue.md(f"```sql\n{EXAMPLE_QUERIES[mart]};\n```"),
            },
        )
        for mart, key in MART_KEYS.items()
    ],
    partitions_def=daily,
    backfill_policy=BACKFILL,
    pool=DUCKDB_POOL,
    can_subset=False,
    name="marts",
)
def marts(context: dg.AssetExecutionContext, data_root: DataRootResource) -> Iterator[dg.MaterializeResult]:
    """Rebuild marts.duckdb (views only; swapped in atomically) and chart each mart up to the run's last day."""
    root = data_root.root()
    path = build_marts(root.exports, default_marts_path(root.home))
    days = partition_days(context)
    captured = {day: bool(exported_rows(root.exports, day)) for day in days}
    for day in days:
        if not captured[day]:
            warn_no_capture(context, "marts", day, "the marts hold nothing of that day (earlier days' rows stay)")
    charted = set(days[-CHARTED_DAYS:])  # drawing takes ~0.5 s a chart: a year's backfill charts its last month
    for mart, key in MART_KEYS.items():
        for day in days:
            status = "built" if captured[day] else NO_CAPTURE
            if day in charted:
                rows, chart = mart_chart(path, mart, day)  # the mart as that day saw it: a PNG above a table
                figures = {"chart": dg.MetadataValue.md(chart)}
            else:
                rows = mart_row_count(path, mart, day)
                figures = {
                    "chart": dg.MetadataValue.md(
                        f"Not drawn: this run built {len(days)} days and draws the last {CHARTED_DAYS}. "
                        "Rematerialize this day alone to chart it."
                    )
                }
            report_day(
                context,
                key,
                day,
                {"status": status, "dagster/row_count": rows, "rows_as_of": day.isoformat(), **figures},
            )
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "run_days": run_days(days),
                "marts_file": dg.MetadataValue.path(str(path)),
            },
        )


@day_asset(deps=[parquet_exports.key], kinds={"csv"})
def account_csvs(
    context: dg.AssetExecutionContext, data_root: DataRootResource, tracking: TrackingConfigResource
) -> dg.MaterializeResult:
    """A CSV per tracked account (aweme_id, create_time, region, title, play_count, digg_count, comment_count,
    share_count) under exports/csv/: dt=DAY/<handle>.csv, and <handle>.csv for the newest day."""
    exports = data_root.root().exports
    handles = [account.handle for account in tracking.load().accounts]
    days = partition_days(context)
    for day in days:
        captured = bool(exported_rows(exports, day))
        if not captured:
            warn_no_capture(
                context, "account_csvs", day, "its CSVs carry the counters known from earlier days, none new"
            )
        rows = write_account_csvs(exports, handles, day)
        report_day(
            context,
            context.asset_key,
            day,
            {
                "status": "written" if captured else f"{NO_CAPTURE} (counters as of earlier days)",
                "dagster/row_count": sum(rows.values()),
                "rows_by_account": dg.MetadataValue.json(rows),
            },
        )
    return run_result(days, exports / "csv")


WAREHOUSE_ASSETS = [warehouse_tables, parquet_exports, marts, account_csvs]

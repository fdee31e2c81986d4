"""Warehouse domain: derived tables, Parquet exports, DuckDB marts and CSVs, all from the raw archive."""

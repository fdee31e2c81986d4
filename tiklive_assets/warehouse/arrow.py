"""Rows -> Arrow tables with the warehouse's declared schemas, sorted by each table's key."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tiklive_assets.tolerant import Tally

from . import schema


def to_arrow(table: schema.Table, rows: list[tuple], tally: Tally | None = None) -> pa.Table:
    """Rows (tuples in column order) -> an Arrow table with the declared schema, sorted by the table's key.

    The tuples are converted in one pass as Arrow struct values (pyarrow reads a tuple's items by position), which
    is faster than transposing them in Python (``zip(*rows)``) and converting column by column; timestamps arrive
    as integer microseconds, which Arrow takes as they are for ``timestamp[us]``. Sorting stays in Arrow: it is a
    few milliseconds even for 100,000 rows, less than checking the order in Python."""
    arrow_schema = table.arrow_schema
    if not rows:
        return arrow_schema.empty_table()
    struct = pa.struct(list(arrow_schema))
    try:
        array = pa.array(rows, type=struct)
    except (OverflowError, pa.ArrowInvalid):  # a number beyond 64 bits: null it rather than lose the whole day
        array = pa.array(_fit_integers(rows, arrow_schema, tally), type=struct)
    return pa.Table.from_struct_array(array).sort_by([(name, "ascending") for name in table.key])


def to_arrow_after(table: schema.Table, first: Any, rows: list[tuple]) -> pa.Table:
    """:func:`to_arrow` of rows that leave out the first column, whose value is ``first`` in every row (the day of
    a table of many rows of text: no tuple per row to build, no date per row to convert)."""
    arrow_schema = table.arrow_schema
    if not rows:
        return arrow_schema.empty_table()
    head = arrow_schema.field(0)
    rest = pa.Table.from_struct_array(pa.array(rows, type=pa.struct(list(arrow_schema)[1:])))
    column = pa.repeat(pa.scalar(first, head.type), len(rows))
    return rest.add_column(0, head, column).sort_by([(name, "ascending") for name in table.key])


_INT_RANGES = {pa.int64(): (-(2**63), 2**63 - 1), pa.int32(): (-(2**31), 2**31 - 1)}


def _fit_integers(rows: list[tuple], arrow_schema: pa.Schema, tally: Tally | None) -> list[tuple]:
    """``rows`` with every integer too large for its column's type replaced by None (and counted as nulled):
    the slow path, taken only when a day holds such a number (a counter of 20 digits, a time in yoctoseconds)."""
    bounds = [(i, f.name, _INT_RANGES[f.type]) for i, f in enumerate(arrow_schema) if f.type in _INT_RANGES]
    fitted = []
    for row in rows:
        bad = [i for i, _, (lo, hi) in bounds if type(row[i]) is int and not lo <= row[i] <= hi]  # noqa: E721
        if bad:
            row = tuple(None if i in bad else v for i, v in enumerate(row))
            if tally is not None:
                for i in bad:
                    tally.nulled[arrow_schema.field(i).name] += 1
        fitted.append(row)
    return fitted

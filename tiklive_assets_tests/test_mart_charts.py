"""The marts' charts: a small, valid PNG above each table, of the mart as it stood on the partition's day.

Real marts over real Parquet exports of a fabricated archive (three captured days around one the archive never
captured). A mart's declared columns must be what DuckDB describes, so the catalog cannot drift from the SQL.
"""

from __future__ import annotations

import base64
import io
import re
import struct
import subprocess
import sys
import warnings
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tiklive_assets.sandbox import Corpus
from tiklive_assets.storage import LocalStore
from tiklive_assets.warehouse import (
    MART_COLUMNS,
    MART_DESCRIPTIONS,
    MARTS,
    build_marts,
    charts,
    export_day,
    mart_chart,
    parse_day,
    query_marts,
)
from tiklive_assets.warehouse.marts import markdown_table
from tiklive_assets_tests.support.archive import write_archive_day

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=n) for n in (4, 3, 2, 1)]
EMPTY = DAYS[2]  # the archive holds nothing of this day
CAPTURED = [d for d in DAYS if d != EMPTY]
MAX_PNG = 60_000
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\(data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The marts over all days, and over the first day's exports alone (the marts as that day built them)."""
    root = tmp_path_factory.mktemp("mart_charts")
    store = LocalStore(root / "archive")
    corpus = Corpus(seed=7)
    for day in CAPTURED:
        write_archive_day(store, day, corpus, refreshes=True)
    for day in DAYS:
        tables = parse_day(store, day).tables
        export_day(root / "exports", day, tables)
        if day == DAYS[0]:
            export_day(root / "first_day", day, tables)
    return {
        "all": build_marts(root / "exports", root / "marts.duckdb"),
        "first_day": build_marts(root / "first_day", root / "first_day.duckdb"),
    }


def split(markdown: str) -> tuple[str, bytes, str]:
    """(alt text, PNG bytes, the rest) of a chart's markdown, which must open with the image."""
    found = IMAGE.match(markdown)
    assert found, markdown[:200]
    return found["alt"], base64.b64decode(found["data"], validate=True), markdown[found.end() :]


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature, the chunk's CRC and the IEND trailer."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    (crc,) = struct.unpack(">I", png[29:33])
    assert zlib.crc32(png[12:29]) == crc, "IHDR CRC mismatch"
    assert png[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "no IEND chunk at the end"
    return struct.unpack(">II", png[16:24])


def decodes(png: bytes) -> tuple[int, int]:
    """The PNG's size as a full decoder reads it (every pixel inflated), which must match its IHDR."""
    import PIL.Image

    with PIL.Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def chart_of(path: Path, mart: str, day: date) -> tuple[int, str, bytes, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a locator or layout complaint would mean an unreadable chart
        rows, markdown = mart_chart(path, mart, day)
    alt, png, rest = split(markdown)
    return rows, alt, png, rest


def test_declared_columns_are_what_duckdb_describes(marts) -> None:
    assert set(MART_COLUMNS) == set(MART_DESCRIPTIONS) == set(MARTS)
    con = duckdb.connect(str(marts["all"]), read_only=True)
    try:
        for mart in MARTS:
            described = [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {mart}").fetchall()]
            assert [(name, kind) for name, kind, _ in MART_COLUMNS[mart]] == described, mart
    finally:
        con.close()
    for mart, columns in MART_COLUMNS.items():
        description = MART_DESCRIPTIONS[mart]
        assert "one row per" in description.split("\n")[0], mart  # the grain comes first
        for name, kind, meaning in columns:
            assert len(meaning) > 10, (mart, name)
            assert f"- `{name}` ({kind}): {meaning}" in description, (mart, name)


@pytest.mark.parametrize("mart", MARTS)
def test_each_chart_is_a_small_png_above_the_table(marts, mart: str) -> None:
    rows, alt, png, rest = chart_of(marts["all"], mart, DAYS[-1])
    assert png_size(png) == decodes(png) == (640, 320)
    assert len(png) < MAX_PNG, len(png)
    assert str(DAYS[-1]) in alt and charts.NO_DATA not in alt
    table = rest.removeprefix("\n\n").splitlines()
    assert len(table) >= 3 and all(line.startswith("|") for line in table), rest[:200]  # header, rule, rows
    ((everything,),) = query_marts(marts["all"], f"SELECT count(*) FROM {mart}")[1]
    assert rows == everything > 0  # the last day sees every exported day


@pytest.mark.parametrize("mart", MARTS)
def test_a_chart_is_the_mart_as_that_day_built_it(marts, mart: str) -> None:
    """The first day's chart over all days' exports equals the one the marts built from that day alone: later
    counters and rows never leak into an earlier partition. Same data, same bytes."""
    then = mart_chart(marts["all"], mart, DAYS[0])
    assert then == mart_chart(marts["first_day"], mart, DAYS[0])
    assert then == mart_chart(marts["all"], mart, DAYS[0])


@pytest.mark.parametrize("mart", MARTS)
def test_days_whose_data_differ_give_different_images(marts, mart: str) -> None:
    first, last = chart_of(marts["all"], mart, DAYS[0]), chart_of(marts["all"], mart, DAYS[-1])
    assert first[3] != last[3], "the tables should differ: counters grow from day to day in this archive"
    assert first[2] != last[2]
    if mart in ("follower_growth", "video_virality", "daily_archive_summary"):
        assert first[0] < last[0]  # rows accumulate over the days


def test_a_day_without_capture_still_charts_what_came_before(marts) -> None:
    rows, alt, png, rest = chart_of(marts["all"], "daily_archive_summary", EMPTY)
    assert rows == 2 and png_size(png) == (640, 320) and charts.NO_DATA not in alt
    assert str(DAYS[1]) in rest and str(EMPTY) not in rest


@pytest.mark.parametrize("mart", MARTS)
def test_a_day_before_any_data_gives_a_no_data_image(marts, mart: str) -> None:
    rows, alt, png, rest = chart_of(marts["all"], mart, DAYS[0] - timedelta(days=1))
    assert rows == 0
    assert alt.endswith(f": {charts.NO_DATA}"), alt
    assert png_size(png) == decodes(png) == (640, 320) and len(png) < MAX_PNG
    assert png != chart_of(marts["all"], mart, DAYS[0])[2]
    assert len(rest.strip().splitlines()) == 2  # the table's header and rule, no rows


def test_hostile_labels_are_drawn_as_text_and_escaped_in_the_table() -> None:
    items = [("$x^2$ \\frac{a}{b} 🎵 音楽", 3, 1_234_567), ("a | b\nc", 1, None), ("x" * 200, 1, 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        markdown = charts.ranking("Top sounds by posts", items, TODAY)
    _, png, _ = split(markdown)
    assert png_size(png) == decodes(png) == (640, 320)
    table = markdown_table(["sound", "posts", "plays"], items)
    assert table.splitlines()[3] == "| a \\| b c | 1 |  |"
    assert len(table.splitlines()) == 5


def test_charts_load_matplotlib_only_when_drawing() -> None:
    code = (
        "import sys, tiklive_assets.warehouse, tiklive_assets.warehouse.charts; "
        "assert 'matplotlib' not in sys.modules and 'PIL' not in sys.modules, 'imported at load time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("mart", MARTS)
def test_the_undrawn_count_of_a_long_backfill_is_the_charted_count(marts, mart: str) -> None:
    """Days of a long backfill beyond the drawn ones still report their own row count, the same figure."""
    from tiklive_assets.warehouse import mart_row_count

    for day in DAYS:
        assert mart_row_count(marts["all"], mart, day) == chart_of(marts["all"], mart, day)[0]


def test_short_numbers_choose_their_suffix_after_rounding() -> None:
    from tiklive_assets.warehouse.charts import human

    assert [human(v) for v in (999_999, 999.6, 1234, 5_600_000, 12, 0.5)] == ["1M", "1k", "1.23k", "5.6M", "12", "0.5"]


# -- the marts from a notebook -------------------------------------------------------------------------------------


def test_a_notebook_reads_a_mart_as_a_dataframe_in_its_declared_columns(marts: dict[str, Path]) -> None:
    import pandas as pd

    from tiklive_assets.warehouse.marts import MART_COLUMNS
    from tiklive_assets.warehouse.notebook import mart, query

    home = marts["all"].parent
    growth = mart("follower_growth", home=home)
    assert isinstance(growth, pd.DataFrame) and len(growth) > 0
    assert list(growth.columns) == [column[0] for column in MART_COLUMNS["follower_growth"]]
    days = query("SELECT DISTINCT day FROM follower_growth WHERE day >= ? ORDER BY day", [CAPTURED[1]], home=home)
    assert [d.date() for d in pd.to_datetime(days["day"])] == CAPTURED[1:]
    # read-only and closed after each call: a writer can open the file at once
    import duckdb

    duckdb.connect(str(marts["all"])).close()


def test_a_notebook_is_told_what_is_missing(tmp_path: Path, marts: dict[str, Path]) -> None:
    from tiklive_assets.warehouse.notebook import MartsUnavailable, mart, query

    with pytest.raises(MartsUnavailable, match="no marts at .* yet: every `tiklive run` builds them"):
        query("SELECT 1", home=tmp_path)
    with pytest.raises(KeyError, match="no mart named 'followers'.*follower_growth"):
        mart("followers", home=marts["all"].parent)

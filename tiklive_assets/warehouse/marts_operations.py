"""Marts about running the archive (each day's completeness, and what it costs).

Declared here and merged by :mod:`.marts`; :mod:`.mart_text` describes the shape.
"""

from __future__ import annotations

from .mart_text import Chart

MARTS: tuple[str, ...] = ()
MART_SQL: dict[str, str] = {}
EXAMPLE_QUERIES: dict[str, str] = {}
MART_COLUMNS: dict[str, list[tuple[str, str, str]]] = {}
GRAIN: dict[str, str] = {}
CHARTS: dict[str, Chart] = {}

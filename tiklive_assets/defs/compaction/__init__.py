"""Compaction domain: each day past the hot period becomes one bundle per endpoint, so cold storage pays."""

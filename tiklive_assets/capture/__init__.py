"""Capture: seed 001's workers (discovery, detail, download, accounts, janitor) over the raw archive."""

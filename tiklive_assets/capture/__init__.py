"""Capture: the workers (discovery, detail, download, accounts, janitor) over the raw archive."""

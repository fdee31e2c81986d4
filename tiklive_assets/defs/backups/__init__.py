"""Backups domain: hourly snapshots of the state database into the archive's store, 30 days kept."""

"""Verification: the nightly restore test (a backup never restored is a rumour) and the archive/warehouse
integrity checks, as plain functions."""

"""Verification: seed 000's nightly restore test and the archive/warehouse integrity checks, as plain functions."""

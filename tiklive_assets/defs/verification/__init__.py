"""Verification domain: the nightly restore test and integrity checks, in a check-only job on a schedule."""

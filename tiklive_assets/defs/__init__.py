"""Dagster definitions, one folder per domain; the composition root that wires clients, stores and state."""

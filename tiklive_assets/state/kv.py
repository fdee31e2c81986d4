"""Key-values: small named markers (a walk's day total, whether it is complete) kept with the state."""

from __future__ import annotations

from datetime import datetime

from .backends import Tx
from .core import StateCore, utcnow


def write_values(tx: Tx, values: dict[str, str | None], now: datetime) -> None:
    """Upsert ``values`` inside the caller's transaction; a None value deletes its key."""
    for key, value in values.items():
        if value is None:
            tx.execute("DELETE FROM kv WHERE key = ?", [key])
        else:
            tx.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [key, value, now],
            )


class KvState(StateCore):
    """kv: get, set and delete one value."""

    def get_value(self, key: str, default: str | None = None) -> str | None:
        with self._tx() as tx:
            row = tx.fetchone("SELECT value FROM kv WHERE key = ?", [key])
        return default if row is None else row[0]

    def set_value(self, key: str, value: str | None) -> None:
        self._write(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            [key, value, utcnow()],
        )

    def delete_value(self, key: str) -> bool:
        return self._write("DELETE FROM kv WHERE key = ?", [key]) > 0

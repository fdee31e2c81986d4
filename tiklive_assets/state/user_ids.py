"""The user-id cache: each handle's numeric user id, so a run need not ask the API for it again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .core import StateCore, utcnow


def _norm_handle(handle: str) -> str:
    """TikTok handles are case-insensitive; '@Cristiano' and 'cristiano' are the same key."""
    return handle.strip().lstrip("@").lower()


class UserIdState(StateCore):
    """user_ids: look up, cache and forget a handle's user id."""

    def cached_user_id(self, handle: str, max_age: timedelta | None = None) -> str | None:
        """The cached user id for a handle (case-insensitive, '@' optional), or None if unknown / older than max_age."""
        sql = "SELECT user_id FROM user_ids WHERE handle = ?"
        params: list[Any] = [_norm_handle(handle)]
        if max_age is not None:
            sql += " AND resolved_at >= ?"
            params.append(utcnow() - max_age)
        with self._tx() as tx:
            row = tx.fetchone(sql, params)
        return None if row is None else row[0]

    def cache_user_id(self, handle: str, user_id: str | int) -> None:
        """Cache a handle's numeric user id; anything but 1-32 digits is refused (a cached non-answer would fail
        every later run)."""
        text = str(user_id)
        if isinstance(user_id, bool) or not (text.isdigit() and text.isascii() and len(text) <= 32):
            raise ValueError(f"refusing to cache {user_id!r} as the user id of @{handle}: a user id is 1-32 digits")
        self._write(
            "INSERT INTO user_ids (handle, user_id, resolved_at) VALUES (?, ?, ?) ON CONFLICT (handle) "
            "DO UPDATE SET user_id = excluded.user_id, resolved_at = excluded.resolved_at",
            [_norm_handle(handle), str(user_id), utcnow()],
        )

    def forget_user_id(self, handle: str) -> str | None:
        """Drop a handle's cached user id (the next run asks /userid/ again); returns the id it held, if any."""
        with self._tx(write=True) as tx:
            row = tx.fetchone("SELECT user_id FROM user_ids WHERE handle = ?", [_norm_handle(handle)])
            tx.execute("DELETE FROM user_ids WHERE handle = ?", [_norm_handle(handle)])
        return None if row is None else row[0]

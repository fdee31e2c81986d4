"""What a store raises: NotFound for a missing key, and the StoreErrors that stop a run without blaming any id."""

from __future__ import annotations


class NotFound(KeyError):
    """No object exists at the key."""

    def __init__(self, key: str, where: str = "") -> None:
        self.key = key
        self.where = where
        super().__init__(key)

    def __str__(self) -> str:
        return f"no object at key {self.key!r}" + (f" in {self.where}" if self.where else "")


class StoreError(RuntimeError):
    """The store could not complete an operation safely; the message says why and what to do.

    Always systemic: it says nothing about the id or page being captured, so a run that meets it stops, refunds
    the attempts of what it had claimed and blames no id.
    """


class StoreUnavailable(StoreError):
    """The store did not answer or failed (endpoint down, timeout, 5xx after retries, disk full or failing).

    Transient from the archive's point of view: rerun once the store is back.
    """


class StoreMisconfigured(StoreError):
    """The store answered, but refuses with a configuration error (no such bucket, denied, bad credentials).

    Not transient: retrying only spends credits again; the message names the setting to fix.
    """

"""What both APIs' endpoint declarations (``tikliveapi/endpoints.py``, ``research/endpoints.py``) check the same way.

Standard library only, like the declarations themselves: the warehouse and the sandbox read them without
importing a client.
"""

from __future__ import annotations


def only_declared(path: str, given: dict[str, object], declared: tuple[str, ...], what: str) -> dict[str, object]:
    """``given`` as it is, once every name in it is ``declared`` (else TypeError naming what the endpoint takes)."""
    unknown = [k for k in given if k not in declared]
    if unknown:
        raise TypeError(f"{path} takes no {what} {', '.join(unknown)}; it takes {', '.join(declared)}")
    return given


def page_items(path: str, items: str | None) -> str:
    """The key of a page's list, which only a paginated endpoint declares (else ValueError)."""
    if items is None:
        raise ValueError(f"{path} does not page")
    return items

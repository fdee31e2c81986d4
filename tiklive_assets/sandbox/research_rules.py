"""What a sandbox Research API request must look like, and which corpus videos a query matches.

Every refusal is a :class:`Refusal` (HTTP status, the API's error code, its message), answered in the API's
error envelope by the dispatcher in ``sandbox/research.py``.
"""

from __future__ import annotations

from datetime import date, datetime

from tiklive_assets.research import endpoints as ep
from tiklive_assets.research.endpoints import MAX_COUNT, OPERATIONS, QUERY_FIELDS
from tiklive_assets.sandbox.research_corpus import ACCOUNTS_BY_NAME, ResearchAccount, ResearchVideo


class Refusal(Exception):
    """The API refuses the request: answered as ``{"error": {"code", "message", "log_id"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def asked_fields(raw: str | None, endpoint: ep.Endpoint) -> tuple[str, ...]:
    if not raw:
        return endpoint.default_fields
    fields = tuple(f.strip() for f in raw.split(",") if f.strip())
    unknown = [f for f in fields if f not in endpoint.fields]
    if unknown:
        raise Refusal(400, "invalid_params", f"unknown fields: {', '.join(unknown)}")
    return fields


def body_date(request: dict, name: str) -> date:
    raw = request.get(name)
    try:
        return datetime.strptime(str(raw), "%Y%m%d").date()
    except ValueError:
        raise Refusal(400, "invalid_params", f"{name} must be a date YYYYMMDD, got {raw!r}") from None


def body_int(request: dict, name: str, default: int) -> int:
    raw = request.get(name, default)
    if raw in (None, ""):
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).lstrip("-").isdigit():
        raise Refusal(400, "invalid_params", f"{name} must be an integer")
    return int(raw)


def body_count(request: dict, endpoint: ep.Endpoint) -> int:
    """The request's ``max_count`` (the endpoint's default when none), refused outside 1..MAX_COUNT."""
    max_count = body_int(request, "max_count", endpoint.default_count or MAX_COUNT)
    if not 1 <= max_count <= MAX_COUNT:
        raise Refusal(400, "invalid_params", f"max_count must be between 1 and {MAX_COUNT}")
    return max_count


def body_account(request: dict) -> ResearchAccount:
    name = request.get("username")
    if not isinstance(name, str) or not name:
        raise Refusal(400, "invalid_params", "username is required")
    account = ACCOUNTS_BY_NAME.get(name)
    if account is None:
        raise Refusal(400, "invalid_params", f"user {name!r} does not exist or is private")
    return account


def conditions(query: dict) -> dict[str, list[dict]]:
    out = {}
    for clause in ("and", "or", "not"):
        items = query.get(clause) or []
        if not isinstance(items, list):
            raise Refusal(400, "invalid_params", f"query.{clause} must be a list of conditions")
        for c in items:
            if (
                not isinstance(c, dict)
                or c.get("operation") not in OPERATIONS
                or c.get("field_name") not in QUERY_FIELDS
            ):
                raise Refusal(
                    400,
                    "invalid_params",
                    f"invalid condition {c!r}: operation one of {OPERATIONS}, field_name one of {QUERY_FIELDS}",
                )
            values = c.get("field_values")
            if not isinstance(values, list) or not values or (c["operation"] == "EQ" and len(values) != 1):
                raise Refusal(400, "invalid_params", f"invalid field_values in {c!r} (EQ takes exactly one value)")
        out[clause] = items
    return out


def usernames_in(query: dict) -> list[str] | None:
    """Candidate accounts when an ``and`` condition pins the username (a fast path; ``matches`` decides)."""
    for c in conditions(query)["and"]:
        if c["field_name"] == "username":
            return [str(v) for v in c["field_values"]]
    return None


def _holds(c: dict, v: ResearchVideo) -> bool:
    values = {str(x).lower() for x in c["field_values"]}
    name = c["field_name"]
    if name == "username":
        return v.username in values
    if name == "hashtag_name":
        return any(t in values for t in v.hashtags)
    if name == "keyword":
        return any(k in v.description.lower() for k in values)
    if name == "region_code":
        return v.region_code.lower() in values
    if name == "video_id":
        return str(v.id) in values
    return str(v.music_id) in values


def matches(query: dict, v: ResearchVideo) -> bool:
    clauses = conditions(query)
    if clauses["and"] and not all(_holds(c, v) for c in clauses["and"]):
        return False
    if clauses["or"] and not any(_holds(c, v) for c in clauses["or"]):
        return False
    return not any(_holds(c, v) for c in clauses["not"])

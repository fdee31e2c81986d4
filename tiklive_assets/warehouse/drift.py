"""Schema drift: how a day's field signature per endpoint (the ``schema_fields`` table) differs from the last earlier
day that saw the same endpoint. Upstream APIs change shape without notice; this tells the user before data is lost.

A path *appeared* (new today), *vanished* (seen on the earlier day, not today) or *changed* type (today it carries
a JSON type the earlier day never had, e.g. ``user.bioLink`` string -> object). An endpoint seen for the first time
is a baseline, not drift. Optional fields come and go on small days, so drift is a warning, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .backends import Warehouse


@dataclass
class EndpointDrift:
    endpoint: str
    compared_with: date
    appeared: list[str] = field(default_factory=list)  # "path: type"
    vanished: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # path -> {"before": [...], "now": [...]}

    @property
    def drifted(self) -> bool:
        return bool(self.appeared or self.vanished or self.changed)

    def as_json(self) -> dict:
        return {
            "compared_with": str(self.compared_with),
            "appeared": self.appeared,
            "vanished": self.vanished,
            "changed": self.changed,
        }


def _paths(warehouse: Warehouse, day: date, endpoint: str | None = None) -> dict[str, dict[str, set[str]]]:
    sql = "SELECT endpoint, path, json_type FROM schema_fields WHERE dt = ?"
    params: list = [day]
    if endpoint is not None:
        sql += " AND endpoint = ?"
        params.append(endpoint)
    found: dict[str, dict[str, set[str]]] = {}
    for name, path, kind in warehouse.query(sql, params):
        found.setdefault(name, {}).setdefault(path, set()).add(kind)
    return found


def schema_drift(warehouse: Warehouse, day: date) -> list[EndpointDrift]:
    """Per endpoint seen on ``day``, the drift against the last earlier day with that endpoint (only drifted ones)."""
    today = _paths(warehouse, day)
    earlier = dict(warehouse.query("SELECT endpoint, max(dt) FROM schema_fields WHERE dt < ? GROUP BY endpoint", [day]))
    report = []
    for endpoint in sorted(today):
        previous_day = earlier.get(endpoint)
        if previous_day is None:
            continue
        now, before = today[endpoint], _paths(warehouse, previous_day, endpoint).get(endpoint, {})
        drift = EndpointDrift(endpoint, previous_day)
        drift.appeared = sorted(f"{p}: {'|'.join(sorted(t))}" for p, t in now.items() if p not in before)
        drift.vanished = sorted(f"{p}: {'|'.join(sorted(t))}" for p, t in before.items() if p not in now)
        drift.changed = {
            p: {"before": sorted(before[p]), "now": sorted(t)}
            for p, t in sorted(now.items())
            if p in before and t - before[p]
        }
        if drift.drifted:
            report.append(drift)
    return report

"""The recovery drills (being written): each stages a disaster on a scratch copy, recovers, and checks the outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class DrillResult:
    name: str
    passed: bool
    headline: str
    steps: list[str] = field(default_factory=list)


def run_drill(name: str, *, keep: bool = False, say: Callable[[str], None] = print) -> DrillResult:
    say(f"drill {name}: not available yet")
    return DrillResult(name, False, "not available yet")

"""Product text stands alone: the package's code and docstrings, every `tiklive` help page, the README,
CONTRIBUTING and the benchmarks cite no internal planning document, ticket or chat. They state the rule and its
reason instead, so a reader without those documents loses nothing."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tiklive_assets.cli import build_parser

REPO = Path(__file__).resolve().parents[1]

INTERNAL = re.compile(
    r"\bseeds?[ _-]?0\d\d\b"  # a numbered planning document (a random seed is never written like this)
    r"|\bseeds?/"  # the planning documents' folder
    r"|\b(?:issue|ticket) #?\d+\b"
    r"|\b(?:Foundation|Capture|Operations) item \d+"
    r"|STYLE\.md|wire-format\.md|real-payloads/",
    re.IGNORECASE,
)


def _help_pages(parser: argparse.ArgumentParser, name: str = "tiklive") -> dict[str, str]:
    pages = {name: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                pages.update(_help_pages(sub, f"{name} {sub_name}"))
    return pages


def test_the_package_and_the_documents_cite_no_internal_document() -> None:
    files = [
        *sorted((REPO / "tiklive_assets").rglob("*.py")),
        *sorted((REPO / "benchmarks").glob("*")),
        REPO / "README.md",
        REPO / "CONTRIBUTING.md",
        REPO / "tiklive.yaml",
    ]
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert hits == [], "\n".join(hits)


def test_no_help_page_cites_an_internal_document() -> None:
    pages = _help_pages(build_parser())
    assert len(pages) > 10  # every subcommand was reached
    hits = {name: INTERNAL.findall(text) for name, text in pages.items() if INTERNAL.search(text)}
    assert hits == {}


def test_the_pattern_catches_what_it_is_for() -> None:
    for text in ("as seed 001 says", "see seeds/000", "issue 12", "Foundation item 9", "per STYLE.md"):
        assert INTERNAL.search(text), text
    for text in ("two processes with the same seed agree", "seed: int", "--seed 3", "a seeded RNG"):
        assert not INTERNAL.search(text), text

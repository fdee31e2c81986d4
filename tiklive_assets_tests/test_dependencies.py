"""The declared dependencies are exactly what the package imports, plus the few it runs rather than imports.

A package imported but not declared works only while something else happens to pull it in; a package declared but
never used is a download, an attack surface and an upgrade to track for nothing.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Declared, used by name rather than by import: each with where it is used.
RUN_NOT_IMPORTED = {
    "dagster-webserver": "the UI that `tiklive ui` and `dg dev` start",
    "dagster-postgres": "the production instance's storage, named in deploy/dagster.production.yaml",
    "dagster-dg-cli": "`dg dev`, which `tiklive ui` runs as `python -m dagster_dg_cli.cli`",
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[<>=!~\[;\s]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution name -> the package's modules that import it."""
    top_levels: set[tuple[str, str]] = set()
    for path in (ROOT / "tiklive_assets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "tiklive_assets":
                    top_levels.add((top, str(path.relative_to(ROOT))))
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for top, where in top_levels:
        for dist in owners.get(top, [top]):
            found.setdefault(_normal(dist), set()).add(where)
    return found


def test_every_import_is_declared() -> None:
    imported = _imported_distributions()
    missing = {dist: sorted(where)[:3] for dist, where in imported.items() if dist not in _declared()}
    assert not missing, f"imported but not declared in pyproject.toml [project].dependencies: {missing}"


def test_every_declared_dependency_is_used() -> None:
    imported = set(_imported_distributions())
    unused = sorted(_declared() - imported - set(RUN_NOT_IMPORTED))
    assert not unused, f"declared in pyproject.toml but never imported by tiklive_assets: {unused}"


def test_the_run_not_imported_list_is_still_true() -> None:
    """An entry here that is imported after all, or no longer declared, is a stale excuse."""
    declared = _declared()
    imported = set(_imported_distributions())
    stale = sorted(name for name in RUN_NOT_IMPORTED if name not in declared or name in imported)
    assert not stale, f"RUN_NOT_IMPORTED entries to remove: {stale}"

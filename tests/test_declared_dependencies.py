"""Every third-party package the apps, tests and benches import is declared in pyproject.toml
(a package that arrives only as another's dependency can disappear with that package's next
release). Runs without Django."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCANNED = ("rentplatform", "integrations", "integrations_amsi", "tests", "bench", "manage.py")
# Modules of the repository itself (bench's helpers import each other by bare name).
LOCAL = {"rentplatform", "integrations", "integrations_amsi", "tests", "bench", "manage"}
LOCAL |= {p.stem for p in (REPO / "bench").glob("*.py")}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normal(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}


def imported() -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it."""
    found: dict[str, set[str]] = {}
    for name in SCANNED:
        root = REPO / name
        for path in root.rglob("*.py") if root.is_dir() else [root]:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL or top == "__future__":
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared():
    distributions = packages_distributions()
    wanted = declared()
    missing = {}
    for module, files in imported().items():
        names = {_normal(d) for d in distributions.get(module, [module])}
        if not names & wanted:
            missing[module] = sorted(files)[:3]
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_scan_sees_the_packages_we_know_we_import():
    assert {"django", "zeep", "requests", "urllib3", "lxml", "pytest"} <= set(imported())

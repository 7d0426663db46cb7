"""Every third-party package our code imports is a declared dependency of taskledger.

Relying on another package's dependencies (anyio through Starlette, Starlette through FastAPI)
breaks the day that package drops or re-pins them.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OURS = ("domain", "commands", "queries", "projections", "consumers", "ops")


def normalised(requirement: str) -> str:
    name = re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # The otel extra: imported only where an ImportError is handled (tracing is optional).
    requirements = [*project["dependencies"], *project["optional-dependencies"]["otel"]]
    return {normalised(r) for r in requirements}


def run_time_imports(tree: ast.AST) -> Iterator[str]:
    """Top-level module names imported outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (name for child in node.orelse for name in run_time_imports(child))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        yield from run_time_imports(node)


def test_every_imported_package_is_declared() -> None:
    distributions = packages_distributions()
    wanted = declared()
    undeclared: dict[str, set[str]] = {}
    for package in OURS:
        for path in (REPO / package).rglob("*.py"):
            if "bench" in path.parts:
                continue  # run on demand with the test extra (README, Benchmarks)
            for module in run_time_imports(ast.parse(path.read_text())):
                if module in OURS or module in sys.stdlib_module_names:
                    continue
                names = {normalised(d) for d in distributions.get(module, [module])}
                if not names & wanted:
                    undeclared.setdefault(module, set()).add(str(path.relative_to(REPO)))
    assert undeclared == {}

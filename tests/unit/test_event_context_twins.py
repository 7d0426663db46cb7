"""consumers/ and projections/ may not share code, so each has bind_event_context: the same."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_of(path: Path) -> str:
    """The module's code, its docstring left out."""
    module = ast.parse(path.read_text())
    body = module.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return ast.dump(ast.Module(body=body, type_ignores=[]))


def test_the_two_event_contexts_are_the_same_code() -> None:
    assert code_of(REPO / "consumers" / "event_context.py") == code_of(
        REPO / "projections" / "event_context.py"
    )

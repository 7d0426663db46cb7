"""The README is the operator's reference: every setting and every command is in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command

from ops.cli import app
from ops.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_configuration_table(field: str) -> None:
    assert f"| `TASKLEDGER_{field.upper()}` |" in README


def _commands() -> list[str]:
    root = get_command(app)
    found: list[str] = []
    for name, command in getattr(root, "commands", {}).items():
        subcommands = getattr(command, "commands", None)
        found += [f"{name} {sub}" for sub in subcommands] if subcommands else [name]
    return sorted(found)


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_cli_table(command: str) -> None:
    assert f"`taskledger {command}" in README

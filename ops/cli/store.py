"""The event store's own commands: ``migrate`` (its schema's one owner, ops.schema)."""

from __future__ import annotations

import typer

from ops.cli.environment import exit_on_invalid_setting, operator_settings


def migrate() -> None:
    """Create the event store's tables if missing; safe to run at once from many processes."""
    from ops.schema import migrate as create_missing

    settings = operator_settings()
    with exit_on_invalid_setting():
        created = create_missing(settings)
    typer.echo(
        f"created the event tables of {', '.join(created)}" if created else "already migrated"
    )

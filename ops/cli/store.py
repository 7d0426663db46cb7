"""The event store's own commands: ``migrate`` (its schema's one owner, ops.schema), and
``backup`` / ``restore`` of the embedded stores (ops.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.cli.environment import EXIT_REFUSED, exit_on_invalid_setting, operator_settings, refuse


def migrate() -> None:
    """Create the event store's tables if missing; safe to run at once from many processes."""
    from ops.schema import migrate as create_missing

    settings = operator_settings()
    with exit_on_invalid_setting():
        created = create_missing(settings)
    typer.echo(
        f"created the event tables of {', '.join(created)}" if created else "already migrated"
    )


Directory = Annotated[Path, typer.Argument(help="The backup's directory.")]


def backup(directory: Directory) -> None:
    """A consistent online copy of the embedded event stores (while `up` runs), with a manifest."""
    from ops.backup import BackupError
    from ops.backup import backup as take

    settings = operator_settings()
    with exit_on_invalid_setting():
        try:
            manifest = take(settings, directory)
        except BackupError as exc:
            raise refuse(str(exc), EXIT_REFUSED) from None
    for store in manifest.stores:
        typer.echo(f"{store.file}: {store.events} events, position {store.position}")
    typer.echo(f"backup in {directory} ({directory / 'manifest.json'})")


def restore(directory: Directory) -> None:
    """Put a backup into a stopped data dir; read models are rebuilt on the next start."""
    from ops.backup import BackupError
    from ops.backup import restore as put_back

    settings = operator_settings()
    with exit_on_invalid_setting():
        try:
            manifest = put_back(settings, directory)
        except BackupError as exc:
            raise refuse(str(exc), EXIT_REFUSED) from None
    events = sum(store.events for store in manifest.stores)
    typer.echo(
        f"restored {events} events from {manifest.created_at} into {settings.data_dir}; "
        "the next `taskledger up` rebuilds every read model, and every session has ended"
    )

"""The ``taskledger`` command: one sub-command group per module in this package."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from ops.cli import audit, events, mail, projections, serve, up
from ops.cli.environment import EXIT_REFUSED, EXIT_UNAVAILABLE, unreachable
from ops.cli.store import backup, migrate, restore


class TaskledgerCommands(TyperGroup):
    """Every command: an engine that does not answer is one line on stderr and exit status 3,
    not a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except Exception as error:
            from ops.schema import SchemaMissingError

            if isinstance(error, SchemaMissingError):
                typer.echo(str(error), err=True)
                raise typer.Exit(EXIT_REFUSED) from None
            reason = unreachable(error)
            if reason is None:
                raise
            typer.echo(reason, err=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None


app = typer.Typer(
    name="taskledger",
    cls=TaskledgerCommands,
    help="taskledger: an event-sourced task manager backend and its operator tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(up.up)
app.command("migrate")(migrate)
app.command("backup")(backup)
app.command("restore")(restore)
app.add_typer(serve.app, name="serve")
app.add_typer(projections.app, name="projections")
app.add_typer(audit.app, name="audit")
app.add_typer(events.app, name="events")
app.add_typer(mail.app, name="mail")


def main() -> None:
    app()

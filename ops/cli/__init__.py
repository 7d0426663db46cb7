"""The ``taskledger`` command: one sub-command group per module in this package."""

from __future__ import annotations

import typer

from ops.cli import audit, events, mail, projections, serve, up

app = typer.Typer(
    name="taskledger",
    help="taskledger: an event-sourced task manager backend and its operator tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(up.up)
app.add_typer(serve.app, name="serve")
app.add_typer(projections.app, name="projections")
app.add_typer(audit.app, name="audit")
app.add_typer(events.app, name="events")
app.add_typer(mail.app, name="mail")


def main() -> None:
    app()

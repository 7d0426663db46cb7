"""``taskledger audit task ID [--as-of T]`` / ``audit user ID``: who changed what, and when."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from domain.errors import NotFound
from ops.cli.environment import console, operator_settings, refuse
from ops.cli.instants import identifier, instant

if TYPE_CHECKING:  # the event store and rich are imported by the commands that use them
    from rich.table import Table

    from queries.history.ports import HistoryEntry, TaskState

EXIT_NOT_FOUND = 1

app = typer.Typer(
    help="The event history of a task or a user, or a task as it was at an instant.",
    no_args_is_help=True,
)


def show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(repr(item) for item in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def history_table(title: str, entries: Sequence[HistoryEntry]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("version", justify="right")
    table.add_column("event")
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    table.add_column("changes", overflow="fold")
    for entry in entries:
        changes = Text("\n").join(
            # Text, not markup: titles and names are user input and may contain "[...]".
            Text(f"{name}: {show(change.old)} → {show(change.new)}")
            for name, change in entry.changes.items()
        )
        table.add_row(
            str(entry.version), entry.type, show(entry.at), entry.actor_id or "-", changes
        )
    return table


def state_table(title: str, state: TaskState) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name in (
        "id",
        "owner_id",
        "title",
        "description",
        "status",
        "priority",
        "due_date",
        "labels",
        "created_at",
        "updated_at",
        "version",
    ):
        value = getattr(state, name)
        table.add_row(name, Text(show(value) if name not in ("id", "owner_id") else str(value)))
    return table


@app.command("task")
def task(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="ISO 8601 date-time with a zone: show the task as it was."),
    ] = None,
) -> None:
    """A task's every change (deleted tasks included), or its state at --as-of."""
    from ops.audit import open_audit_logs

    uid = identifier(task_id, "task")
    moment = instant(as_of, "--as-of")
    settings = operator_settings()
    with open_audit_logs(settings, ["Tasks"]) as audit:
        history = audit.task_history()
        try:
            if moment is None:
                table = history_table(f"task {uid}", history.history(uid, owner_id=None))
            else:
                state = history.as_of(uid, moment, owner_id=None)
                table = state_table(f"task {uid} as of {show(moment)}", state)
        except NotFound as exc:
            raise refuse(str(exc), EXIT_NOT_FOUND) from None
    console().print(table)


@app.command("user")
def user(user_id: Annotated[str, typer.Argument(help="The user's id.")]) -> None:
    """A user's registration, renames, reset requests and password changes; never a secret."""
    from ops.audit import open_audit_logs

    uid = identifier(user_id, "user")
    settings = operator_settings()
    with open_audit_logs(settings, ["Identity"]) as audit:
        try:
            entries = audit.user_history().history(uid)
        except NotFound as exc:
            raise refuse(str(exc), EXIT_NOT_FOUND) from None
    console().print(history_table(f"user {uid}", entries))

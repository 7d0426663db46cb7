"""``taskledger events export``: the event store as JSON lines, for an auditor's tools."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

import typer

from ops.cli.environment import operator_settings, refuse
from ops.cli.instants import instant

# Spelled out rather than imported from ops.bootstrap (the whole write side) for --help's sake;
# tests/unit/ops/test_cli_startup.py checks it against ops.bootstrap.APPLICATIONS.
APPLICATIONS_HELP = "Only this application's log: Identity or Tasks."

app = typer.Typer(help="The event store itself, for auditors.", no_args_is_help=True)


@app.command("export")
def export(
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this ISO 8601 date-time (zoned).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only events before this ISO 8601 date-time (zoned).")
    ] = None,
    application: Annotated[
        str | None,
        typer.Option("--app", help=APPLICATIONS_HELP),
    ] = None,
) -> None:
    """Every event as one JSON object per line on stdout, each log in order, secrets redacted.

    Each line: application, position, type, originator_id, version, at, meta, data.
    """
    from ops.audit import UnknownApplicationError, application_named, open_audit_logs
    from ops.bootstrap import APPLICATIONS
    from queries.history.export import to_json_line

    start, end = instant(since, "--since"), instant(until, "--until")
    try:
        names = [application_named(application)] if application else list(APPLICATIONS)
    except UnknownApplicationError as exc:
        raise refuse(str(exc)) from None
    settings = operator_settings()
    out = sys.stdout
    try:
        with open_audit_logs(settings, names) as audit:
            for name in names:
                for event in audit.export(name).events(since=start, until=end):
                    out.write(to_json_line(event) + "\n")
            out.flush()
    except BrokenPipeError:
        # The reader stopped early (``| head``): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not complain again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

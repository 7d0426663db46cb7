"""``taskledger mail``: the parked mails (dead letters) and the broker's AsyncAPI document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ops.cli.environment import console, exit_on_invalid_setting, operator_settings, refuse

if TYPE_CHECKING:  # Redis, the mailer and rich are imported by the commands that use them
    from consumers.dead_letters import RedisDeadLetters
    from ops.settings import Settings

app = typer.Typer(
    help="Mail: parked (dead-lettered) mails and the message contract.", no_args_is_help=True
)
letters_app = typer.Typer(
    help="Mails that could not be sent: inspect, re-drive, purge.", no_args_is_help=True
)
app.add_typer(letters_app, name="dead-letters")

T = TypeVar("T")
Ids = Annotated[list[str] | None, typer.Argument(help="Dead-letter entry ids (see list).")]


def _with_dead_letters(settings: Settings, work: Callable[[RedisDeadLetters], Awaitable[T]]) -> T:
    from ops.bootstrap import redis_client
    from ops.mailer import dead_letters

    async def run() -> T:
        client = redis_client(settings)
        try:
            return await work(dead_letters(settings, client))
        finally:
            await client.aclose()

    # Redis down is answered by every command alike (ops/cli/__init__.py): one line, exit 3.
    with exit_on_invalid_setting():
        return asyncio.run(run())


@letters_app.command("list")
def list_letters(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """The parked mails: kind, attempts, when and why they failed. Never the token."""
    letters = _with_dead_letters(operator_settings("redis_url"), lambda d: d.entries(limit))
    if as_json:
        for letter in letters:
            typer.echo(
                json.dumps(
                    {
                        "id": letter.entry_id,
                        "kind": letter.kind,
                        "message_id": letter.message_id,
                        "attempts": letter.attempts,
                        "failed_at": letter.failed_at,
                        "reason": letter.reason,
                        "stream": letter.stream,
                    }
                )
            )
        return
    from rich.table import Table

    table = Table("id", "kind", "attempts", "failed at", "message id", "reason")
    for letter in letters:
        table.add_row(
            letter.entry_id,
            letter.kind,
            str(letter.attempts),
            letter.failed_at,
            letter.message_id,
            letter.reason,
        )
    console().print(table)
    typer.echo(f"{len(letters)} parked mail(s)")


@letters_app.command("retry")
def retry(ids: Ids = None) -> None:
    """Put parked mails back on their streams, with fresh attempts (all when no id is given)."""
    count = _with_dead_letters(operator_settings("redis_url"), lambda d: d.retry(ids or ()))
    if ids and count < len(ids):
        raise refuse(f"re-driven {count} of {len(ids)}: the others are not parked")
    typer.echo(f"re-driven {count} mail(s)")


@letters_app.command("purge")
def purge(
    ids: Ids = None,
    everything: Annotated[bool, typer.Option("--all", help="Purge every parked mail.")] = False,
) -> None:
    """Drop parked mails for good: the given ids, or every one with --all."""
    if not ids and not everything:
        raise refuse("name the ids to purge, or pass --all")
    count = _with_dead_letters(operator_settings("redis_url"), lambda d: d.purge(ids or ()))
    typer.echo(f"purged {count} mail(s)")


@app.command("asyncapi")
def show_asyncapi(
    yaml: Annotated[bool, typer.Option("--yaml", help="YAML instead of JSON.")] = False,
) -> None:
    """The AsyncAPI 3.0 document of the mail streams and their message schemas (FastStream's)."""
    from ops.mailer import asyncapi_document

    schema = asyncapi_document(operator_settings())
    typer.echo(schema.to_yaml() if yaml else json.dumps(schema.to_jsonable(), indent=2))

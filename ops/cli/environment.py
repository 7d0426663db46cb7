"""What every command shares: its settings (or one line naming the bad one, exit 2), one-line
refusals, the console its tables go to, and the line it prints when an engine does not answer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from ops.settings import InvalidSetting, Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_BAD_SETTING = 2
EXIT_UNAVAILABLE = 3
SETTINGS_PREFIX = "TASKLEDGER_"
# Operator commands are interactive: an engine that is down fails them in seconds.
OPERATOR_CONNECT_TIMEOUT = 5


def settings_or_exit() -> Settings:
    with exit_on_invalid_setting():
        return load_settings()


def operator_settings(*needs: str) -> Settings:
    """The settings of an operator command (audit, events, projections, mail).

    Settings left unset (engine URLs) are those of the ``taskledger up`` running on the data
    dir, as it gives them to its children. ``needs`` names the URL settings the command cannot
    do without: when one is unset and no ``up`` runs, the command says so and exits 3.
    """
    from ops.embedded import running_up

    settings = settings_or_exit()
    unset = {name for name in Settings.model_fields if getattr(settings, name) is None}
    if unset:
        data_dir = settings.data_dir.resolve()
        up = running_up(data_dir)
        given: dict[str, Any] = {
            name: value
            for key, value in (up or {}).items()
            if (name := key.removeprefix(SETTINGS_PREFIX).lower()) in unset
        }
        missing = [name for name in needs if name in unset and name not in given]
        if missing:
            setting = f"{SETTINGS_PREFIX}{missing[0].upper()}"
            # An up given that engine's URL runs no engine of its own to point at.
            reason = (
                f"no taskledger up is running on {data_dir}: start one, or set {setting}"
                if up is None
                else f"the taskledger up on {data_dir} was given {setting}: set it here too"
            )
            raise refuse(reason, EXIT_UNAVAILABLE)
        if given:
            # Validated like the environment's own values (init arguments take precedence).
            with exit_on_invalid_setting():
                try:
                    settings = Settings(**given)
                except ValidationError as exc:
                    reason = exc.errors()[0]["msg"]
                    raise InvalidSetting(
                        f"invalid setting in {data_dir}/up.json: {reason}"
                    ) from None
    if "postgres_connect_timeout" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"postgres_connect_timeout": OPERATOR_CONNECT_TIMEOUT})


@contextmanager
def exit_on_invalid_setting() -> Iterator[None]:
    """A setting found missing or bad later on (a URL a process needs) stops it the same way."""
    try:
        yield
    except InvalidSetting as exc:
        raise refuse(str(exc), EXIT_BAD_SETTING) from None


def refuse(reason: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print the one-line reason on stderr; the caller raises the returned Exit."""
    typer.echo(reason, err=True)
    return typer.Exit(code)


def console() -> Console:
    """Where tables go: stdout; piped, a wide fixed width, so ids and times never fold."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def unreachable(error: BaseException) -> str | None:
    """One line naming the engine a connection error is about; None for any other error."""
    # Imported here: only a failing command pays for them.
    import psycopg
    import pymongo.errors
    import redis.exceptions
    from eventsourcing.persistence import OperationalError

    if isinstance(error, BaseExceptionGroup):
        return next(filter(None, map(unreachable, error.exceptions)), None)
    engines: list[tuple[tuple[type[BaseException], ...], str]] = [
        ((OperationalError, psycopg.OperationalError), "the event store"),
        ((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError), "Redis"),
        ((pymongo.errors.ConnectionFailure,), "the document store (MongoDB)"),
    ]
    for kinds, engine in engines:
        if isinstance(error, kinds):
            detail = " ".join(str(error).split())[:200] or type(error).__name__
            return f"{engine} is unreachable: {detail}"
    return None

"""What every command does first: read the settings, or stop with one line naming the bad one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from ops.settings import InvalidSetting, Settings, load_settings

EXIT_BAD_SETTING = 2


def settings_or_exit() -> Settings:
    with exit_on_invalid_setting():
        return load_settings()


@contextmanager
def exit_on_invalid_setting() -> Iterator[None]:
    """A setting found missing or bad later on (a URL a process needs) stops it the same way."""
    try:
        yield
    except InvalidSetting as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_SETTING) from None

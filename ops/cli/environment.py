"""What every command does first: read the settings, or stop with one line naming the bad one."""

from __future__ import annotations

import typer

from ops.settings import InvalidSetting, Settings, load_settings

EXIT_BAD_SETTING = 2


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except InvalidSetting as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_SETTING) from None

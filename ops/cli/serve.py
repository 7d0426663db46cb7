"""``taskledger serve api|projector|mailer``: one production process, configured from the env."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run one process of the system, configured from the environment.",
                  no_args_is_help=True)

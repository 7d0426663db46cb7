"""Importing the CLI stays light: every ``taskledger`` process (each child of ``up``) imports
it, and only the command that runs should pay for its engines and frameworks."""

from __future__ import annotations

import json
import subprocess
import sys

from ops.bootstrap import APPLICATIONS
from ops.cli.events import APPLICATIONS_HELP

HEAVY = (
    "ops.api",
    "ops.audit",
    "ops.bootstrap",
    "ops.mailer",
    "ops.projections",
    "eventsourcing",
    "fastapi",
    "faststream",
    "pymongo",
    "redis",
    "rich",
    "uvicorn",
)


def test_importing_the_cli_imports_no_engine_client_nor_server() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import json, sys, ops.cli; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = json.loads(loaded.stdout)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == []


def test_the_app_option_names_every_application() -> None:
    for name in APPLICATIONS:
        assert name in APPLICATIONS_HELP

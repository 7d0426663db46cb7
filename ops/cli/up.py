"""``taskledger up``: the whole system on embedded engines, in one supervised process tree."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ops.cli.environment import settings_or_exit
from ops.cli.serve import Host, Port
from ops.embedded import (
    LOOPBACK,
    Plan,
    build_children,
    remove_discovery_file,
    remove_env_file,
    running,
    write_discovery_file,
    write_env_file,
)
from ops.engines import port_open


class DataDirInUseError(Exception):
    pass


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """One ``up`` per data dir: two would corrupt each other's engines' files."""
    path = data_dir / "up.lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise DataDirInUseError(
                f"{data_dir} is in use by another taskledger up (pid {holder})"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        # The kernel drops the lock when this process ends, however it ends.
        yield


def _say(line: str) -> None:
    typer.echo(f"taskledger up: {line}", err=True)


def up(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Everything on embedded engines, data under TASKLEDGER_DATA_DIR or ./.taskledger.

    Ctrl-C or SIGTERM stops the whole tree; a second run on the same data dir resumes.
    """
    settings = settings_or_exit()
    plan = Plan.for_run(settings, host, port)
    try:
        with exclusive(plan.data_dir):
            status = _run(plan)
    except DataDirInUseError as busy:
        _say(str(busy))
        raise typer.Exit(1) from None
    raise typer.Exit(status)


def _run(plan: Plan) -> int:
    from ops.schema import migrate

    # Here, not at the top: every child imports the CLI, and only up needs its metrics server.
    from ops.supervisor import Supervisor

    if port_open(plan.probe_host, plan.port):
        _say(f"port {plan.port} on {plan.host} is already in use (choose one with --port)")
        return 1
    # Made once here, before any child could race to create it.
    plan.settings.secret()
    # Likewise the event store's tables: the children never create them (ops.schema).
    created = migrate(plan.settings)
    if created:
        _say(f"created the event tables of {', '.join(created)}")
    specs = running(plan)
    stages = build_children(plan, specs)
    write_env_file(plan, specs)
    write_discovery_file(plan, specs)
    _say(f"data in {plan.data_dir}, logs in {plan.logs}")
    # The supervisor's own /metrics: restarts per child (loopback only, like the workers').
    metrics_port = plan.ports.port("up-metrics")
    _say(f"restarts counted at http://{LOOPBACK}:{metrics_port}/metrics")

    def announce() -> None:
        typer.echo(f"taskledger is up at {plan.url}  (docs: /docs)")

    try:
        supervisor = Supervisor(stages, say=_say, metrics_address=(LOOPBACK, metrics_port))
        return supervisor.run(on_ready=announce)
    finally:
        remove_discovery_file(plan)
        remove_env_file(plan)

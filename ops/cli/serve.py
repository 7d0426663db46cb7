"""``taskledger serve api|projector|mailer``: one production process, configured from the env.

Each command imports what it runs (the API, the projector, the mailer and their engines'
clients): importing the CLI must not cost every process the others' start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ops.cli.environment import exit_on_invalid_setting, settings_or_exit
from ops.settings import Routes

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ops.logs import Level

app = typer.Typer(
    help="Run one process of the system, configured from the environment.",
    no_args_is_help=True,
)

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")]


def serve_http(
    asgi: ASGIApp | str, host: str, port: int, level: Level, *, workers: int = 1
) -> None:
    """Every HTTP process (and the benchmark's baseline) runs under the same uvicorn setup.

    With several workers, ``asgi`` is the import path of a factory each worker calls.
    """
    import uvicorn

    uvicorn.run(
        asgi,
        host=host,
        port=port,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        # Our root handler formats uvicorn's records too; per-request lines come from the app,
        # which knows the request id and user, so uvicorn's access log stays off.
        log_config=None,
        log_level=level.lower(),
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )


@app.command("api")
def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    routes: Annotated[
        Routes, typer.Option(help="Serve only the auth routes, only the task routes, or all.")
    ] = "all",
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving the port; /metrics merges them.")
    ] = 1,
) -> None:
    """The HTTP API alone; --routes lets auth and tasks be deployed and scaled apart."""
    from ops.api import ROUTES_VARIABLE, build_api
    from ops.bootstrap import redis_url
    from ops.logs import configure_logging
    from ops.schema import require_schema

    settings = settings_or_exit()
    with exit_on_invalid_setting():
        settings.shared_secret()
        redis_url(settings)  # checked here: inside the lifespan it would be a traceback
    require_schema(settings)  # likewise
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if workers == 1:
        serve_http(build_api(settings, routes), host, port, settings.log_level)
        return
    # The workers start as new interpreters: they read the routes and the metrics directory
    # from the environment, before prometheus-client is imported.
    os.environ[ROUTES_VARIABLE] = routes
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_directory())
    serve_http("ops.api:api_from_environment", host, port, settings.log_level, workers=workers)


def _metrics_directory() -> Path:
    """PROMETHEUS_MULTIPROC_DIR emptied (last run's counts must not add up with ours), or a
    fresh directory when it is unset."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        return Path(tempfile.mkdtemp(prefix="taskledger-metrics-"))
    directory = Path(given)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


MetricsPort = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="Serve Prometheus /metrics on this port."),
]
MetricsHost = Annotated[str, typer.Option(help="Interface /metrics listens on.")]


@app.command("projector")
def projector(metrics_port: MetricsPort = None, metrics_host: MetricsHost = "0.0.0.0") -> None:
    """Every registered projection in one process; SIGTERM applies the batch in hand, then exits."""
    from ops.logs import configure_logging
    from ops.metrics import serve_metrics
    from ops.observability import configure_tracing

    # Before /metrics is served: the projections' metrics exist once their modules are imported.
    from ops.projections import run_projector
    from ops.schema import require_schema

    settings = settings_or_exit()
    require_schema(settings)  # before anything starts: one line, not a traceback
    configure_logging(settings.log_level, json_lines=settings.log_json)
    configure_tracing(settings, "projector")
    if metrics_port is not None:
        serve_metrics(metrics_port, metrics_host)
    with exit_on_invalid_setting():
        asyncio.run(_until_signalled(lambda stop: run_projector(settings, stop)))


async def _until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(stop)


@app.command("mailer")
def mailer(metrics_port: MetricsPort = None, metrics_host: MetricsHost = "0.0.0.0") -> None:
    """The mail consumer, one of the group; SIGTERM lets the mails in flight finish, then exits."""
    from ops.logs import configure_logging
    from ops.mailer import build_mailer
    from ops.metrics import serve_metrics
    from ops.observability import configure_tracing

    settings = settings_or_exit()
    with exit_on_invalid_setting():
        settings.shared_secret()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    configure_tracing(settings, "mailer")
    with exit_on_invalid_setting():
        process = build_mailer(settings)
    if metrics_port is not None:
        serve_metrics(metrics_port, metrics_host)
    # Start and stop lines at INFO: shown or not by TASKLEDGER_LOG_LEVEL like any other.
    asyncio.run(process.app.run(log_level=logging.INFO))

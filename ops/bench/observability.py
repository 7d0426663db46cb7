"""Cost of the per-request observability middleware (latency histogram, traceparent, log line).

The same trivial FastAPI route is called in-process through ASGI (no sockets, so the
middleware's own cost is not hidden by network noise), bare and behind
``ObservabilityMiddleware``; the difference per request is the middleware's price.

    python -m ops.bench.observability [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from typing import Annotated

import typer
from fastapi import FastAPI
from starlette.types import ASGIApp, Message

from ops.logs import configure_logging
from ops.observability import ObservabilityMiddleware


def trivial_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return app


async def per_request_seconds(app: ASGIApp, requests: int) -> float:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    started = time.perf_counter()
    for n in range(requests):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/items/{n}",
            "raw_path": f"/items/{n}".encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {"request_id": "bench"},
        }
        await app(scope, receive, send)
    return (time.perf_counter() - started) / requests


def main(
    requests: Annotated[int, typer.Option(min=100)] = 20_000,
    rounds: Annotated[int, typer.Option(min=1)] = 5,
) -> None:
    bare = trivial_app()
    observed = ObservabilityMiddleware(trivial_app())
    names = ("bare route (baseline)", "middleware, no log line", "middleware + JSON log line")
    results: dict[str, list[float]] = {name: [] for name in names}
    with open(os.devnull, "w") as sink:
        # The request line is INFO: measured dropped (LOG_LEVEL=WARNING) and written as JSON.
        configure_logging("INFO", json_lines=True)
        logging.getLogger().handlers[0].setStream(sink)  # type: ignore[attr-defined]
        for app in (bare, observed):
            asyncio.run(per_request_seconds(app, 1000))  # warm-up: imports, route compilation
        for _ in range(rounds):
            # Interleaved, so drift on a shared machine hits every variant alike.
            logging.getLogger().setLevel(logging.WARNING)
            results[names[0]].append(asyncio.run(per_request_seconds(bare, requests)))
            results[names[1]].append(asyncio.run(per_request_seconds(observed, requests)))
            logging.getLogger().setLevel(logging.INFO)
            results[names[2]].append(asyncio.run(per_request_seconds(observed, requests)))
    medians = {name: statistics.median(values) * 1e6 for name, values in results.items()}
    baseline = medians[names[0]]
    for name, micros in medians.items():
        extra = "" if name == names[0] else f"  (+{micros - baseline:.1f} µs over the baseline)"
        typer.echo(f"{name:28s} {micros:8.1f} µs/request{extra}")
    typer.echo(f"median of {rounds} rounds x {requests} in-process requests each")


if __name__ == "__main__":
    typer.run(main)

"""The baseline server: one trivial FastAPI endpoint under the same uvicorn setup as the API.

``python -m ops.bench.trivial --port P`` serves ``POST /v1/tasks``, which validates the same
body as the real route and answers the same shape, with no work behind it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

import typer
from fastapi import FastAPI, status
from pydantic import BaseModel, Field

from ops.cli.serve import Host, Port, serve_http
from ops.logs import configure_logging


class CreateTask(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""


class Created(BaseModel):
    id: UUID
    version: int
    position: int


def trivial_app() -> FastAPI:
    app = FastAPI(title="trivial baseline")

    @app.post("/v1/tasks", status_code=status.HTTP_201_CREATED)
    async def create(body: CreateTask) -> Created:
        """Does nothing: the cost of FastAPI and uvicorn alone."""
        return Created(id=uuid4(), version=1, position=0)

    return app


def main(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    configure_logging("WARNING", json_lines=True)
    serve_http(trivial_app(), host, port, "WARNING")


if __name__ == "__main__":
    typer.run(main)

"""Errors nobody mapped and outages of a dependency, over real HTTP through the production app.

uvicorn runs as ``taskledger serve api`` runs it: no logging config of its own, so its records
reach the root logger (and pytest's capture) exactly like ours.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import redis.exceptions
import uvicorn
from eventsourcing.persistence import OperationalError
from fastapi import FastAPI

from ops.api import build_api
from ops.engines import free_port
from ops.settings import Settings
from tests.fixtures.api import make_settings


class Boom(RuntimeError):
    pass


@contextmanager
def serving(app: FastAPI) -> Iterator[httpx.Client]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("API server did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def local_settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'events.sqlite'}", redis_url, redis_prefix
    )


def app_raising(settings: Settings, error: Exception) -> FastAPI:
    app = build_api(settings)

    async def fails() -> None:
        raise error

    app.add_api_route("/fails", fails)
    return app


def test_an_unexpected_error_is_a_problem_with_the_request_id_logged_once(
    local_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(app_raising(local_settings, Boom("kaboom"))) as client:
        caplog.clear()
        response = client.get("/fails", headers={"X-Request-ID": "req-500"})
        time.sleep(0.2)  # let the server finish logging after the response went out

    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"] == "req-500"
    body = response.json()
    assert body["status"] == 500
    assert "kaboom" not in response.text  # never the exception's text
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], Boom)]
    assert len(logged) == 1, [r.getMessage() for r in logged]


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (redis.exceptions.ConnectionError("refused"), "redis"),
        (redis.exceptions.TimeoutError("timed out"), "redis"),
        (OperationalError("server closed the connection"), "event store"),
        (psycopg.OperationalError("connection failed"), "event store"),
    ],
)
def test_an_unreachable_dependency_is_a_503_naming_it(
    local_settings: Settings, error: Exception, dependency: str
) -> None:
    with serving(app_raising(local_settings, error)) as client:
        response = client.get("/fails")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["dependency"] == dependency
    assert "x-request-id" in response.headers


def test_login_while_redis_is_down_is_a_503_not_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Nobody listens on this port: sessions and rate limits cannot be reached.
    down = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'events.sqlite'}",
        f"redis://127.0.0.1:{free_port()}/0",
        "unused:",
    )
    with serving(build_api(down)) as client:
        response = client.post(
            "/v1/auth/login", json={"email": "someone@example.com", "password": "whatever-123"}
        )
    assert response.status_code == 503, response.text
    assert response.json()["dependency"] == "redis"
    assert "retry-after" in response.headers


def test_login_while_redis_hangs_is_a_503_not_a_hung_request(tmp_path: Path) -> None:
    # The kernel completes connections to a listening socket nobody accepts from: a Redis that
    # takes requests and never answers. Without socket timeouts the login would wait forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        hung = make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'events.sqlite'}",
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            "unused:",
        )
        with serving(build_api(hung)) as client:
            response = client.post(
                "/v1/auth/login",
                json={"email": "someone@example.com", "password": "whatever-123"},
                timeout=20,
            )
    assert response.status_code == 503, response.text
    assert response.json()["dependency"] == "redis"

"""Health endpoints over real HTTP, on both event stores and the real Redis."""

from __future__ import annotations

from pathlib import Path

import httpx

from ops.engines import free_port
from ops.settings import Settings
from tests.fixtures.api import Server, make_settings


def test_live_and_ready_answer_200_when_dependencies_answer(api: httpx.Client) -> None:
    assert api.get("/health/live").status_code == 200
    ready = api.get("/health/ready")
    assert ready.status_code == 200
    assert set(ready.json()["checked"]) == {"event_store", "redis"}


def test_ready_names_redis_when_it_does_not_answer(tmp_path: Path, settings: Settings) -> None:
    # A port nobody listens on: Redis is "down" for this API only.
    broken = make_settings(
        tmp_path, settings.event_store_url, f"redis://127.0.0.1:{free_port()}/0", "unused:"
    )
    with Server(broken) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["dependency"] == "redis"

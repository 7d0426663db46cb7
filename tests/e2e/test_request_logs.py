"""``taskledger serve api`` logs JSON lines carrying the request, user and correlation ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.engines import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")} | {
        "TASKLEDGER_DATA_DIR": str(tmp_path),
        "TASKLEDGER_REDIS_URL": redis_url,
        "TASKLEDGER_REDIS_PREFIX": redis_prefix,
        "TASKLEDGER_JWT_SECRET": "log-test-secret-" + redis_prefix,
        "TASKLEDGER_LOG_JSON": "true",
        "TASKLEDGER_ARGON2_TIME_COST": "1",
        "TASKLEDGER_ARGON2_MEMORY_COST": "64",
    }
    # As every deployment does before its servers start: they never create the schema.
    subprocess.run(
        [sys.executable, "-m", "ops", "migrate"], cwd=REPO, env=env, check=True, timeout=60
    )
    log_path = tmp_path / "api.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", "serve", "api", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve api did not start:\n" + log_path.read_text())
            time.sleep(0.1)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(30)


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text().splitlines():
        # Every line is JSON: a line that is not would break a log shipper.
        entry = json.loads(text)
        assert isinstance(entry, dict)
        lines.append(entry)
    return lines


def test_request_lines_carry_request_user_and_correlation_ids(served: tuple[str, Path]) -> None:
    url, log_path = served
    credentials = {"email": f"l{uuid.uuid4().hex[:8]}@example.com", "password": "pw-123456789"}
    with httpx.Client(base_url=url, timeout=30) as api:
        assert api.post("/v1/auth/register", json=credentials).status_code == 201
        token = api.post("/v1/auth/login", json=credentials).json()["access_token"]
        user_id = api.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()["id"]
        request_id = f"req-{uuid.uuid4().hex}"
        created = api.post(
            "/v1/tasks",
            json={"title": "logged"},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
        )
        assert created.status_code == 201
        assert created.headers["X-Request-ID"] == request_id

    deadline = time.monotonic() + 10
    while True:
        mine = [e for e in json_lines(log_path) if e.get("request_id") == request_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine, "no log line carries the request id"
    line = mine[-1]
    assert line["message"] == "request"
    assert line["route"] == "/v1/tasks"
    assert line["status"] == 201
    assert line["user_id"] == user_id
    assert line["correlation_id"] == request_id
    assert line["level"] == "info"
    assert "time" in line

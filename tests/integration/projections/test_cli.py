"""``taskledger projections status|rebuild`` and ``serve projector``, as an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner, Result

from ops import projections as registry
from ops.cli import app as cli
from ops.engines import free_port
from ops.projections import ReadClients
from ops.settings import Settings
from tests.fixtures.projections import Stores, TitlesProjection, write_history


def _env(settings: Settings) -> dict[str, str | None]:
    return {
        "TASKLEDGER_DATA_DIR": str(settings.data_dir),
        "TASKLEDGER_EVENT_STORE_URL": settings.event_store_url,
        "TASKLEDGER_MONGO_URL": settings.mongo_url,
        "TASKLEDGER_REDIS_URL": settings.redis_url,
        "TASKLEDGER_REDIS_PREFIX": settings.redis_prefix,
        "TASKLEDGER_PROJECTION_REBUILD_GRACE": "2",
    }


def run_cli(settings: Settings, *args: str) -> Result:
    return CliRunner(env=_env(settings)).invoke(cli, list(args))


@pytest.fixture
def registered() -> Iterator[None]:
    """The test projection, registered as a read model is in ops/projections.py."""

    def titles(settings: Settings, clients: ReadClients) -> TitlesProjection:
        return TitlesProjection(clients.db)

    registry.PROJECTIONS.append(titles)
    yield
    registry.PROJECTIONS.remove(titles)


def test_rebuilding_an_unknown_projection_fails_with_one_line(stores: Stores) -> None:
    result = run_cli(stores.settings, "projections", "rebuild", "no-such-projection")
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0
    assert "unknown projection 'no-such-projection'" in result.stderr


def test_rebuild_needs_a_name_or_all(stores: Stores) -> None:
    result = run_cli(stores.settings, "projections", "rebuild")
    assert result.exit_code != 0
    assert "NAME or --all" in result.stderr


@pytest.mark.usefixtures("registered")
def test_rebuild_then_status(stores: Stores) -> None:
    write_history(stores.write, tasks=5, poison_at=1)

    rebuilt = run_cli(stores.settings, "projections", "rebuild", "titles")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert "titles: g2 is live (replaced g1), 1 parked event(s)" in rebuilt.stdout

    status = run_cli(stores.settings, "projections", "status")
    assert status.exit_code == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "titles" in line)
    assert "g2 · v1" in row
    assert "live" in row
    heads = [str(log.head()) for log in stores.logs.values()]
    assert all(head in status.stdout for head in heads)

    in_place = run_cli(stores.settings, "projections", "rebuild", "--all", "--in-place")
    assert in_place.exit_code == 0, in_place.stderr
    assert "titles: g2 is live (rebuilt in place), 1 parked event(s)" in in_place.stdout


def test_serve_projector_serves_metrics_and_stops_on_sigterm(stores: Stores) -> None:
    port = free_port()
    env = {**os.environ, **{k: v for k, v in _env(stores.settings).items() if v is not None}}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ops.cli import main; main()",
            "serve",
            "projector",
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1].decode()
                assert time.monotonic() < deadline, "no /metrics after 30s"
                time.sleep(0.1)
        assert metrics.status_code == 200
        assert "taskledger_projection_events_applied_total" in metrics.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

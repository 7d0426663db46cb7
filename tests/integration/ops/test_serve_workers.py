"""``taskledger serve api --workers N``: N processes on one port, one /metrics for them all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from ops.engines import free_port

WORKERS = 2  # as in the command line below
REQUESTS = 40


def _live_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "taskledger_http_request_duration_seconds_count"
                and sample.labels.get("route") == "/health/live"
            ):
                return sample.value
    return 0.0


def test_workers_share_the_port_and_their_metrics_add_up(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")} | {
        "TASKLEDGER_DATA_DIR": str(tmp_path),
        "TASKLEDGER_REDIS_URL": redis_url,
        "TASKLEDGER_REDIS_PREFIX": redis_prefix,
        "TASKLEDGER_JWT_SECRET": "workers-test-secret-of-at-least-32-bytes",
        "TASKLEDGER_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    (tmp_path / "metrics").mkdir()
    # Serving processes never create the schema: migrate first, as deployments do.
    subprocess.run([sys.executable, "-m", "ops", "migrate"], env=env, check=True)
    (tmp_path / "metrics" / "counter_stale.db").write_bytes(b"left by an earlier run")
    process = subprocess.Popen(
        [sys.executable, "-m", "ops", "serve", "api", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "serve api --workers did not start"
            time.sleep(0.2)
        # Every worker must be up before counting: each one answers on its own connections.
        while len(psutil.Process(process.pid).children(recursive=True)) < WORKERS:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1)
        before = _live_count(httpx.get(url + "/metrics", timeout=5).text)
        for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over workers
            assert httpx.get(url + "/health/live", timeout=5).status_code == 200
        merged = _live_count(httpx.get(url + "/metrics", timeout=5).text)
        assert merged - before == REQUESTS
        assert not (tmp_path / "metrics" / "counter_stale.db").exists()
        workers = psutil.Process(process.pid).children(recursive=True)
        assert len({w.pid for w in workers if w.is_running()}) >= WORKERS
    finally:
        process.terminate()
        process.wait(30)

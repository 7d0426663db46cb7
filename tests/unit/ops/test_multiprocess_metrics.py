"""With PROMETHEUS_MULTIPROC_DIR set, one process's /metrics adds up every worker's counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[3]

WORKER = """
from commands.metrics import COMMANDS
from ops.metrics import HTTP_REQUEST_DURATION
for _ in range({n}):
    COMMANDS.labels("create_task", "ok").inc()
    HTTP_REQUEST_DURATION.labels("POST", "/v1/tasks", "201").observe(0.01)
"""

SCRAPE = """
from prometheus_client import generate_latest
from ops.metrics import exposition_registry
print(generate_latest(exposition_registry()).decode())
"""


def run(code: str, multiproc_dir: Path) -> str:
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_the_exposition_merges_every_worker_process(tmp_path: Path) -> None:
    run(WORKER.format(n=3), tmp_path)
    run(WORKER.format(n=4), tmp_path)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(run(SCRAPE, tmp_path))
        for sample in family.samples
    }
    command = (("command", "create_task"), ("outcome", "ok"))
    assert samples[("taskledger_commands_total", command)] == 7
    route = (("method", "POST"), ("route", "/v1/tasks"), ("status", "201"))
    assert samples[("taskledger_http_request_duration_seconds_count", route)] == 7

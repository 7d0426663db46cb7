"""Beside a running ``taskledger up``: the operator commands find its engines with no set-up,
and one scrape of its API shows every projection's position and lag."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_up import Up, bearer, operator, register_and_login

pytestmark = pytest.mark.e2e

PROJECTIONS = ("mail_relay", "task_list", "task_stats", "users")


def projection_samples(text: str) -> dict[tuple[str, str, str], float]:
    """(metric, projection, upstream) -> value, for the projection gauges of one scrape."""
    samples: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("taskledger_projection_") and "upstream" in sample.labels:
                key = (sample.name, sample.labels["projection"], sample.labels["upstream"])
                samples[key] = sample.value
    return samples


def test_operator_commands_use_the_running_up_and_its_scrape_shows_projection_lag(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    with Up(data_dir) as up:
        url = up.start()
        assert up.process is not None
        discovery = json.loads((data_dir / "up.json").read_text())
        assert discovery["pid"] == up.process.pid
        with httpx.Client(base_url=url, timeout=30) as client:
            tokens = register_and_login(
                client, f"op-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery"
            )
            created = client.post("/v1/tasks", json={"title": "audit me"}, headers=bearer(tokens))
            assert created.status_code == 201, created.text
            task_position = created.json()["position"]

            status = operator(data_dir, "projections", "status")
            assert status.returncode == 0, status.stderr
            for name in PROJECTIONS:
                assert name in status.stdout
            letters = operator(data_dir, "mail", "dead-letters", "list", "--json")
            assert letters.returncode == 0, letters.stderr
            assert letters.stdout == ""
            exported = operator(data_dir, "events", "export", "--app", "Tasks")
            assert exported.returncode == 0, exported.stderr
            assert created.json()["id"] in exported.stdout

            # The API's own scrape: every projection per upstream, caught up within seconds.
            deadline = time.monotonic() + 30
            while True:
                samples = projection_samples(client.get("/metrics").text)
                position = samples.get(("taskledger_projection_position", "task_list", "Tasks"))
                if position is not None and position >= task_position:
                    break
                assert time.monotonic() < deadline, f"no caught-up task_list position: {samples}"
                time.sleep(0.5)
            for name in PROJECTIONS:
                for upstream in ("Identity", "Tasks"):
                    if ("taskledger_projection_position", name, upstream) not in samples:
                        continue  # a projection follows only the logs it reads
                    assert samples[("taskledger_projection_lag_seconds", name, upstream)] >= 0
            assert samples[("taskledger_projection_head", "task_list", "Tasks")] == task_position
            assert samples[("taskledger_projection_lag_events", "task_list", "Tasks")] == 0
            assert ("taskledger_projection_position", "users", "Identity") in samples

        up.process.send_signal(signal.SIGTERM)
        assert up.wait() == 0, up.stderr()
    assert not (data_dir / "up.json").exists()

    # No up on the data dir: one line saying so, for the commands that need its engines.
    for args, setting in [
        (["projections", "status"], "TASKLEDGER_MONGO_URL"),
        (["mail", "dead-letters", "list"], "TASKLEDGER_REDIS_URL"),
    ]:
        refused = operator(data_dir, *args)
        assert refused.returncode == 3
        assert refused.stderr.splitlines() == [
            f"no taskledger up is running on {data_dir.resolve()}: start one, or set {setting}"
        ]

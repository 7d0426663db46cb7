"""``taskledger up`` as a user runs it: a subprocess on a free port and its own data dir."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

import httpx
import psutil
import pytest
import redis

from ops.engines import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def up_env(data_dir: Path) -> dict[str, str]:
    # Only what the test sets: an inherited TASKLEDGER_* would change what up starts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    return env | {
        "TASKLEDGER_DATA_DIR": str(data_dir),
        "TASKLEDGER_LOG_JSON": "false",
        # Cheap argon2: the hashing cost is not what this test is about.
        "TASKLEDGER_ARGON2_TIME_COST": "1",
        "TASKLEDGER_ARGON2_MEMORY_COST": "64",
    }


def operator(data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A ``taskledger`` command as an operator types it beside ``up``: only the data dir set."""
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=REPO,
        env=up_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def up_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "ops", "up", "--port", str(port)]


def run_to_end(argv: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=REPO,
        env=up_env(data_dir),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Up:
    """One run of ``taskledger up``: started, read for its URL line, stopped and waited for."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.stderr_path = data_dir.parent / f"up-{self.port}.err"
        self.env = up_env(data_dir)
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self) -> str:
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                up_argv(self.port),
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        stdout = self.process.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    pytest.fail(f"taskledger up exited {self.process.returncode}: {self.stderr()}")
                continue
            if line.startswith("taskledger is up at "):
                url = line.removeprefix("taskledger is up at ").split()[0]
                assert url == f"http://127.0.0.1:{self.port}"
                return url
        pytest.fail(f"taskledger up printed no URL in {START_TIMEOUT:.0f}s: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children(recursive=True)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait(STOP_TIMEOUT)

    def __enter__(self) -> Up:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Whatever the test did, leave nothing running.
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _names(processes: list[psutil.Process]) -> str:
    return " ".join(" ".join(p.cmdline()) for p in processes)


def assert_all_gone(processes: list[psutil.Process]) -> None:
    # is_running() compares start times too, so a recycled PID does not count as alive.
    alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {_names(alive)}"


def register_and_login(client: httpx.Client, email: str, password: str) -> dict[str, str]:
    registered = client.post(
        "/v1/auth/register", json={"email": email, "password": password, "display_name": "Ada"}
    )
    assert registered.status_code == 201, registered.text
    return login(client, email, password)


def login(client: httpx.Client, email: str, password: str) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_up_serves_stops_on_sigterm_and_resumes_with_all_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    email, password = f"ada-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery"

    with Up(data_dir) as first:
        url = first.start()
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/health/ready").status_code == 200
            tokens = register_and_login(client, email, password)
            created = client.post(
                "/v1/tasks", json={"title": "Write the report"}, headers=bearer(tokens)
            )
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            patched = client.patch(
                f"/v1/tasks/{task_id}",
                json={"status": "in_progress"},
                headers={**bearer(tokens), "If-Match": '"1"'},
            )
            assert patched.status_code == 200, patched.text
            assert patched.json()["version"] == 2

        # A second up on the same data dir is refused, and the first keeps serving.
        refused = run_to_end(up_argv(free_port()), data_dir)
        assert refused.returncode != 0
        assert "in use by another taskledger up" in refused.stderr
        # So is another data dir on the port this one serves.
        refused = run_to_end(up_argv(first.port), tmp_path / "other")
        assert refused.returncode != 0
        assert f"port {first.port} on 127.0.0.1 is already in use" in refused.stderr

        children = first.tree()
        cmdlines = _names(children)
        assert "redis-server" in cmdlines
        assert "secantusd" in cmdlines
        assert "serve api" in cmdlines
        # Nothing of a laptop run listens beyond this machine (the workers' /metrics included).
        listening = {
            connection.laddr.ip
            for child in children
            for connection in child.net_connections(kind="inet")
            if connection.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}
        # Redis answers a write only once it is on disk: a crash cannot bring a session back.
        redis_port = json.loads((data_dir / "ports.json").read_text())["redis"]
        with redis.Redis(port=redis_port) as engine:
            assert engine.config_get("appendfsync") == {"appendfsync": "always"}
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)
        assert first.wait() == 0, first.stderr()
        assert_all_gone(children)

    with Up(data_dir) as again:
        url = again.start()
        with httpx.Client(base_url=url, timeout=30) as client:
            # Users, tasks (SQLite event store) and sessions (Redis) all survived.
            refreshed = client.post(
                "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert refreshed.status_code == 200, refreshed.text
            tokens = login(client, email, password)
            # Both live sessions are listed: the one from before the restart and this one.
            sessions = client.get("/v1/users/me/sessions", headers=bearer(tokens))
            assert sessions.status_code == 200, sessions.text
            assert [item["current"] for item in sessions.json()["items"]].count(True) == 1
            assert len(sessions.json()["items"]) == 2
            patched = client.patch(
                f"/v1/tasks/{task_id}",
                json={"title": "Send the report"},
                headers={**bearer(tokens), "If-Match": '"2"'},
            )
            assert patched.status_code == 200, patched.text
            assert patched.json()["version"] == 3
        children = again.tree()
        assert again.process is not None
        again.process.send_signal(signal.SIGINT)
        assert again.wait() == 0, again.stderr()
        assert_all_gone(children)


def test_up_restarts_a_killed_engine_on_its_port_and_still_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Up(data_dir) as up:
        url = up.start()
        (redis_child,) = [p for p in up.tree() if "redis-server" in " ".join(p.cmdline())]
        redis_child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while "redis restarted" not in up.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "redis was killed by SIGKILL unexpectedly; restarting it" in up.stderr()
        assert "redis restarted" in up.stderr()
        # Same port, same data: the URL every other child was given still works.
        redis_port = json.loads((data_dir / "ports.json").read_text())["redis"]
        with redis.Redis(port=redis_port) as engine:
            assert engine.ping()
        # The API's clients may first meet a dropped connection (and rest Redis a second, as
        # after any failure): ready again within 30 s of the kill is the promise.
        with httpx.Client(base_url=url, timeout=30) as client:
            ready = client.get("/health/ready")
            while ready.status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                ready = client.get("/health/ready")
            assert ready.status_code == 200, ready.text
        metrics_port = json.loads((data_dir / "ports.json").read_text())["up-metrics"]
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'taskledger_up_child_restarts_total{child="redis"} 1.0' in scraped
        children = up.tree()
        assert up.process is not None
        up.process.send_signal(signal.SIGTERM)
        assert up.wait() == 0, up.stderr()
        assert_all_gone(children)

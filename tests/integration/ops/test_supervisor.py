"""The supervisor with real child processes: order of start and stop, signals, restarts."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ops.engines import Daemon, free_port
from ops.supervisor import RestartPolicy, Supervisor


def sleeper(name: str, logs: Path) -> Daemon:
    return Daemon(
        name,
        [sys.executable, "-c", "import time; time.sleep(120)"],
        lambda: True,
        logs / f"{name}.log",
    )


def test_sigterm_stops_children_in_reverse_order_and_exits_0(tmp_path: Path) -> None:
    children = [sleeper(name, tmp_path) for name in ("engine", "api", "worker")]
    said: list[str] = []
    pids: list[int] = []

    def ready() -> None:
        pids.extend(child.process.pid for child in children if child.process)
        # The signal arrives as a terminal's or an orchestrator's would: to this process.
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    stages = [[child] for child in children]
    status = Supervisor(stages, say=said.append, poll_interval=0.05).run(on_ready=ready)

    assert status == 0
    stops = [line for line in said if line.endswith(" stopped")]
    assert stops == ["worker stopped", "api stopped", "engine stopped"]
    assert len(pids) == 3
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"child {pid} is still running")


def test_a_child_that_dies_is_restarted_counted_and_scraped(tmp_path: Path) -> None:
    children = [sleeper("engine", tmp_path), sleeper("api", tmp_path)]
    said: list[str] = []
    first_pid: list[int] = []
    scraped: list[str] = []
    port = free_port()

    def scrape_then_stop() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("api restarted" in s for s in said):
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            scraped.append(response.read().decode())
        os.kill(os.getpid(), signal.SIGTERM)

    def ready() -> None:
        api = children[1].process
        assert api is not None
        first_pid.append(api.pid)
        api.kill()
        threading.Thread(target=scrape_then_stop, daemon=True).start()

    supervisor = Supervisor(
        [children],
        say=said.append,
        poll_interval=0.05,
        policy=RestartPolicy(first_delay=0.1),
        metrics_address=("127.0.0.1", port),
    )
    status = supervisor.run(on_ready=ready)

    assert status == 0
    text = "\n".join(said)
    assert "api was killed by SIGKILL unexpectedly; restarting it in 0.1s" in text
    assert f"see {tmp_path / 'api.log'}" in text
    assert "api restarted (pid " in text
    assert f"(pid {first_pid[0]})" not in text.split("api restarted")[1]
    assert 'taskledger_up_child_restarts_total{child="api"} 1.0' in scraped[0]
    assert 'taskledger_up_child_restarts_total{child="engine"} 0.0' in scraped[0]
    assert 'taskledger_up_child_up{child="api"} 1.0' in scraped[0]
    assert not any(child.alive() for child in children)


def test_a_child_in_a_crash_loop_stops_the_tree_naming_it_and_its_log(tmp_path: Path) -> None:
    engine = sleeper("engine", tmp_path)
    # Ready at once, dead soon after: every restart dies again.
    flaky = Daemon(
        "flaky",
        [sys.executable, "-c", "import time; time.sleep(0.1); raise SystemExit(3)"],
        lambda: True,
        tmp_path / "flaky.log",
    )
    said: list[str] = []
    policy = RestartPolicy(first_delay=0.01, max_crashes=3, window=30)

    status = Supervisor([[engine, flaky]], say=said.append, poll_interval=0.02, policy=policy).run(
        on_ready=lambda: None
    )

    assert status == 1
    text = "\n".join(said)
    assert text.count("flaky exited (3) unexpectedly; restarting it") == 2
    log = tmp_path / "flaky.log"
    assert f"flaky crashed 3 times within 30s; stopping everything; see {log}" in text
    assert "engine stopped" in said
    assert not engine.alive()


def test_a_child_that_dies_during_its_first_start_is_started_again(tmp_path: Path) -> None:
    # Dies the first time (as a process losing a race over a new schema would), then runs.
    marker, running = tmp_path / "tried", tmp_path / "running"
    code = (
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    sys.exit(3)\n"
        f"pathlib.Path({str(running)!r}).touch()\n"
        "time.sleep(120)\n"
    )
    racer = Daemon("racer", [sys.executable, "-c", code], running.exists, tmp_path / "racer.log")
    said: list[str] = []

    def ready() -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    policy = RestartPolicy(first_delay=0.05)
    status = Supervisor([[racer]], say=said.append, poll_interval=0.05, policy=policy).run(
        on_ready=ready
    )

    assert status == 0
    assert "racer exited (3) unexpectedly; restarting it in 0.05s" in "\n".join(said)
    # Started once, in the first start: never restarted by the watch that follows it.
    assert any(line.startswith("racer started (pid ") for line in said)
    assert not any("racer restarted" in line for line in said)
    assert "racer stopped" in said


@pytest.mark.parametrize(
    ("crashes", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]
)
def test_back_off_doubles_up_to_its_ceiling(crashes: int, delay: float) -> None:
    assert RestartPolicy(first_delay=0.5, max_delay=8.0).delay(crashes) == delay

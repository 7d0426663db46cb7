"""The supervisor with real child processes: order of start and stop, signals, deaths."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from ops.engines import Daemon
from ops.supervisor import Supervisor


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


def test_a_child_that_dies_stops_the_others_and_is_named(tmp_path: Path) -> None:
    children = [sleeper("engine", tmp_path), sleeper("api", tmp_path)]
    said: list[str] = []

    def ready() -> None:
        api = children[1].process
        assert api is not None
        api.kill()

    status = Supervisor([children], say=said.append, poll_interval=0.05).run(on_ready=ready)

    assert status == 1
    assert "api was killed by SIGKILL unexpectedly" in "\n".join(said)
    assert "engine stopped" in said
    assert not children[0].alive()

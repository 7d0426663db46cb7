"""``<data dir>/up.json``: found while its ``up`` lives, ignored once that process is gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ops.embedded import (
    Plan,
    remove_discovery_file,
    running,
    running_up,
    write_discovery_file,
)
from ops.settings import Settings


def _write(data_dir: Path, pid: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {"pid": pid, "settings": {"TASKLEDGER_REDIS_URL": "redis://127.0.0.1:1/0"}}
    (data_dir / "up.json").write_text(json.dumps(body))


def test_the_file_of_a_live_up_names_its_settings_and_is_removed_by_it(tmp_path: Path) -> None:
    plan = Plan.for_run(Settings(data_dir=tmp_path / "data"), "127.0.0.1", 8000)
    path = write_discovery_file(plan, running(plan, []))
    body = json.loads(path.read_text())
    assert body["settings"]["TASKLEDGER_DATA_DIR"] == str(plan.data_dir)
    # This test process is not an ``up``: a pid recycled by another program is no up.
    assert running_up(plan.data_dir) is None
    remove_discovery_file(plan)
    assert not path.exists()


def test_a_process_running_up_is_found(tmp_path: Path) -> None:
    # Any process whose argv has ``up`` in it, as ``taskledger up`` / ``python -m ops up``.
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(60)", "up"],
        stdout=subprocess.PIPE,
    )
    try:
        assert sleeper.stdout is not None
        sleeper.stdout.readline()  # it runs Python now: its argv is its own, not ours
        _write(tmp_path, sleeper.pid)
        assert running_up(tmp_path) == {"TASKLEDGER_REDIS_URL": "redis://127.0.0.1:1/0"}
    finally:
        sleeper.kill()
        sleeper.wait()
    # Killed outright, it could not remove its file: the dead pid says it is stale.
    assert running_up(tmp_path) is None


def test_no_file_or_a_broken_one_is_no_up(tmp_path: Path) -> None:
    assert running_up(tmp_path) is None
    (tmp_path / "up.json").write_text("{not json")
    assert running_up(tmp_path) is None
    _write(tmp_path, 0)
    assert running_up(tmp_path) is None


def test_another_up_s_file_is_not_removed(tmp_path: Path) -> None:
    plan = Plan.for_run(Settings(data_dir=tmp_path), "127.0.0.1", 8000)
    _write(tmp_path, 1)
    remove_discovery_file(plan)
    assert (tmp_path / "up.json").exists()

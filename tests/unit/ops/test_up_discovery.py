"""``<data dir>/up.json``: found while its ``up`` lives, ignored once that process is gone."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from ops.cli.environment import operator_settings
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


@contextlib.contextmanager
def process_named_up() -> Iterator[int]:
    """A process whose argv has ``up`` in it, as ``taskledger up`` / ``python -m ops up``."""
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(60)", "up"],
        stdout=subprocess.PIPE,
    )
    try:
        assert sleeper.stdout is not None
        sleeper.stdout.readline()  # it runs Python now: its argv is its own, not ours
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
        if sleeper.stdout is not None:
            sleeper.stdout.close()


def test_a_process_running_up_is_found_until_it_dies(tmp_path: Path) -> None:
    with process_named_up() as pid:
        _write(tmp_path, pid)
        assert running_up(tmp_path) == {"TASKLEDGER_REDIS_URL": "redis://127.0.0.1:1/0"}
    # Killed outright, it could not remove its file: the dead pid says it is stale.
    assert running_up(tmp_path) is None


def test_operator_commands_take_only_the_unset_urls_from_the_running_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("TASKLEDGER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKLEDGER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TASKLEDGER_MONGO_URL", "mongodb://elsewhere:27017/mine")
    with process_named_up() as pid:
        _write(tmp_path, pid)
        settings = operator_settings("mongo_url", "redis_url")
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.mongo_url == "mongodb://elsewhere:27017/mine"
    assert settings.smtp_url is None
    assert settings.postgres_connect_timeout == 5


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


def test_an_engine_the_running_up_does_not_run_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("TASKLEDGER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKLEDGER_DATA_DIR", str(tmp_path))
    with process_named_up() as pid:
        _write(tmp_path, pid)  # it runs Redis, but was given a MongoDB URL
        with pytest.raises(typer.Exit) as stopped:
            operator_settings("mongo_url", "redis_url")
    assert stopped.value.exit_code == 3
    assert capsys.readouterr().err.splitlines() == [
        f"the taskledger up on {tmp_path.resolve()} was given TASKLEDGER_MONGO_URL: set it here too"
    ]

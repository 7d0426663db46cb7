"""The processes ``taskledger up`` starts run our code, whatever directory it was started in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ops.embedded import Plan, exported, running, taskledger, write_env_file
from ops.settings import Settings


def test_an_ops_package_in_the_working_directory_does_not_replace_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A project of the user's, with a package that happens to be called ops.
    project = tmp_path / "project"
    (project / "ops").mkdir(parents=True)
    (project / "ops" / "__init__.py").write_text("")
    (project / "ops" / "__main__.py").write_text("print('not taskledger')\n")
    monkeypatch.chdir(project)
    plan = Plan.for_run(Settings(data_dir=tmp_path / "data"), "127.0.0.1", 8000)

    child = taskledger(plan, dict(os.environ), "probe", ["--help"], ready=lambda: False)
    child.spawn()
    assert child.process is not None
    assert child.process.wait(60) == 0
    output = child.log_path.read_text()
    assert "not taskledger" not in output
    assert "taskledger" in output
    assert "serve" in output  # our command's help


def test_up_env_reads_back_exactly_in_a_shell_whatever_the_data_dir_is_called(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "it's $HOME `data`"
    plan = Plan.for_run(Settings(data_dir=data_dir), "127.0.0.1", 8000)
    env_file = write_env_file(plan, running(plan, []))
    read_back = subprocess.run(
        ["bash", "-c", 'source "$1" && printf %s "$TASKLEDGER_DATA_DIR"', "-", str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read_back.stdout == str(data_dir.resolve())


@pytest.mark.parametrize(
    ("host", "port", "link"),
    [
        ("127.0.0.1", 8222, "http://127.0.0.1:8222/reset-password"),
        ("localhost", 9000, "http://localhost:9000/reset-password"),
        # Listening everywhere: this machine reaches the page on loopback.
        ("0.0.0.0", 8001, "http://127.0.0.1:8001/reset-password"),
        ("::1", 8002, "http://[::1]:8002/reset-password"),
    ],
)
def test_the_reset_link_opens_the_page_this_up_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, port: int, link: str
) -> None:
    monkeypatch.delenv("TASKLEDGER_RESET_URL_BASE", raising=False)
    plan = Plan.for_run(Settings(data_dir=tmp_path), host, port)
    assert exported(plan, [])["TASKLEDGER_RESET_URL_BASE"] == link


def test_a_reset_url_base_the_operator_set_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKLEDGER_RESET_URL_BASE", "https://tasks.example.org/reset-password")
    plan = Plan.for_run(Settings(data_dir=tmp_path), "127.0.0.1", 8222)
    assert "TASKLEDGER_RESET_URL_BASE" not in exported(plan, [])
    assert plan.settings.reset_url_base == "https://tasks.example.org/reset-password"

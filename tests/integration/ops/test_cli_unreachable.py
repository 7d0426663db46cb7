"""An engine that does not answer: every command says so in one line and exits 3."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ops.bootstrap import event_store_env
from ops.cli.environment import OPERATOR_CONNECT_TIMEOUT, operator_settings
from ops.engines import free_port

SECRET = "s" * 32


def taskledger(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env["TASKLEDGER_DATA_DIR"] = str(tmp_path)
    env.update({f"TASKLEDGER_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0]


def test_an_audit_against_a_postgresql_nobody_serves_is_one_line_and_exit_3(
    tmp_path: Path,
) -> None:
    done = taskledger(
        tmp_path,
        "audit",
        "user",
        str(uuid.uuid4()),
        event_store_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        postgres_connect_timeout="1",
    )
    assert done.returncode == 3
    assert_one_line(done.stderr, "event store", "unreachable")


def test_dead_letters_against_a_redis_nobody_serves_is_one_line_and_exit_3(
    tmp_path: Path,
) -> None:
    done = taskledger(
        tmp_path, "mail", "dead-letters", "list", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    assert done.returncode == 3
    assert_one_line(done.stderr, "Redis", "unreachable")


def test_serve_api_without_redis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = taskledger(tmp_path, "serve", "api", "--port", str(free_port()), jwt_secret=SECRET)
    assert done.returncode == 2
    assert_one_line(done.stderr, "TASKLEDGER_REDIS_URL")


def test_operator_commands_wait_seconds_for_the_event_store_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TASKLEDGER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TASKLEDGER_EVENT_STORE_URL", "postgresql://postgres@127.0.0.1/x")
    env = event_store_env(operator_settings())
    assert env["POSTGRES_CONNECT_TIMEOUT"] == str(OPERATOR_CONNECT_TIMEOUT)
    monkeypatch.setenv("TASKLEDGER_POSTGRES_CONNECT_TIMEOUT", "20")
    assert event_store_env(operator_settings())["POSTGRES_CONNECT_TIMEOUT"] == "20"

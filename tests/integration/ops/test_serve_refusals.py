"""``taskledger serve …`` refuses to start, in one line and exit status 2, when a setting it
needs is missing, instead of starting wrong (a secret of its own) or failing with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops.engines import free_port


def serve(tmp_path: Path, args: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env["TASKLEDGER_DATA_DIR"] = str(tmp_path)
    env.update({f"TASKLEDGER_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "ops", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args", [["api", "--port", str(free_port())], ["mailer"]], ids=["api", "mailer"]
)
def test_serve_without_a_shared_secret_refuses_to_start(
    tmp_path: Path, redis_url: str, args: list[str]
) -> None:
    done = serve(tmp_path, args, redis_url=redis_url, smtp_url="smtp://127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "TASKLEDGER_JWT_SECRET" in done.stderr
    assert not (tmp_path / "secret.key").exists()

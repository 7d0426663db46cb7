"""Schemathesis over the served OpenAPI document, against the real server on real engines.

Every operation, every check, all phases (examples, coverage, fuzzing, stateful links from
createTask), authenticated through a dynamic bearer login; bounded in examples and time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ops.settings import Settings
from tests.fixtures.read_side import serving
from tests.fixtures.users import PASSWORD, register

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_SECONDS = 90


def _config(base_url: str, email: str) -> str:
    auth = {"email": email, "password": PASSWORD}
    return "\n".join(
        [
            f"base-url = {json.dumps(base_url)}",
            CONFIG.read_text(),
            "[auth.dynamic.openapi.OAuth2PasswordBearer]",
            'path = "/v1/auth/login"',
            "payload = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in auth.items()) + " }",
            'extract_selector = "/access_token"',
            # logout ends the session under fuzz: log in again on the next 401.
            "retry_on = [401]",
        ]
    )


def test_the_api_does_what_its_document_says(
    unthrottled_settings: Settings, tmp_path: Path
) -> None:
    # The fuzzer learns the test user's email from /v1/users/me and sends bad logins for it.
    with serving(unthrottled_settings, tmp_path / "projector.log") as client:
        _, email = register(client)
        paths = client.get("/openapi.json").json()["paths"]
        operations = sum(len(item) for item in paths.values())
        base = str(client.base_url).rstrip("/")
        config = tmp_path / "schemathesis.toml"
        config.write_text(_config(base, email))
        report = tmp_path / "report"
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(config),
                "run",
                f"{base}/openapi.json",
                "--max-time",
                str(MAX_SECONDS),
                "--workers",
                "2",
                "--seed",
                "1",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=MAX_SECONDS + 120,
            cwd=tmp_path,  # its cache directory goes there, not into the repository
            check=False,
        )
        # The server outlived the run.
        assert client.get("/health/live").status_code == 200
    (tmp_path / "schemathesis.out").write_text(run.stdout + run.stderr)
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    # A run that tested nothing would pass too: every operation was reached, and the stateful
    # phase ran over the links.
    assert f"Tested: {operations}" in run.stdout, summary
    assert "✅ Stateful" in run.stdout, summary

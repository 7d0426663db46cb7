"""``taskledger mail asyncapi``: FastStream's document of the mail streams, offline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ops.cli import app


def test_the_document_names_both_streams_the_group_and_the_message_fields(tmp_path: Path) -> None:
    env = {"TASKLEDGER_DATA_DIR": str(tmp_path), "TASKLEDGER_REDIS_PREFIX": "acme:"}
    result = CliRunner().invoke(app, ["mail", "asyncapi"], env=env)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["asyncapi"] == "3.0.0"
    channels = {c["address"]: c for c in document["channels"].values()}
    assert set(channels) == {
        "acme:integration:PasswordResetRequested",
        "acme:integration:UserRegistered",
    }
    assert {c["bindings"]["redis"]["groupName"] for c in channels.values()} == {"acme:mailer"}
    reset = document["components"]["schemas"]["PasswordResetRequested"]["properties"]
    assert {"message_id", "user_id", "email", "request_id", "expires_at"} <= set(reset)
    assert not any("token" in name for name in reset)  # the mailer derives it
    assert not list(tmp_path.iterdir())  # printing it wrote nothing (no secret was made)

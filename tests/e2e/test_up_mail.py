"""``taskledger up`` mails: a reset requested over HTTP lands as an .eml under <data dir>/mail/."""

from __future__ import annotations

import re
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_up import Up

pytestmark = pytest.mark.e2e

TOKEN = re.compile(r"[#&]token=([A-Za-z0-9_\-.]+)")


def _mails(directory: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(directory.glob("*.eml")):
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


def _wait_for(directory: Path, subject: str, timeout: float = 60) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        matching = [m for m in _mails(directory) if m["Subject"] == subject]
        if matching:
            return matching[0]
        time.sleep(0.2)
    pytest.fail(f"no mail {subject!r} in {directory} after {timeout:.0f}s")


def test_up_mails_the_reset_link_as_an_eml_file_and_the_reset_works(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Up(data_dir) as up, httpx.Client(base_url=up.start(), timeout=30) as client:
        email, password = "ada@example.com", "correct horse battery"
        assert (
            client.post(
                "/v1/auth/register", json={"email": email, "password": password}
            ).status_code
            == 201
        )
        assert client.post("/v1/auth/forgot-password", json={"email": email}).status_code == 202

        reset = _wait_for(data_dir / "mail", "Reset your taskledger password")
        assert reset["To"] == email
        body = reset.get_body(("plain",))
        assert body is not None
        found = TOKEN.search(body.get_content())
        assert found is not None
        answer = client.post(
            "/v1/auth/reset-password",
            json={"token": found.group(1), "new_password": "a fresh passphrase"},
        )
        assert answer.status_code == 204, answer.text
        login = client.post(
            "/v1/auth/login", json={"email": email, "password": "a fresh passphrase"}
        )
        assert login.status_code == 200
        # One reset mail and the welcome; nothing twice.
        _wait_for(data_dir / "mail", "Welcome to taskledger")
        subjects = sorted(m["Subject"] for m in _mails(data_dir / "mail"))
        assert subjects == ["Reset your taskledger password", "Welcome to taskledger"]

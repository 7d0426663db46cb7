"""``taskledger backup`` under write load while ``up`` runs, ``restore`` into a fresh data dir:
nothing acknowledged before the backup is lost, the read models are the restored log's, every
session has ended, and no mail goes out a second time."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_up import Up, bearer, login, operator, register_and_login
from tests.e2e.test_up_mail import _mails, _wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
RESET = "Reset your taskledger password"


class Writer(threading.Thread):
    """Creates tasks as fast as one client can; remembers each acknowledged one, in order."""

    def __init__(self, url: str, tokens: list[dict[str, str]]) -> None:
        super().__init__(daemon=True)
        self.url, self.tokens = url, tokens
        self.acked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                tokens = self.tokens[n % len(self.tokens)]
                answer = client.post(
                    "/v1/tasks", json={"title": f"task {n}"}, headers=bearer(tokens)
                )
                assert answer.status_code == 201, answer.text
                self.acked.append(answer.json()["id"])
                n += 1


def _listed(client: httpx.Client, headers: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/tasks", params=params, headers=headers)
        assert page.status_code == 200, page.text
        ids |= {item["id"] for item in page.json()["items"]}
        cursor = page.json()["next_cursor"]
        if not cursor:
            return ids


def test_backup_under_load_and_restore_into_a_fresh_data_dir(tmp_path: Path) -> None:
    source, target, backup = tmp_path / "a", tmp_path / "b", tmp_path / "backup"
    emails = [f"u{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(3)]
    with Up(source) as up, httpx.Client(base_url=up.start(), timeout=30) as client:
        tokens = [register_and_login(client, email, PASSWORD) for email in emails]
        for email in emails:
            answer = client.post("/v1/auth/forgot-password", json={"email": email})
            assert answer.status_code == 202
        deadline = time.monotonic() + 60
        while len(_mails(source / "mail")) < 2 * len(emails):  # a welcome and a reset each
            assert time.monotonic() < deadline, "the mails before the backup never came"
            time.sleep(0.2)

        writer = Writer(client.base_url.__str__(), tokens)
        writer.start()
        while len(writer.acked) < 20:
            time.sleep(0.05)
        acked_before = list(writer.acked)  # acknowledged before the backup began
        taken = operator(source, "backup", str(backup))
        time.sleep(0.5)
        writer.stop.set()
        writer.join(30)
        assert taken.returncode == 0, taken.stderr
        acked_all = list(writer.acked)
        assert len(acked_all) > len(acked_before)

        refused = operator(source, "restore", str(backup))
        assert refused.returncode == 1
        assert "in use by a running taskledger up" in refused.stderr
        assert refused.stderr.count("\n") == 1

    manifest = json.loads((backup / "manifest.json").read_text())
    stores = {store["application"]: store for store in manifest["stores"]}
    assert stores["Tasks"]["events"] >= len(acked_before)
    assert manifest["mail_ledger"]["entries"] >= 2 * len(emails)

    put_back = operator(target, "restore", str(backup))
    assert put_back.returncode == 0, put_back.stderr
    with Up(target) as up, httpx.Client(base_url=up.start(), timeout=30) as client:
        # Sessions are gone: the old access token no longer works; the passwords still do.
        assert client.get("/v1/tasks", headers=bearer(tokens[0])).status_code == 401
        headers = [bearer(login(client, email, PASSWORD)) for email in emails]

        # Every task in the restored log, by the event store itself (?as_of reads it).
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        in_log: dict[int, set[str]] = {i: set() for i in range(len(emails))}
        for n, task_id in enumerate(acked_all):
            owner = n % len(emails)
            found = client.get(
                f"/v1/tasks/{task_id}", params={"as_of": now}, headers=headers[owner]
            )
            assert found.status_code in (200, 404), found.text
            if found.status_code == 200:
                in_log[owner].add(task_id)
        assert set(acked_before) <= set().union(*in_log.values())
        # The read models, rebuilt from it, hold exactly those tasks (read-your-writes: a
        # fresh write waits for the projections, which have then passed the restored log).
        for owner, expected in in_log.items():
            marker = client.post("/v1/tasks", json={"title": "after"}, headers=headers[owner])
            assert marker.status_code == 201
            listed = _listed(client, headers[owner]) - {marker.json()["id"]}
            assert listed == expected
            stats = client.get("/v1/tasks/stats", headers=headers[owner]).json()
            assert stats["total"] == len(expected) + 1

        # The relay replays the restored log (its resets are within the window); the mailer
        # finds them sent. A new reset, published after them, proves they were handled.
        answer = client.post("/v1/auth/forgot-password", json={"email": emails[0]})
        assert answer.status_code == 202
        _wait_for(target / "mail", RESET)
        time.sleep(2)
        assert [(m["To"], m["Subject"]) for m in _mails(target / "mail")] == [(emails[0], RESET)]

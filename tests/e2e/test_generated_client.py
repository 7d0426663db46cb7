"""A client generated from the served OpenAPI document (openapi-python-client, offline) drives a
whole flow: register, log in, create, list, patch with If-Match, history, delete, and typed
Problems for the errors."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.settings import Settings
from tests.fixtures.read_side import serving
from tests.fixtures.users import PASSWORD, new_email

pytestmark = pytest.mark.e2e


@pytest.fixture
def generated(read_settings: Settings, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """The served document's client package, imported, and the server's URL."""
    with serving(read_settings, tmp_path / "projector.log") as client:
        document = tmp_path / "openapi.json"
        document.write_text(json.dumps(client.get("/openapi.json").json()))
        package = f"taskledger_client_{uuid.uuid4().hex[:8]}"
        bin_dir = Path(sys.executable).parent
        subprocess.run(
            [
                str(bin_dir / "openapi-python-client"),
                "generate",
                "--path",
                str(document),
                "--output-path",
                str(tmp_path / package),
                "--meta",
                "none",
            ],
            check=True,
            capture_output=True,
            timeout=180,
            # Its post-hooks run ruff: the venv's own.
            env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
        sys.path.insert(0, str(tmp_path))
        try:
            yield importlib.import_module(package), str(client.base_url).rstrip("/")
        finally:
            sys.path.remove(str(tmp_path))


def _module(package: Any, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_a_generated_client_drives_the_whole_flow(generated: tuple[Any, str]) -> None:
    package, url = generated
    models = _module(package, "models")
    auth = {name: _module(package, f"api.auth.{name}") for name in ("register", "login")}
    tasks = {
        name: _module(package, f"api.tasks.{name}")
        for name in (
            "create_task", "list_tasks", "get_task", "update_task", "get_task_history",
            "delete_task",
        )
    }  # fmt: skip
    anonymous = package.Client(base_url=url)
    email = new_email()

    registered = auth["register"].sync(
        client=anonymous, body=models.Register(email=email, password=PASSWORD)
    )
    assert isinstance(registered, models.Registered)
    taken = auth["register"].sync(
        client=anonymous, body=models.Register(email=email.upper(), password=PASSWORD)
    )
    assert isinstance(taken, models.Problem)
    assert (taken.status, taken.type_) == (409, "https://taskledger.dev/problems/email-taken")
    wrong = auth["login"].sync(client=anonymous, body=models.Login(email=email, password="nope"))
    assert isinstance(wrong, models.Problem)
    assert wrong.status == 401
    tokens = auth["login"].sync(client=anonymous, body=models.Login(email=email, password=PASSWORD))
    assert isinstance(tokens, models.Tokens)
    me = package.AuthenticatedClient(base_url=url, token=tokens.access_token)

    created = tasks["create_task"].sync(
        client=me, body=models.CreateTask(title="write the contract", labels=["api"])
    )
    assert isinstance(created, models.WrittenOut)
    assert created.version == 1
    invalid = tasks["create_task"].sync(client=me, body=models.CreateTask(title=" "))
    assert isinstance(invalid, models.Problem)
    assert invalid.status == 422
    assert [e.loc for e in invalid.errors] == [["body", "title"]]

    page = tasks["list_tasks"].sync(client=me, label=["api"])
    assert isinstance(page, models.TaskListOut)
    assert [t.id for t in page.items] == [created.id]
    assert page.items[0].status == models.Status.TODO

    changed = tasks["update_task"].sync(
        client=me,
        task_id=created.id,
        body=models.ChangeTask(status=models.Status.DONE),
        if_match='"1"',
    )
    assert isinstance(changed, models.WrittenOut)
    assert changed.version == 2
    stale = tasks["update_task"].sync(
        client=me, task_id=created.id, body=models.ChangeTask(title="late"), if_match='"1"'
    )
    assert isinstance(stale, models.Problem)
    assert stale.status == 412
    task = tasks["get_task"].sync(client=me, task_id=created.id)
    assert isinstance(task, models.TaskOut)
    assert (task.status, task.version) == (models.Status.DONE, 2)

    history = tasks["get_task_history"].sync(client=me, task_id=created.id)
    assert isinstance(history, models.HistoryOut)
    assert [item.type_ for item in history.items] == ["TaskCreated", "TaskStatusChanged"]

    deleted = tasks["delete_task"].sync_detailed(client=me, task_id=created.id, if_match='"2"')
    assert deleted.status_code == 204
    gone = tasks["get_task"].sync(client=me, task_id=created.id)
    assert isinstance(gone, models.Problem)
    assert gone.status == 404
    nobody = tasks["list_tasks"].sync(client=package.AuthenticatedClient(base_url=url, token="x"))
    assert isinstance(nobody, models.Problem)
    assert nobody.status == 401
    assert httpx.get(f"{url}/health/live").status_code == 200

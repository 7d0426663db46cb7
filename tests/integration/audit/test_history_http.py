"""GET /v1/tasks/{id}/history and GET /v1/tasks/{id}?as_of=T over real HTTP, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from ops.settings import Settings
from tests.fixtures.api import make_settings
from tests.fixtures.users import SignedIn, sign_in

TASK_KEYS = {
    "id", "title", "description", "status", "priority", "due_date", "labels",
    "created_at", "updated_at", "version",
}  # fmt: skip


@pytest.fixture
def settings(
    tmp_path: Path, event_store_url: str, redis_url: str, redis_prefix: str, mongo_url: str
) -> Settings:
    """The whole API, document store included: GET /v1/tasks/{id} is the read side's route."""
    return make_settings(
        tmp_path, event_store_url, redis_url, redis_prefix, mongo_url=mongo_url,
        postgres_pool_size=2,
    )  # fmt: skip


def at(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return moment


def just_before(moment: datetime) -> str:
    return (moment - timedelta(microseconds=1)).isoformat()


def make_task(api: httpx.Client, user: SignedIn) -> str:
    created = api.post(
        "/v1/tasks",
        headers=user.headers,
        json={"title": "draft", "labels": ["a"], "due_date": "2030-01-02T03:04:05+02:00"},
    )
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


def test_history_tells_who_changed_what_and_when(api: httpx.Client, signed_in: SignedIn) -> None:
    task_id = make_task(api, signed_in)
    patched = api.patch(
        f"/v1/tasks/{task_id}",
        headers=signed_in.headers,
        json={"title": "final", "status": "done", "due_date": None},
    )
    assert patched.status_code == 200, patched.text
    assert api.delete(f"/v1/tasks/{task_id}", headers=signed_in.headers).status_code == 204

    response = api.get(f"/v1/tasks/{task_id}/history", headers=signed_in.headers)

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["version"], i["type"]) for i in items] == [
        (1, "TaskCreated"),
        (2, "TaskEdited"),
        (3, "TaskStatusChanged"),
        (4, "TaskDeleted"),
    ]
    assert {i["actor_id"] for i in items} == {str(signed_in.id)}
    assert items[0]["changes"] == {
        "title": {"old": None, "new": "draft"},
        "description": {"old": None, "new": ""},
        "status": {"old": None, "new": "todo"},
        "priority": {"old": None, "new": "medium"},
        "due_date": {"old": None, "new": "2030-01-02T01:04:05Z"},
        "labels": {"old": None, "new": ["a"]},
    }
    assert items[1]["changes"] == {
        "title": {"old": "draft", "new": "final"},
        "due_date": {"old": "2030-01-02T01:04:05Z", "new": None},
    }
    assert items[2]["changes"] == {"status": {"old": "todo", "new": "done"}}
    assert items[3]["changes"] == {"deleted": {"old": False, "new": True}}
    times = [at(i["at"]) for i in items]
    assert times == sorted(times)


def test_history_and_as_of_are_the_owners_alone(api: httpx.Client, signed_in: SignedIn) -> None:
    task_id = make_task(api, signed_in)
    stranger = sign_in(api)
    now = datetime.now(UTC).isoformat()
    for path in (f"/v1/tasks/{task_id}/history", f"/v1/tasks/{uuid4()}/history"):
        response = api.get(path, headers=stranger.headers)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    for task in (task_id, str(uuid4())):
        response = api.get(f"/v1/tasks/{task}", params={"as_of": now}, headers=stranger.headers)
        assert response.status_code == 404, response.text
    assert api.get(f"/v1/tasks/{task_id}/history").status_code == 401
    assert api.get(f"/v1/tasks/{task_id}", params={"as_of": now}).status_code == 401
    assert api.get("/v1/tasks/not-a-uuid/history", headers=signed_in.headers).status_code == 422


def test_as_of_rebuilds_the_task_at_each_instant(api: httpx.Client, signed_in: SignedIn) -> None:
    task_id = make_task(api, signed_in)
    api.patch(f"/v1/tasks/{task_id}", headers=signed_in.headers, json={"title": "second"})
    api.patch(f"/v1/tasks/{task_id}", headers=signed_in.headers, json={"priority": "high"})
    api.delete(f"/v1/tasks/{task_id}", headers=signed_in.headers)
    items = api.get(f"/v1/tasks/{task_id}/history", headers=signed_in.headers).json()["items"]
    created, renamed, reprioritised, deleted = (at(i["at"]) for i in items)

    def as_of(moment: str) -> httpx.Response:
        return api.get(f"/v1/tasks/{task_id}", params={"as_of": moment}, headers=signed_in.headers)

    first = as_of(created.isoformat())
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == TASK_KEYS
    assert body == {
        "id": task_id,
        "title": "draft",
        "description": "",
        "status": "todo",
        "priority": "medium",
        "due_date": "2030-01-02T01:04:05Z",
        "labels": ["a"],
        "created_at": body["created_at"],
        "updated_at": body["created_at"],
        "version": 1,
    }
    assert at(body["created_at"]) == created
    assert first.headers["etag"] == '"1"'

    # The same instant in another zone is the same instant.
    in_tokyo = renamed.astimezone(timezone(timedelta(hours=9))).isoformat()
    assert in_tokyo.endswith("+09:00")
    second = as_of(in_tokyo).json()
    assert (second["title"], second["priority"], second["version"]) == ("second", "medium", 2)
    assert at(second["updated_at"]) == renamed
    third = as_of(just_before(deleted)).json()
    assert (third["title"], third["priority"], third["version"]) == ("second", "high", 3)
    assert at(third["updated_at"]) == reprioritised

    assert as_of(just_before(created)).status_code == 404
    assert as_of(deleted.isoformat()).status_code == 404
    assert as_of((deleted + timedelta(days=1)).isoformat()).status_code == 404


def test_as_of_refuses_a_time_without_a_zone(api: httpx.Client, signed_in: SignedIn) -> None:
    task_id = make_task(api, signed_in)
    for bad in ("2030-01-01T00:00:00", "yesterday", "2030-13-01T00:00:00Z", ""):
        response = api.get(f"/v1/tasks/{task_id}", params={"as_of": bad}, headers=signed_in.headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"] == ["query", "as_of"]

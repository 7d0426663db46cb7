"""The task query routes over real HTTP, with the projector as its own process."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx

from tests.fixtures.users import sign_in

PROBLEM = "application/problem+json"


def test_list_parameters_are_validated(read_api: httpx.Client) -> None:
    user = sign_in(read_api)
    other_sort = base64.urlsafe_b64encode(
        json.dumps(
            {
                "s": "-updated_at",
                "v": "2026-01-01T00:00:00+00:00",
                "id": "00000000-0000-0000-0000-000000000001",
            }
        ).encode()
    ).decode()
    bad: list[dict[str, str | int]] = [
        {"sort": "title"},
        {"sort": "--created_at"},
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"status": "later"},
        {"priority": "urgent"},
        {"due_before": "2026-01-01T00:00:00"},  # no zone
        {"cursor": "not-a-cursor"},
        {"cursor": other_sort},  # a cursor of another sort
        {"q": ""},
        {"q": "a\x00b"},  # MongoDB's PCRE refuses a raw NUL: a 422, not a 503
        {"q": "line\nbreak"},
    ]
    for params in bad:
        response = read_api.get("/v1/tasks", params=params, headers=user.headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"], params
    assert read_api.get("/v1/tasks").status_code == 401
    assert read_api.get("/v1/tasks/stats").status_code == 401


def test_pages_filters_and_single_tasks(read_api: httpx.Client) -> None:
    alice, bob = sign_in(read_api), sign_in(read_api)
    soon = datetime.now(UTC) + timedelta(days=1)
    ids = []
    for i in range(5):
        body = {
            "title": f"task {i}",
            "labels": ["even" if i % 2 == 0 else "odd"],
            "priority": ["low", "medium", "high"][i % 3],
            "due_date": soon.isoformat(),
        }
        created = read_api.post("/v1/tasks", json=body, headers=alice.headers)
        assert created.status_code == 201
        ids.append(created.json()["id"])
    read_api.post("/v1/tasks", json={"title": "a.b*"}, headers=alice.headers)
    theirs = read_api.post("/v1/tasks", json={"title": "bob's"}, headers=bob.headers).json()["id"]

    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2, "sort": "created_at", "label": "even"}
    while True:
        page = read_api.get("/v1/tasks", params=params, headers=alice.headers)
        assert page.status_code == 200
        seen.extend(item["id"] for item in page.json()["items"])
        if page.json()["next_cursor"] is None:
            break
        params["cursor"] = page.json()["next_cursor"]
    assert seen == [ids[0], ids[2], ids[4]]

    def titles(**query: str) -> list[str]:
        response = read_api.get("/v1/tasks", params=query, headers=alice.headers)
        assert response.status_code == 200
        return [item["title"] for item in response.json()["items"]]

    assert titles(q="A.B*") == ["a.b*"]
    assert titles(q="a?b") == []
    assert titles(priority="high", sort="created_at") == ["task 2"]
    assert titles(sort="-priority", label="odd") == ["task 1", "task 3"]
    assert len(titles(due_after=datetime.now(UTC).isoformat())) == 5
    assert titles(due_before=datetime.now(UTC).isoformat()) == []

    task = read_api.get(f"/v1/tasks/{ids[0]}", headers=alice.headers)
    assert task.status_code == 200
    assert task.json()["title"] == "task 0"
    assert task.headers["ETag"] == '"1"'
    unchanged = read_api.get(
        f"/v1/tasks/{ids[0]}", headers={**alice.headers, "If-None-Match": '"1"'}
    )
    assert unchanged.status_code == 304
    assert read_api.get(f"/v1/tasks/{theirs}", headers=alice.headers).status_code == 404
    assert read_api.delete(f"/v1/tasks/{ids[1]}", headers=alice.headers).status_code == 204
    gone = read_api.get(f"/v1/tasks/{ids[1]}", headers=alice.headers)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == PROBLEM
    assert ids[1] not in [
        i["id"]
        for i in read_api.get("/v1/tasks", params={"limit": 100}, headers=alice.headers).json()[
            "items"
        ]
    ]

    stats = read_api.get("/v1/tasks/stats", headers=alice.headers)
    assert stats.status_code == 200
    assert stats.json() == {"todo": 5, "in_progress": 0, "done": 0, "total": 5, "overdue": 0}


def test_as_of_is_answered_from_the_event_store(read_api: httpx.Client) -> None:
    user = sign_in(read_api)
    task = read_api.post("/v1/tasks", json={"title": "first"}, headers=user.headers).json()["id"]
    between = datetime.now(UTC).isoformat()
    read_api.patch(f"/v1/tasks/{task}", json={"title": "second"}, headers=user.headers)
    now = read_api.get(f"/v1/tasks/{task}", headers=user.headers)
    assert now.json()["title"] == "second"
    then = read_api.get(f"/v1/tasks/{task}", params={"as_of": between}, headers=user.headers)
    assert then.status_code == 200
    assert then.json()["title"] == "first"
    assert then.headers["ETag"] == '"1"'
    before = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (
        read_api.get(
            f"/v1/tasks/{task}", params={"as_of": before}, headers=user.headers
        ).status_code
        == 404
    )

"""Read-your-writes with the projector in its own process: no sleep between write and read."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.users import sign_in

pytestmark = pytest.mark.e2e


def test_a_write_is_visible_to_the_next_read_200_times(read_api_any_store: httpx.Client) -> None:
    read_api = read_api_any_store
    user = sign_in(read_api, display_name="Ada")
    me = read_api.get("/v1/users/me", headers=user.headers)
    assert me.status_code == 200
    assert me.json()["display_name"] == "Ada"
    created = read_api.post("/v1/tasks", json={"title": "t0"}, headers=user.headers)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    for i in range(200):
        if i % 2 == 0:
            written = read_api.patch(
                f"/v1/tasks/{task_id}", json={"title": f"t{i + 1}"}, headers=user.headers
            )
            assert written.status_code == 200, written.text
            got = read_api.get(f"/v1/tasks/{task_id}", headers=user.headers)
            assert got.status_code == 200
            assert got.json()["title"] == f"t{i + 1}", i
            assert got.headers["ETag"] == f'"{written.json()["version"]}"'
        else:
            made = read_api.post("/v1/tasks", json={"title": f"new {i}"}, headers=user.headers)
            assert made.status_code == 201
            listed = read_api.get("/v1/tasks", params={"limit": 1}, headers=user.headers)
            assert listed.status_code == 200
            assert listed.json()["items"][0]["id"] == made.json()["id"], i
    stats = read_api.get("/v1/tasks/stats", headers=user.headers)
    assert stats.json() == {"todo": 101, "in_progress": 0, "done": 0, "total": 101, "overdue": 0}

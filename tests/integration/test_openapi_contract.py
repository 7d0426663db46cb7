"""The served OpenAPI document says what the server does: ids, Problem, 401, Allow, dates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.api import build_api
from tests.fixtures.api import make_settings
from tests.fixtures.users import sign_in

OPERATION_IDS = {
    "createTask", "listTasks", "getTask", "updateTask", "deleteTask", "getTaskHistory",
    "getTaskStats", "register", "login", "issueToken", "refresh", "logout", "forgotPassword",
    "resetPassword", "getMe", "healthLive", "healthReady",
}  # fmt: skip


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    settings = make_settings(tmp_path, None, "redis://127.0.0.1:6379/0", "unused:")
    served: dict[str, Any] = build_api(settings).openapi()
    return served


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in document["paths"].values() for op in item.values()]


def test_every_operation_has_a_clean_id_and_every_error_is_a_problem(
    document: dict[str, Any],
) -> None:
    assert {op["operationId"] for op in _operations(document)} >= OPERATION_IDS
    ids = [op["operationId"] for op in _operations(document)]
    assert len(ids) == len(set(ids))
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert not [name for name in schemas if "_" in name], "a schema kept FastAPI's long name"
    for op in _operations(document):
        for status, response in op["responses"].items():
            content = response.get("content", {})
            if int(status) >= 400:
                assert content == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (op["operationId"], status)
            else:
                # A named model for every answer with a body.
                for media in content.values():
                    assert "$ref" in media["schema"], (op["operationId"], status)
        if op.get("security"):
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"], op["operationId"]
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(op["responses"]), op["operationId"]
    problem = schemas["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "errors" in problem["properties"]


def test_patch_offers_no_null_but_for_due_date_and_labels_are_unique(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    fields = schemas["ChangeTask"]["properties"]
    for name in ("title", "description", "status", "priority", "labels"):
        assert "null" not in str(fields[name]), name
    assert "null" in str(fields["due_date"])
    assert fields["labels"]["uniqueItems"] is True
    assert schemas["CreateTask"]["properties"]["labels"]["uniqueItems"] is True


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/tasks", "GET, POST"),
        ("/v1/tasks/00000000-0000-4000-8000-000000000000", "DELETE, GET, PATCH"),
        ("/v1/tasks/stats", "GET"),
        ("/v1/auth/login", "POST"),
    ],
)
def test_405_allows_every_method_of_the_resource(api: httpx.Client, path: str, allow: str) -> None:
    for method in ("OPTIONS", "PUT"):
        response = api.request(method, path)
        assert response.status_code == 405
        assert response.headers["Allow"] == allow
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_number_is_no_date_time(read_api: httpx.Client) -> None:
    user = sign_in(read_api)
    task = read_api.post("/v1/tasks", json={"title": "t"}, headers=user.headers).json()["id"]
    for due in (0, -82459, 1.5, "0", "1700000000"):
        created = read_api.post(
            "/v1/tasks", json={"title": "t", "due_date": due}, headers=user.headers
        )
        assert created.status_code == 422, created.text
        assert created.json()["errors"][0]["loc"] == ["body", "due_date"]
        changed = read_api.patch(f"/v1/tasks/{task}", json={"due_date": due}, headers=user.headers)
        assert changed.status_code == 422, changed.text
        for name in ("due_before", "due_after"):
            listed = read_api.get("/v1/tasks", params={name: str(due)}, headers=user.headers)
            assert listed.status_code == 422, listed.text
        then = read_api.get(f"/v1/tasks/{task}", params={"as_of": str(due)}, headers=user.headers)
        assert then.status_code == 422, then.text
    # Nothing was written by any refusal: the task is still at version 1, with no due date.
    got = read_api.get(f"/v1/tasks/{task}", headers=user.headers).json()
    assert (got["version"], got["due_date"]) == (1, None)
    assert read_api.get("/v1/tasks", headers=user.headers).json()["items"] == [got]

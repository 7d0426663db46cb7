"""Task command routes over real HTTP: validation, ownership, preconditions, edge limits."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest


def _login(api: httpx.Client) -> dict[str, str]:
    email = f"u{uuid.uuid4().hex[:10]}@example.com"
    assert (
        api.post("/v1/auth/register", json={"email": email, "password": "pw-123456789"}).status_code
        == 201
    )
    tokens = api.post("/v1/auth/login", json={"email": email, "password": "pw-123456789"}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
def auth(api: httpx.Client) -> dict[str, str]:
    return _login(api)


def _create(api: httpx.Client, auth: dict[str, str], **body: Any) -> httpx.Response:
    return api.post("/v1/tasks", json={"title": "write tests", **body}, headers=auth)


def test_create_answers_201_with_location_etag_and_position(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    response = _create(api, auth, labels=["x", "y"], due_date="2030-01-01T10:00:00+02:00")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "version", "position"}
    assert body["version"] == 1
    assert body["position"] >= 1
    assert response.headers["Location"] == f"/v1/tasks/{body['id']}"
    assert response.headers["ETag"] == '"1"'
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "ok", "description": "d" * 5001},
        {"title": "ok", "status": "blocked"},
        {"title": "ok", "priority": "urgent"},
        {"title": "ok", "labels": ["a"] * 2},
        {"title": "ok", "labels": [str(i) for i in range(21)]},
        {"title": "ok", "labels": [""]},
        {"title": "ok", "labels": ["l" * 51]},
        {"title": "ok", "due_date": "2030-01-01T10:00:00"},
        {"title": "ok", "due_date": "tomorrow"},
        {"title": "ok", "owner_id": str(uuid.uuid4())},
        {},
    ],
)
def test_invalid_create_is_a_422_problem_and_writes_nothing(
    api: httpx.Client, auth: dict[str, str], body: dict[str, Any]
) -> None:
    response = api.post("/v1/tasks", json=body, headers=auth)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"]
    # Nothing was appended: the next accepted write is the first position of the log.
    assert _create(api, auth).json()["position"] == 1


def test_patch_applies_a_subset_and_bumps_the_version(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    task = _create(api, auth).json()
    response = api.patch(
        f"/v1/tasks/{task['id']}", json={"status": "done", "title": "new"}, headers=auth
    )
    assert response.status_code == 200
    assert response.json()["version"] == 3  # one edit event, one status event
    assert response.headers["ETag"] == '"3"'


def test_patch_may_clear_the_due_date_but_not_the_title(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    task = _create(api, auth, due_date="2030-01-01T00:00:00Z").json()
    assert (
        api.patch(f"/v1/tasks/{task['id']}", json={"due_date": None}, headers=auth).json()[
            "version"
        ]
        == 2
    )
    assert (
        api.patch(f"/v1/tasks/{task['id']}", json={"title": None}, headers=auth).status_code == 422
    )


def test_a_patch_that_changes_nothing_answers_position_null_and_keeps_the_version(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    task = _create(api, auth, title="same").json()
    response = api.patch(f"/v1/tasks/{task['id']}", json={"title": "same"}, headers=auth)
    assert response.status_code == 200
    assert response.json() == {"id": task["id"], "version": 1, "position": None}


def test_stale_if_match_is_412_and_changes_nothing(api: httpx.Client, auth: dict[str, str]) -> None:
    task = _create(api, auth).json()
    url = f"/v1/tasks/{task['id']}"
    assert (
        api.patch(url, json={"title": "a"}, headers={**auth, "If-Match": '"1"'}).status_code == 200
    )
    stale = api.patch(url, json={"title": "b"}, headers={**auth, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert api.delete(url, headers={**auth, "If-Match": '"1"'}).status_code == 412
    assert (
        api.patch(url, json={"title": "c"}, headers={**auth, "If-Match": '"2"'}).json()["version"]
        == 3
    )


def test_if_match_star_matches_any_existing_task_and_no_missing_one(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    url = f"/v1/tasks/{_create(api, auth).json()['id']}"
    star = {**auth, "If-Match": "*"}
    assert api.patch(url, json={"title": "a"}, headers=star).json()["version"] == 2
    assert api.delete(url, headers=star).status_code == 204
    assert api.patch(url, json={"title": "b"}, headers=star).status_code == 404
    assert api.delete(f"/v1/tasks/{uuid.uuid4()}", headers=star).status_code == 404


def test_if_match_compares_strongly_and_takes_a_list(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    """RFC 9110 13.1.1: a weak tag never matches; a list matches when it holds the current one."""
    url = f"/v1/tasks/{_create(api, auth).json()['id']}"
    weak = api.patch(url, json={"title": "a"}, headers={**auth, "If-Match": 'W/"1"'})
    assert weak.status_code == 412, weak.text
    listed = api.patch(url, json={"title": "b"}, headers={**auth, "If-Match": '"7", "1"'})
    assert listed.status_code == 200, listed.text
    assert listed.json()["version"] == 2
    assert api.delete(url, headers={**auth, "If-Match": '"1", W/"2"'}).status_code == 412
    assert api.delete(url, headers={**auth, "If-Match": '"1", "2"'}).status_code == 204


# Headers travel as Latin-1: b"\xb2" is what the server reads as "²", a digit to str.isdigit().
@pytest.mark.parametrize("header", [b"\xb2", b'"\xb2"', b"abc", b'"1" "2"', b'W/"1"'])
def test_an_unparseable_if_match_is_412_saying_so_not_500(
    api: httpx.Client, auth: dict[str, str], header: bytes
) -> None:
    url = f"/v1/tasks/{_create(api, auth).json()['id']}"
    headers = [(name.encode(), value.encode()) for name, value in auth.items()]
    headers.append((b"If-Match", header))
    for response in (
        api.patch(url, json={"title": "a"}, headers=headers),
        api.delete(url, headers=headers),
    ):
        assert response.status_code == 412, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "If-Match" in response.json()["detail"]
    # Nothing was written: version 1 is still the current one.
    assert (
        api.patch(url, json={"title": "b"}, headers={**auth, "If-Match": '"1"'}).status_code == 200
    )


def test_someone_elses_task_is_404_like_a_missing_one(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    task = _create(api, auth).json()
    intruder = _login(api)
    theirs = api.patch(f"/v1/tasks/{task['id']}", json={"title": "mine"}, headers=intruder)
    missing = api.patch(f"/v1/tasks/{uuid.uuid4()}", json={"title": "mine"}, headers=intruder)
    assert theirs.status_code == missing.status_code == 404
    assert {k: v for k, v in theirs.json().items()} == missing.json()
    assert api.delete(f"/v1/tasks/{task['id']}", headers=intruder).status_code == 404


def test_a_deleted_task_is_gone_for_every_command(api: httpx.Client, auth: dict[str, str]) -> None:
    task = _create(api, auth).json()
    url = f"/v1/tasks/{task['id']}"
    assert api.delete(url, headers=auth).status_code == 204
    assert api.delete(url, headers=auth).status_code == 404
    assert api.patch(url, json={"title": "back"}, headers=auth).status_code == 404


def test_commands_need_a_bearer_token(api: httpx.Client) -> None:
    response = api.post("/v1/tasks", json={"title": "t"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    forged = api.post("/v1/tasks", json={"title": "t"}, headers={"Authorization": "Bearer abc"})
    assert forged.status_code == 401


def test_bodies_over_one_mebibyte_are_413(api: httpx.Client, auth: dict[str, str]) -> None:
    big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    announced = api.post(
        "/v1/tasks", content=big, headers={**auth, "Content-Type": "application/json"}
    )
    assert announced.status_code == 413

    def chunks() -> Any:
        yield big[:1000]
        yield big[1000:]

    streamed = api.post(
        "/v1/tasks", content=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"].startswith("application/problem+json")


def test_request_id_is_echoed_or_made(api: httpx.Client) -> None:
    echoed = api.get("/v1/tasks", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    made = api.get("/nope")
    assert made.status_code == 404
    assert len(made.headers["X-Request-ID"]) == 36
    assert made.headers["content-type"].startswith("application/problem+json")


def test_malformed_json_is_422_not_500(api: httpx.Client, auth: dict[str, str]) -> None:
    response = api.post(
        "/v1/tasks", content=b"{nope", headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422


def test_concurrent_patches_over_http_lose_no_update(
    api: httpx.Client, auth: dict[str, str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    task = _create(api, auth).json()
    url = f"/v1/tasks/{task['id']}"

    def patch(n: int) -> int:
        with httpx.Client(base_url=str(api.base_url), timeout=30) as client:
            return client.patch(url, json={"description": f"d{n}"}, headers=auth).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(patch, range(48)))

    assert set(statuses) <= {200, 409}
    succeeded = statuses.count(200)
    # One more no-op-free write tells the stored version: 1 (create) + successes + 1.
    final = api.patch(url, json={"description": "final"}, headers=auth).json()
    assert final["version"] == 1 + succeeded + 1

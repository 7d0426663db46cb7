"""The password policy over real HTTP: 422 problem+json, and nothing changed."""

from __future__ import annotations

import httpx

from ops.settings import Settings
from tests.fixtures.users import PASSWORD, SignedIn, log_in, new_email, request_reset

PROBLEM = "application/problem+json"


def test_register_refuses_a_common_password_or_the_email(api: httpx.Client) -> None:
    email = new_email()
    for password in ("iloveyou", "Password1", email.upper()):
        response = api.post("/v1/auth/register", json={"email": email, "password": password})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert [error["loc"] for error in response.json()["errors"]] == [["body", "password"]]
        assert password not in response.text
    # Nothing was registered: the email is still free.
    created = api.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201


def test_a_reset_refuses_a_common_password_or_the_email_and_spends_nothing(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    token = request_reset(api, settings, signed_in.email, signed_in.id)
    for password in ("sunshine", signed_in.email.title()):
        response = api.post(
            "/v1/auth/reset-password", json={"token": token, "new_password": password}
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert password not in response.text
    # No session was revoked and the token still works.
    assert api.get("/v1/users/me", headers=signed_in.headers).status_code == 200
    reset = api.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "an uncommon phrase"}
    )
    assert reset.status_code == 204
    assert log_in(api, signed_in.email, "an uncommon phrase")["access_token"]

"""/v1/auth and /v1/users/me over real HTTP, on both event stores and the real Redis."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest

from commands.auth.tokens import signing_key
from domain.reset_tokens import ResetClaim, derive_reset_token, reset_key
from ops.api import build_api
from ops.settings import Settings
from tests.fixtures.api import Server, make_settings
from tests.fixtures.users import (
    PASSWORD,
    SignedIn,
    bearer,
    log_in,
    new_email,
    register,
    request_reset,
    reset_claims,
    sign_in,
)

PROBLEM = "application/problem+json"


def _me(api: httpx.Client, access_token: str) -> httpx.Response:
    return api.get("/v1/users/me", headers=bearer(access_token))


def _assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith(PROBLEM)


@contextmanager
def _server(tmp_path: Path, settings: Settings, **overrides: object) -> Iterator[httpx.Client]:
    """A server like ``api``'s, with some settings changed."""
    changed = make_settings(
        tmp_path,
        settings.event_store_url,
        str(settings.redis_url),
        settings.redis_prefix,
        **overrides,
    )
    with Server(changed) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


# --- register -------------------------------------------------------------------------------


def test_register_answers_201_with_the_id_and_me_shows_the_profile(api: httpx.Client) -> None:
    email = new_email()
    response = api.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Ann"}
    )
    assert response.status_code == 201
    user_id = UUID(response.json()["id"])
    me = _me(api, log_in(api, email)["access_token"])
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == str(user_id)
    assert body["email"] == email
    assert body["display_name"] == "Ann"
    created = datetime.fromisoformat(body["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)


def test_without_a_display_name_the_address_local_part_is_used(api: httpx.Client) -> None:
    user = sign_in(api, email="zoe.smith@example.com")
    assert _me(api, user.access_token).json()["display_name"] == "zoe.smith"


def test_an_email_registers_once_whatever_its_case(api: httpx.Client) -> None:
    _, email = register(api, "Mixed.Case@Example.com")
    again = api.post("/v1/auth/register", json={"email": email.upper(), "password": PASSWORD})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith(PROBLEM)
    assert again.json()["status"] == 409


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@", "password": PASSWORD},
        {"email": "a@example.com", "password": "7chars!"},
        {"email": "a@example.com", "password": "x" * 129},
        {"email": "a@example.com"},
        {"password": PASSWORD},
        {"email": "a@example.com", "password": PASSWORD, "display_name": "x" * 101},
    ],
)
def test_register_refuses_bad_input_with_422(api: httpx.Client, body: dict[str, str]) -> None:
    response = api.post("/v1/auth/register", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["errors"]
    # The refused password is not echoed back.
    if "password" in body:
        assert body["password"] not in response.text


def test_registrations_from_one_address_answer_429_past_the_limit(
    tmp_path: Path, settings: Settings
) -> None:
    with _server(tmp_path, settings, register_max_per_client=2, register_window=120) as api:
        register(api)
        register(api)
        email = new_email()
        limited = api.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 120
        assert limited.headers["content-type"].startswith(PROBLEM)
        # Nothing was registered: the address is still free for login to know nothing of.
        refused = api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert refused.status_code == 401


def test_passwords_of_8_and_128_characters_are_accepted(api: httpx.Client) -> None:
    for password in ("x" * 8, "y" * 128):
        user = sign_in(api, password=password)
        assert _me(api, user.access_token).status_code == 200


# --- login ------------------------------------------------------------------------------------


def test_login_answers_a_bearer_pair(api: httpx.Client, settings: Settings) -> None:
    _, email = register(api)
    response = api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl
    assert _me(api, body["access_token"]).status_code == 200


def test_wrong_password_and_unknown_email_answer_identically(api: httpx.Client) -> None:
    _, email = register(api)
    wrong = api.post("/v1/auth/login", json={"email": email, "password": "wrong password"})
    unknown = api.post("/v1/auth/login", json={"email": new_email(), "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()

    def comparable(response: httpx.Response) -> dict[str, str]:
        # Only the per-request fields may differ.
        return {
            k: v
            for k, v in response.headers.items()
            if k not in {"x-request-id", "date", "traceparent"}
        }

    assert comparable(wrong) == comparable(unknown)


def test_the_oauth2_form_logs_in_like_login(api: httpx.Client) -> None:
    _, email = register(api)
    response = api.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    assert _me(api, response.json()["access_token"]).status_code == 200
    wrong = api.post("/v1/auth/token", data={"username": email, "password": "nope nope"})
    assert wrong.status_code == 401


def test_too_many_failures_answer_429_with_retry_after(tmp_path: Path, settings: Settings) -> None:
    with _server(tmp_path, settings, login_max_failures=3, login_failure_window=120) as api:
        _, email = register(api)
        for _ in range(3):
            assert (
                api.post(
                    "/v1/auth/login", json={"email": email, "password": "wrong pass"}
                ).status_code
                == 401
            )
        limited = api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 120
        assert limited.headers["content-type"].startswith(PROBLEM)
        # The OAuth2 form is the same door, with the same lock.
        form = api.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
        assert form.status_code == 429


def test_concurrent_wrong_logins_get_at_most_the_limit_of_401s(
    tmp_path: Path, settings: Settings
) -> None:
    with _server(tmp_path, settings, login_max_failures=3, login_failure_window=120) as api:
        _, email = register(api)

        def guess(n: int) -> int:
            body = {"email": email, "password": f"wrong pass {n}"}
            return api.post("/v1/auth/login", json=body).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(guess, range(12)))
        assert statuses.count(401) <= 3
        assert statuses.count(401) + statuses.count(429) == 12


def test_failures_across_accounts_from_one_address_answer_429(
    tmp_path: Path, settings: Settings
) -> None:
    with _server(tmp_path, settings, login_max_failures_per_client=4) as api:
        _, email = register(api)
        for _ in range(4):
            api.post("/v1/auth/login", json={"email": new_email(), "password": "wrong pass"})
        limited = api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1


# --- tokens -----------------------------------------------------------------------------------


def _payload(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return payload


def test_a_tampered_access_token_is_refused(api: httpx.Client, signed_in: SignedIn) -> None:
    header, _, signature = signed_in.access_token.split(".")
    payload = _payload(signed_in.access_token)
    payload["exp"] += 3600
    forged_payload = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
    _assert_unauthenticated(_me(api, f"{header}.{forged_payload.decode()}.{signature}"))
    # The untouched token still works: the refusal was about the tampering.
    assert _me(api, signed_in.access_token).status_code == 200


def test_an_alg_none_token_is_refused(api: httpx.Client, signed_in: SignedIn) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = signed_in.access_token.split(".")[1]
    _assert_unauthenticated(_me(api, f"{header}.{payload}."))


def test_a_token_signed_with_another_algorithm_is_refused(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    token = jwt.encode(
        _payload(signed_in.access_token), signing_key(settings.secret()), algorithm="HS512"
    )
    _assert_unauthenticated(_me(api, token))


def test_an_expired_token_is_refused(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    payload = _payload(signed_in.access_token)
    now = int(time.time())
    # Signed with the server's own key, for a live session: only the expiry is wrong.
    valid = jwt.encode(
        {**payload, "iat": now - 60},
        signing_key(settings.secret()),
        algorithm=settings.jwt_algorithm,
    )
    assert _me(api, valid).status_code == 200
    expired = jwt.encode(
        {**payload, "iat": now - 1000, "exp": now - 100},
        signing_key(settings.secret()),
        algorithm=settings.jwt_algorithm,
    )
    _assert_unauthenticated(_me(api, expired))


def test_a_refresh_token_is_not_a_bearer_token(api: httpx.Client, signed_in: SignedIn) -> None:
    _assert_unauthenticated(_me(api, signed_in.refresh_token))


def test_me_without_a_token_is_401(api: httpx.Client) -> None:
    _assert_unauthenticated(api.get("/v1/users/me"))
    _assert_unauthenticated(api.get("/v1/users/me", headers={"Authorization": "Basic eDp5"}))


# --- logout and refresh -----------------------------------------------------------------------


def test_logout_stops_that_access_and_refresh_token_at_once(
    api: httpx.Client, signed_in: SignedIn
) -> None:
    other = log_in(api, signed_in.email)
    assert api.post("/v1/auth/logout", headers=signed_in.headers).status_code == 204
    _assert_unauthenticated(_me(api, signed_in.access_token))
    _assert_unauthenticated(
        api.post("/v1/auth/refresh", json={"refresh_token": signed_in.refresh_token})
    )
    _assert_unauthenticated(api.post("/v1/auth/logout", headers=signed_in.headers))
    # Another session of the same user is untouched.
    assert _me(api, other["access_token"]).status_code == 200


def test_logout_without_a_token_is_401(api: httpx.Client) -> None:
    _assert_unauthenticated(api.post("/v1/auth/logout"))


def test_refresh_gives_a_new_pair_and_spends_the_old_refresh_token(
    api: httpx.Client, signed_in: SignedIn
) -> None:
    response = api.post("/v1/auth/refresh", json={"refresh_token": signed_in.refresh_token})
    assert response.status_code == 200
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != signed_in.refresh_token
    assert _me(api, pair["access_token"]).status_code == 200
    chained = api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert chained.status_code == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_session(
    api: httpx.Client, signed_in: SignedIn
) -> None:
    rotated = api.post("/v1/auth/refresh", json={"refresh_token": signed_in.refresh_token})
    assert rotated.status_code == 200
    new = rotated.json()
    _assert_unauthenticated(
        api.post("/v1/auth/refresh", json={"refresh_token": signed_in.refresh_token})
    )
    # The pair issued by the honest rotation dies with the session.
    _assert_unauthenticated(_me(api, new["access_token"]))
    _assert_unauthenticated(
        api.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    )
    _assert_unauthenticated(_me(api, signed_in.access_token))


def test_a_forged_refresh_token_is_refused_and_revokes_nothing(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    payload = _payload(signed_in.refresh_token)
    forged = jwt.encode(
        {**payload, "jti": "guessed"}, b"not the server key" * 4, algorithm=settings.jwt_algorithm
    )
    _assert_unauthenticated(api.post("/v1/auth/refresh", json={"refresh_token": forged}))
    assert _me(api, signed_in.access_token).status_code == 200
    ok = api.post("/v1/auth/refresh", json={"refresh_token": signed_in.refresh_token})
    assert ok.status_code == 200


def test_concurrent_refreshes_of_one_token_let_at_most_one_succeed(
    api: httpx.Client, signed_in: SignedIn
) -> None:
    racers = 8
    start = threading.Barrier(racers)
    url = str(api.base_url)

    def refresh(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as own:
            start.wait()
            return own.post("/v1/auth/refresh", json={"refresh_token": signed_in.refresh_token})

    with ThreadPoolExecutor(racers) as pool:
        responses = list(pool.map(refresh, range(racers)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) <= 1, statuses
    assert set(statuses) <= {200, 401}
    # The losers presented a spent token: the session is revoked, winner's pair included.
    for response in responses:
        if response.status_code == 200:
            _assert_unauthenticated(_me(api, response.json()["access_token"]))
    _assert_unauthenticated(_me(api, signed_in.access_token))


# --- forgot and reset -------------------------------------------------------------------------


def test_forgot_password_answers_the_same_for_unknown_emails(
    api: httpx.Client, signed_in: SignedIn
) -> None:
    known = api.post("/v1/auth/forgot-password", json={"email": signed_in.email})
    unknown = api.post("/v1/auth/forgot-password", json={"email": new_email()})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()


def test_forgot_password_refuses_a_malformed_email(api: httpx.Client) -> None:
    assert api.post("/v1/auth/forgot-password", json={"email": "nope"}).status_code == 422


def test_concurrent_forgot_passwords_for_one_user_are_each_recorded(
    tmp_path: Path, settings: Settings
) -> None:
    # Five at once: each may lose a race on the user to the others, and must try again (at
    # most four times) rather than answer 500 and lose the request.
    with _server(tmp_path, settings, forgot_password_max=100) as api:
        user, email = register(api)

        def forgot(_: int) -> int:
            return api.post("/v1/auth/forgot-password", json={"email": email}).status_code

        with ThreadPoolExecutor(5) as pool:
            statuses = list(pool.map(forgot, range(5)))
    assert statuses == [202] * 5
    claims = reset_claims(settings, user)
    assert len({claim.request_id for claim in claims}) == 5


def test_forgot_password_is_rate_limited_per_email(tmp_path: Path, settings: Settings) -> None:
    with _server(tmp_path, settings, forgot_password_max=2) as api:
        email = new_email()
        for spelling in (email, email.upper()):
            assert api.post("/v1/auth/forgot-password", json={"email": spelling}).status_code == 202
        limited = api.post("/v1/auth/forgot-password", json={"email": email})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        # Another email is not limited by this one's count.
        assert api.post("/v1/auth/forgot-password", json={"email": new_email()}).status_code == 202


def test_forgot_password_is_rate_limited_per_address(tmp_path: Path, settings: Settings) -> None:
    with _server(tmp_path, settings, forgot_password_max_per_client=3) as api:
        for _ in range(3):
            assert (
                api.post("/v1/auth/forgot-password", json={"email": new_email()}).status_code == 202
            )
        limited = api.post("/v1/auth/forgot-password", json={"email": new_email()})
        assert limited.status_code == 429
        assert "retry-after" in limited.headers


def test_a_reset_token_works_once_and_revokes_every_session(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    second = log_in(api, signed_in.email)
    token = request_reset(api, settings, signed_in.email, signed_in.id)
    reset = api.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "a brand new password"}
    )
    assert reset.status_code == 204
    for access in (signed_in.access_token, second["access_token"]):
        _assert_unauthenticated(_me(api, access))
    _assert_unauthenticated(
        api.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    )
    # The old password stops working, the new one works.
    assert (
        api.post(
            "/v1/auth/login", json={"email": signed_in.email, "password": PASSWORD}
        ).status_code
        == 401
    )
    assert log_in(api, signed_in.email, "a brand new password")["access_token"]
    again = api.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "yet another password"}
    )
    assert again.status_code == 400
    assert again.headers["content-type"].startswith(PROBLEM)


def test_an_expired_reset_token_is_refused(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    request_reset(api, settings, signed_in.email, signed_in.id)
    claim = reset_claims(settings, signed_in.id)[-1]
    # The real request, signed with the server's key, but with its expiry passed.
    expired = derive_reset_token(
        reset_key(settings.secret()),
        ResetClaim(claim.user_id, claim.request_id, datetime.now(UTC) - timedelta(seconds=1)),
    )
    response = api.post(
        "/v1/auth/reset-password", json={"token": expired, "new_password": "a brand new password"}
    )
    assert response.status_code == 400
    assert log_in(api, signed_in.email)["access_token"]


def test_the_default_reset_lifetime_is_30_minutes(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    before = datetime.now(UTC)
    request_reset(api, settings, signed_in.email, signed_in.id)
    expires = reset_claims(settings, signed_in.id)[-1].expires_at
    assert before + timedelta(minutes=29) < expires <= datetime.now(UTC) + timedelta(minutes=30)


def test_a_reset_token_stops_working_after_another_password_change(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    older = request_reset(api, settings, signed_in.email, signed_in.id)
    newer = request_reset(api, settings, signed_in.email, signed_in.id)
    assert (
        api.post(
            "/v1/auth/reset-password", json={"token": newer, "new_password": "the newer password"}
        ).status_code
        == 204
    )
    stale = api.post(
        "/v1/auth/reset-password", json={"token": older, "new_password": "the older password"}
    )
    assert stale.status_code == 400
    assert log_in(api, signed_in.email, "the newer password")["access_token"]


@pytest.mark.parametrize(
    ("token", "status"), [("", 422), ("garbage", 400), ("a.b", 400), ("x" * 200, 400)]
)
def test_a_malformed_reset_token_is_refused(api: httpx.Client, token: str, status: int) -> None:
    response = api.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "a brand new password"}
    )
    assert response.status_code == status


def test_a_forged_reset_token_is_refused(
    api: httpx.Client, settings: Settings, signed_in: SignedIn
) -> None:
    request_reset(api, settings, signed_in.email, signed_in.id)
    claim = reset_claims(settings, signed_in.id)[-1]
    forged = derive_reset_token(reset_key(b"a guessed secret"), claim)
    response = api.post(
        "/v1/auth/reset-password", json={"token": forged, "new_password": "a brand new password"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("new_password", ["short", "z" * 129])
def test_a_weak_new_password_is_422_and_spends_nothing(
    api: httpx.Client, settings: Settings, signed_in: SignedIn, new_password: str
) -> None:
    token = request_reset(api, settings, signed_in.email, signed_in.id)
    weak = api.post("/v1/auth/reset-password", json={"token": token, "new_password": new_password})
    assert weak.status_code == 422
    assert (
        api.post(
            "/v1/auth/reset-password", json={"token": token, "new_password": "strong enough"}
        ).status_code
        == 204
    )


# --- which routes a process serves ------------------------------------------------------------


def _paths(settings: Settings, routes: Any) -> set[str]:
    paths: dict[str, Any] = build_api(settings, routes).openapi()["paths"]
    return set(paths)


def test_routes_select_auth_tasks_or_all(settings: Settings) -> None:
    auth, tasks, every = (_paths(settings, r) for r in ("auth", "tasks", "all"))
    assert {"/v1/auth/login", "/v1/auth/register", "/v1/users/me"} <= auth
    assert not any(path.startswith("/v1/tasks") for path in auth)
    assert "/v1/tasks" in tasks
    assert not any(path.startswith(("/v1/auth", "/v1/users")) for path in tasks)
    assert auth | tasks <= every

"""Rehash on login, over real HTTP and both event stores: a raised argon2 cost reaches an
existing user at their next login, and cancels none of their pending resets."""

from __future__ import annotations

from pathlib import Path

import httpx
from argon2 import extract_parameters

from commands.identity import Identity
from ops.bootstrap import event_store_env
from ops.settings import Settings
from tests.fixtures.api import Server, make_settings
from tests.fixtures.users import PASSWORD, log_in, register, request_reset


def _stored(settings: Settings, user_id: object) -> tuple[str, list[str]]:
    identity = Identity(env=event_store_env(settings))
    try:
        user = identity.get_user(user_id)  # type: ignore[arg-type]
        kinds = [type(event).__qualname__ for event in identity.events.get(user.id)]
        return user.password_hash, kinds
    finally:
        identity.close()


def test_a_raised_cost_rehashes_at_login_and_a_pending_reset_still_works(
    tmp_path: Path, settings: Settings
) -> None:
    def at_cost(time_cost: int) -> Settings:
        return make_settings(
            tmp_path,
            settings.event_store_url,
            str(settings.redis_url),
            settings.redis_prefix,
            argon2_time_cost=time_cost,
        )

    cheap, raised = at_cost(1), at_cost(2)
    with Server(cheap) as server, httpx.Client(base_url=server.url, timeout=30) as api:
        user_id, email = register(api)
        token = request_reset(api, cheap, email, user_id)
    assert extract_parameters(_stored(cheap, user_id)[0]).time_cost == 1

    with Server(raised) as server, httpx.Client(base_url=server.url, timeout=30) as api:
        assert log_in(api, email)["access_token"]
        password_hash, kinds = _stored(raised, user_id)
        assert extract_parameters(password_hash).time_cost == 2
        assert kinds[-1] == "User.PasswordRehashed"
        assert "User.PasswordChanged" not in kinds
        # The old password still logs in, and the reset asked for before the rehash works.
        assert log_in(api, email, PASSWORD)["access_token"]
        assert _stored(raised, user_id)[1].count("User.PasswordRehashed") == 1
        reset = api.post(
            "/v1/auth/reset-password", json={"token": token, "new_password": "a brand new one"}
        )
        assert reset.status_code == 204, reset.text
        assert log_in(api, email, "a brand new one")["access_token"]

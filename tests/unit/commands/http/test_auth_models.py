"""Auth request bodies keep passwords and tokens out of every repr, and still say what is wrong."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from commands.http.auth import Login, Refresh, Register, ResetPassword

SECRET = "s3cret-Value-42"


@pytest.mark.parametrize(
    "body",
    [
        Register(email="ann@example.com", password=SECRET),
        Login(email="ann@example.com", password=SECRET),
        Refresh(refresh_token=SECRET),
        ResetPassword(token=SECRET, new_password=SECRET),
    ],
    ids=lambda body: type(body).__name__,
)
def test_no_repr_or_str_shows_a_password_or_token(body: BaseModel) -> None:
    for text in (repr(body), str(body), repr(body.model_dump())):
        assert SECRET not in text


def test_the_secrets_are_still_there_for_the_handler() -> None:
    body = ResetPassword(token=SECRET, new_password="new " + SECRET)
    assert body.token.get_secret_value() == SECRET
    assert body.new_password.get_secret_value() == "new " + SECRET


@pytest.mark.parametrize(
    ("password", "message"), [("short", "at least 8"), ("x" * 129, "at most 128")]
)
def test_a_bad_password_is_refused_in_characters(password: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Register(email="ann@example.com", password=password)
    (error,) = refused.value.errors(include_input=False)
    assert message in error["msg"]
    assert "characters" in error["msg"]

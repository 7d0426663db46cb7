"""The letters: the reset token verifies on the write side; names are escaped; links compose."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import pytest

from consumers.letters import password_reset_letter, reset_link, welcome_letter
from consumers.messages import PasswordResetRequested, UserRegistered
from domain.errors import InvalidResetToken
from domain.reset_tokens import reset_key, verify_reset_token

KEY = reset_key(b"server-secret")


def _request(name: str = "Ada") -> PasswordResetRequested:
    now = datetime.now(UTC)
    return PasswordResetRequested(
        message_id=uuid4(),
        occurred_at=now,
        user_id=uuid4(),
        email="ada@example.com",
        display_name=name,
        request_id=uuid4(),
        expires_at=now + timedelta(minutes=30),
    )


def _token_of(link: str) -> str:
    return parse_qs(urlsplit(link).fragment)["token"][0]


def test_the_mailed_token_is_the_one_the_write_side_verifies() -> None:
    message = _request()
    mail = password_reset_letter(message, KEY, "https://app.example/reset")
    [link] = [w for w in mail.text.split() if w.startswith("https://app.example/reset#")]
    claim = verify_reset_token(KEY, _token_of(link), datetime.now(UTC))
    assert (claim.user_id, claim.request_id) == (message.user_id, message.request_id)
    assert _token_of(link) in mail.html
    assert mail.to == "ada@example.com"
    assert mail.message_id == f"<{message.message_id}@taskledger>"


def test_a_token_derived_with_another_secret_does_not_verify() -> None:
    mail = password_reset_letter(_request(), reset_key(b"another"), "https://a.example/r")
    [link] = [w for w in mail.text.split() if w.startswith("https://a.example/r#")]
    with pytest.raises(InvalidResetToken):
        verify_reset_token(KEY, _token_of(link), datetime.now(UTC))


def test_the_link_keeps_the_base_query_and_carries_the_token_only_in_its_fragment() -> None:
    link = reset_link("https://app.example/reset?lang=fr", "abc.def")
    parts = urlsplit(link)
    assert parse_qs(parts.query) == {"lang": ["fr"]}  # what a server (and its logs) ever sees
    assert parse_qs(parts.fragment) == {"token": ["abc.def"]}


def test_the_token_in_the_fragment_replaces_one_already_in_the_base() -> None:
    link = reset_link("https://app.example/reset#tab=1&token=old", "new.sig")
    assert parse_qs(urlsplit(link).fragment) == {"tab": ["1"], "token": ["new.sig"]}


def test_display_names_are_escaped_in_html_and_kept_in_text() -> None:
    mail = password_reset_letter(_request("<b>Eve</b>"), KEY, "https://a.example/r")
    assert "<b>Eve</b>" not in mail.html
    assert "&lt;b&gt;Eve&lt;/b&gt;" in mail.html
    assert "Hi <b>Eve</b>," in mail.text


def test_the_welcome_mail_carries_no_token_and_greets_a_nameless_user() -> None:
    message = UserRegistered(
        message_id=uuid4(),
        occurred_at=datetime.now(UTC),
        user_id=uuid4(),
        email="new@example.com",
        display_name="",
    )
    mail = welcome_letter(message)
    assert mail.text.startswith("Hi,\n")
    assert "token" not in (mail.text + mail.html).lower()

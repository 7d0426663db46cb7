"""What the mails say: the password-reset letter (with its token and link) and the welcome."""

from __future__ import annotations

from datetime import UTC
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from consumers.mail import Mail
from consumers.messages import PasswordResetRequested, UserRegistered
from domain.reset_tokens import ResetClaim, derive_reset_token

RESET_KIND = "password_reset"
WELCOME_KIND = "welcome"


def _message_id(message_id: object) -> str:
    return f"<{message_id}@taskledger>"


def _greeting(display_name: str) -> str:
    return f"Hi {display_name}," if display_name.strip() else "Hi,"


def reset_link(base: str, token: str) -> str:
    """``base`` with ``#token=…``: a fragment never reaches a server, its logs or a Referer.

    The page at ``base`` reads the token from ``location.hash`` and POSTs it to
    /v1/auth/reset-password (README, "Mail"). ``base``'s own query is kept as is.
    """
    parts = urlsplit(base)
    fragment = [
        (k, v) for k, v in parse_qsl(parts.fragment, keep_blank_values=True) if k != "token"
    ]
    return urlunsplit(parts._replace(fragment=urlencode([*fragment, ("token", token)])))


def password_reset_letter(message: PasswordResetRequested, key: bytes, url_base: str) -> Mail:
    """The token is derived exactly as the write side verifies it: same key, same claim."""
    token = derive_reset_token(
        key, ResetClaim(message.user_id, message.request_id, message.expires_at)
    )
    link = reset_link(url_base, token)
    until = message.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    greeting = _greeting(message.display_name)
    text = (
        f"{greeting}\n\n"
        "Someone (we hope you) asked to reset the password of your taskledger account.\n"
        f"Open this link to choose a new one. It works once, until {until}:\n\n"
        f"{link}\n\n"
        f"Or paste this token where the app asks for it:\n\n{token}\n\n"
        "If you did not ask, ignore this mail: your password stays as it is.\n"
    )
    html = (
        f"<p>{escape(greeting)}</p>"
        "<p>Someone (we hope you) asked to reset the password of your taskledger account. "
        f"The link below works once, until {escape(until)}.</p>"
        f'<p><a href="{escape(link, quote=True)}">Choose a new password</a></p>'
        f"<p>Or paste this token where the app asks for it:<br><code>{escape(token)}</code></p>"
        "<p>If you did not ask, ignore this mail: your password stays as it is.</p>"
    )
    return Mail(
        to=message.email,
        subject="Reset your taskledger password",
        text=text,
        html=html,
        message_id=_message_id(message.message_id),
    )


def welcome_letter(message: UserRegistered) -> Mail:
    greeting = _greeting(message.display_name)
    text = (
        f"{greeting}\n\nWelcome to taskledger. Your account for {message.email} is ready.\n"
        "Every change to your tasks is kept, so you can always see who changed what, and when.\n"
    )
    html = (
        f"<p>{escape(greeting)}</p><p>Welcome to taskledger. Your account for "
        f"{escape(message.email)} is ready.</p><p>Every change to your tasks is kept, so you "
        "can always see who changed what, and when.</p>"
    )
    return Mail(
        to=message.email,
        subject="Welcome to taskledger",
        text=text,
        html=html,
        message_id=_message_id(message.message_id),
    )

"""Attempt limits for logins, reset requests and registrations, per account and per client."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    # Attempts allowed in one fixed window of ``window`` seconds, counted from the first.
    limit: int
    window: int


class RateLimiter(Protocol):
    async def check(self, limits: Sequence[Limit]) -> None:
        """Raise RateLimited while any of the limits is used up."""
        ...

    async def hit(self, limits: Sequence[Limit]) -> None:
        """Count one attempt against each limit; raise RateLimited if that goes over any."""
        ...

    async def clear(self, limit: Limit) -> None: ...

    async def refund(self, limit: Limit) -> None:
        """Take back one counted attempt (it turned out not to count); never below zero."""
        ...


def _account(email: str) -> str:
    # Keys name a digest, not the address: Redis need not hold a list of users' emails.
    return hashlib.sha256(email.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AuthLimits:
    login_per_account: int
    login_per_client: int
    login_window: int
    forgot_per_email: int
    forgot_per_client: int
    forgot_window: int
    register_per_client: int
    register_window: int

    def login(self, email: str, client: str) -> tuple[Limit, Limit]:
        """(per account, per client). The account key comes from the email, registered or not,
        so the limits themselves do not tell registered and unknown emails apart."""
        return (
            Limit(f"login:account:{_account(email)}", self.login_per_account, self.login_window),
            Limit(f"login:client:{client}", self.login_per_client, self.login_window),
        )

    def forgot(self, email: str, client: str) -> tuple[Limit, Limit]:
        return (
            Limit(f"forgot:email:{_account(email)}", self.forgot_per_email, self.forgot_window),
            Limit(f"forgot:client:{client}", self.forgot_per_client, self.forgot_window),
        )

    def register(self, client: str) -> tuple[Limit]:
        """Per client address only: each registration costs an argon2 hash and an account."""
        return (Limit(f"register:client:{client}", self.register_per_client, self.register_window),)

"""Attempt limits for logins, reset requests and registrations, per account and per client.

Logins are throttled without a lockout (ASVS 2.2.1): failures are refused per (account, client
address) and per client address, while the account as a whole is only slowed, far above
those, by an exponential delay; a client that proves it logged in to the account before (a
device cookie) is counted on its own, so a stranger's failures cannot keep the owner out.
"""

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


@dataclass(frozen=True, slots=True)
class Slowdown:
    """The first ``free`` attempts pass at once; after that each must come ``base * 2**k``
    seconds (at most ``cap``) after the previous one, k counting the attempts past ``free``.
    The count is forgotten ``window`` seconds after the longest delay has passed."""

    key: str
    free: int
    base: float
    cap: int
    window: int

    def delay(self, attempts: int) -> float:
        """Seconds the attempt after ``attempts`` counted ones must wait after the last."""
        if attempts < self.free:
            return 0.0
        # The exponent is bounded first: 2.0 ** a large count overflows a float.
        return float(min(self.cap, self.base * 2.0 ** min(attempts - self.free, 64)))

    @property
    def ttl(self) -> int:
        return self.window + self.cap


class RateLimiter(Protocol):
    async def check(self, limits: Sequence[Limit]) -> None:
        """Raise RateLimited while any of the limits is used up."""
        ...

    async def hit(self, limits: Sequence[Limit]) -> None:
        """Count one attempt against each limit; raise RateLimited if that goes over any."""
        ...

    async def slow(self, slowdown: Slowdown) -> None:
        """Count one attempt, unless it comes before the delay the earlier ones set: then
        raise RateLimited (with the seconds left) and count nothing."""
        ...

    async def clear(self, limit: Limit | Slowdown) -> None: ...

    async def refund(self, limit: Limit | Slowdown) -> None:
        """Take back one counted attempt (it turned out not to count); never below zero."""
        ...


def account_key(email: str) -> str:
    """Keys name a digest, not the address: Redis need not hold a list of users' emails."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class LoginLimits:
    # Refused past its limit: one client's guesses at one account.
    account_client: Limit
    # Refused past its limit: one client's guesses across accounts (credential stuffing).
    client: Limit
    # Never refused for good: many clients' guesses at one account only slow down.
    account: Slowdown


@dataclass(frozen=True, slots=True)
class AuthLimits:
    login_per_account_client: int
    login_per_client: int
    login_window: int
    # Account-wide failures that pass before the exponential delay starts, and its ceiling.
    login_account_free: int
    login_account_delay_cap: int
    forgot_per_email: int
    forgot_per_client: int
    forgot_window: int
    register_per_client: int
    register_window: int

    def login(self, account: str, client: str) -> LoginLimits:
        """``account`` is ``account_key(email)``, registered or not, so the limits themselves
        do not tell registered and unknown emails apart."""
        return LoginLimits(
            account_client=Limit(
                f"login:account:{account}:client:{client}",
                self.login_per_account_client,
                self.login_window,
            ),
            client=Limit(f"login:client:{client}", self.login_per_client, self.login_window),
            account=Slowdown(
                f"login:account:{account}",
                self.login_account_free,
                1.0,
                self.login_account_delay_cap,
                self.login_window,
            ),
        )

    def device(self, device_id: str) -> Limit:
        """A known device's own failures: as many as one client may make at one account."""
        return Limit(f"login:device:{device_id}", self.login_per_account_client, self.login_window)

    def forgot(self, email: str, client: str) -> tuple[Limit, Limit]:
        return (
            Limit(f"forgot:email:{account_key(email)}", self.forgot_per_email, self.forgot_window),
            Limit(f"forgot:client:{client}", self.forgot_per_client, self.forgot_window),
        )

    def register(self, client: str) -> tuple[Limit]:
        """Per client address only: each registration costs an argon2 hash and an account."""
        return (Limit(f"register:client:{client}", self.register_per_client, self.register_window),)

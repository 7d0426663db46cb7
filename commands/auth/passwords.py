"""Password hashing with argon2id (the costs come from the settings, passed in by ops), and
the policy a new password must meet beside its length."""

from __future__ import annotations

import functools
import secrets
from importlib import resources
from typing import Protocol

from argon2 import PasswordHasher as _Argon2
from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from domain.identity import normalise_email


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 10,000 most common passwords, shipped in the wheel (source and licence in its
    header): ASVS 2.1.7's breached-password check, offline."""
    text = resources.files("commands.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("# "))


def password_problem(password: str, email: str) -> str | None:
    """Why a new password for the account of ``email`` is refused, or None."""
    # Case-insensitive: "Password1" is no better than "password1".
    if password.lower() in common_passwords():
        return "is one of the 10,000 most common passwords"
    if normalise_email(password) == normalise_email(email):
        return "must not be the account's email address"
    return None


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool:
        """True only for the password the hash was made from; never raises for bad input."""
        ...

    def verify_nobody(self, password: str) -> bool:
        """Costs what ``verify`` costs and is always False: a login for an unknown email runs it."""
        ...

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash is weaker than what ``hash`` makes now (a cost was raised)."""
        ...


class Argon2Hasher:
    """argon2id (RFC 9106). CPU-bound for tens of ms at production costs: call it off the loop."""

    def __init__(self, *, time_cost: int, memory_cost: int, parallelism: int = 4) -> None:
        self._argon2 = _Argon2(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=Type.ID,
        )
        # Same parameters as real hashes, so verifying against it takes the same time.
        self._nobody = self._argon2.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_nobody(self, password: str) -> bool:
        self.verify(self._nobody, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        # Weaker, not merely different: a hash made at a higher cost than the settings (say,
        # before a cost was lowered to fit smaller machines) is left alone.
        try:
            stored = extract_parameters(password_hash)
        except InvalidHashError:
            return False
        wanted = self._argon2
        return (
            stored.type is not Type.ID
            or stored.time_cost < wanted.time_cost
            or stored.memory_cost < wanted.memory_cost
            or stored.parallelism < wanted.parallelism
            or stored.hash_len < wanted.hash_len
            or stored.salt_len < wanted.salt_len
        )

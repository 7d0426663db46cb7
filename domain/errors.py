"""Errors a user can cause. Each is mapped once to an HTTP status at the edge."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base of every error a caller can cause."""


class NotFound(DomainError):
    """The thing does not exist, or is not the caller's (the two look the same)."""


class TaskNotFound(NotFound):
    pass


class UserNotFound(NotFound):
    pass


class SessionNotFound(NotFound):
    """No such session of the caller's: ended, expired, or someone else's."""


class EmailTaken(DomainError):
    """Another account already uses this email (case-insensitive)."""


class VersionMismatch(DomainError):
    """The caller's If-Match is not the current version."""

    def __init__(self, expected: Sequence[int], actual: int) -> None:
        named = " or ".join(map(str, expected)) or "no version of ours"
        super().__init__(f"If-Match names {named}; the current version is {actual}")
        self.expected = expected
        self.actual = actual


class UnparseablePrecondition(DomainError):
    """The If-Match header is neither ``*`` nor a version this API issued: it can never match."""


class ConcurrentWrite(DomainError):
    """Another write to the same aggregate won the race inside the store."""


class InvalidCredentials(DomainError):
    """Unknown email or wrong password: deliberately indistinguishable."""


class WeakPassword(DomainError):
    """A new password the policy refuses: too common, or the account's own email."""


class InvalidResetToken(DomainError):
    """The reset token is forged, expired, already used or superseded."""


class Unauthenticated(DomainError):
    """No valid access token: missing, forged, expired or revoked."""


class RateLimited(DomainError):
    """Too many attempts; the caller may try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts, retry after {retry_after}s")
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (read model, cache, broker) does not answer; the request may be retried."""

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} is unavailable")
        self.dependency = dependency

"""The Identity application: users, unique emails, password resets. Login reads this write model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from commands.metrics import counted
from commands.write_application import WriteApplication
from commands.written import Written
from domain.errors import ConcurrentWrite, EmailTaken, InvalidResetToken, UserNotFound
from domain.identity import EmailIndex, User, normalise_email
from domain.meta import Meta
from domain.reset_tokens import ResetClaim

# A command that loses a race on a user (another reset request, say) is re-read and applied
# again this many times before the caller hears 409; n concurrent commands on one user make
# any of them lose at most n - 1 times.
RACE_RETRIES = 5
# No aggregate ever has this id (aggregates get random UUIDs, the index uuid5s of emails).
NOBODY = uuid5(NAMESPACE_URL, "https://taskledger.dev/nobody")


@dataclass(frozen=True, slots=True)
class ResetRequest:
    claim: ResetClaim
    written: Written


class Identity(WriteApplication):
    name = "Identity"

    @counted("register")
    def register(self, *, email: str, display_name: str, password_hash: str, meta: Meta) -> Written:
        """An email belongs to one account: the index aggregate saved with the user enforces it."""
        email = normalise_email(email)
        user = User(
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            meta=meta,
        )
        index = EmailIndex(email=email, user_id=user.id)
        try:
            recordings = self.commits.save(user, index)
        except IntegrityError:
            raise EmailTaken(email) from None
        return Written.of(user.id, user.version, recordings)

    def get_user(self, user_id: UUID) -> User:
        try:
            user: User = self.repository.get(user_id)
        except AggregateNotFoundError:
            raise UserNotFound(str(user_id)) from None
        return user

    def find_by_email(self, email: str) -> User | None:
        """Two reads whether or not the email is registered (ASVS 2.2.1's timing side): an
        unknown email reads a user that never exists, so the store's work looks the same."""
        try:
            index: EmailIndex = self.repository.get(EmailIndex.create_id(email))
            user_id: UUID | None = index.user_id
        except AggregateNotFoundError:
            user_id = None
        try:
            user: User = self.repository.get(user_id or NOBODY)
        except AggregateNotFoundError:
            if user_id is not None:
                raise UserNotFound(str(user_id)) from None
            return None
        return user

    @counted("request_password_reset")
    def request_password_reset(
        self, email: str, *, ttl: timedelta, meta: Meta, now: datetime | None = None
    ) -> ResetRequest | None:
        """Unknown emails are not an error: the caller must not learn who is registered."""
        expires_at = (now or datetime.now(UTC)) + ttl
        request_id = uuid4()
        for _ in range(RACE_RETRIES):
            user = self.find_by_email(email)
            if user is None:
                return None
            user.request_password_reset(
                request_id=request_id, expires_at=expires_at.isoformat(), meta=meta
            )
            try:
                written = Written.of(user.id, user.version, self.commits.save(user))
            except IntegrityError:
                continue  # another write to the user came first: request on top of it
            return ResetRequest(ResetClaim(user.id, request_id, expires_at), written)
        raise ConcurrentWrite("the account was changed by other requests; try again")

    def pending_reset(self, claim: ResetClaim, now: datetime | None = None) -> User:
        """The user whose reset request the claim names, while that request can still be used."""
        try:
            user = self.get_user(claim.user_id)
        except UserNotFound:
            raise InvalidResetToken("unknown user") from None
        if not user.reset_is_pending(claim.request_id, now or datetime.now(UTC)):
            raise InvalidResetToken("already used or superseded")
        return user

    @counted("rehash_password")
    def rehash_password(
        self, user_id: UUID, *, verified_hash: str, password_hash: str, meta: Meta
    ) -> Written | None:
        """Store a costlier hash of the password just verified against ``verified_hash``; if
        the password changed meanwhile, nothing (a later login will rehash the new one)."""
        for _ in range(RACE_RETRIES):
            user = self.get_user(user_id)
            if user.password_hash != verified_hash:
                return None
            user.rehash_password(password_hash=password_hash, meta=meta)
            try:
                return Written.of(user.id, user.version, self.commits.save(user))
            except IntegrityError:
                continue  # another write to the user came first: look again
        return None

    @counted("reset_password")
    def reset_password(
        self,
        claim: ResetClaim,
        *,
        password_hash: str,
        meta: Meta,
        now: datetime | None = None,
        user: User | None = None,
    ) -> Written:
        """A reset request works once, before it expires, and only until a newer change."""
        # ``user``, when given, is what pending_reset answered for this claim: not read again.
        now = now or datetime.now(UTC)
        for _ in range(RACE_RETRIES):
            if user is None:
                user = self.pending_reset(claim, now)
            user.change_password(
                password_hash=password_hash, reset_request_id=claim.request_id, meta=meta
            )
            try:
                return Written.of(user.id, user.version, self.commits.save(user))
            except IntegrityError:
                # Another write to the user came first. Read it again: if that write spent
                # this request (the same token, another change), pending_reset says so;
                # if it was another reset request, say, this reset still goes ahead.
                user = None
        raise ConcurrentWrite("the account was changed by other requests; try again")

"""Account use cases: register, log in, ask for a reset, reset. Routes only translate HTTP."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from anyio import CapacityLimiter
from eventsourcing.persistence import PersistenceError
from fastapi.concurrency import run_in_threadpool

from commands.auth.devices import DeviceCookies
from commands.auth.passwords import PasswordHasher, password_problem
from commands.auth.rate_limits import AuthLimits, Limit, RateLimiter, Slowdown, account_key
from commands.auth.sessions import Sessions, TokenPair
from commands.identity import Identity, ResetRequest
from commands.metrics import counting
from commands.written import Written
from domain.errors import InvalidCredentials, RateLimited, WeakPassword
from domain.identity import User, normalise_email
from domain.meta import SYSTEM, Meta, meta
from domain.reset_tokens import verify_reset_token

log = logging.getLogger("taskledger.auth")

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LoggedIn:
    tokens: TokenPair
    # The device cookie to set: this client has now logged in to this account.
    device_cookie: str
    device_cookie_max_age: int


class Accounts:
    """The event store (Identity) is blocking and argon2 is CPU-bound: both run off the loop."""

    def __init__(
        self,
        *,
        identity: Identity,
        hasher: PasswordHasher,
        sessions: Sessions,
        limiter: RateLimiter,
        limits: AuthLimits,
        devices: DeviceCookies,
        reset_key: bytes,
        reset_ttl: timedelta,
        clock: Callable[[], datetime] = _now,
        hashing_slots: int | None = None,
    ) -> None:
        self._identity = identity
        self._hasher = hasher
        self._sessions = sessions
        self._limiter = limiter
        self._limits = limits
        self._devices = devices
        self._reset_key = reset_key
        self._reset_ttl = reset_ttl
        self._clock = clock
        # argon2 takes tens of ms of one core and memory_cost KiB per run: at most one run per
        # core at a time. The rest wait here, on the loop, not in threads holding memory.
        self._hashing = CapacityLimiter(hashing_slots or os.cpu_count() or 1)

    async def _argon2(self, run: Callable[[], T]) -> T:
        async with self._hashing:
            return await run_in_threadpool(run)

    async def register(
        self, *, email: str, password: str, display_name: str, client: str, meta: Meta
    ) -> Written:
        """One account per email, whatever its case; the store keeps an argon2 hash only; the
        password is neither a common one nor the email. Registrations are limited per client
        address, counted before any hashing."""
        _check_policy(password, email)
        await self._limiter.hit(self._limits.register(client))
        password_hash = await self._argon2(lambda: self._hasher.hash(password))
        return await run_in_threadpool(
            lambda: self._identity.register(
                email=email, display_name=display_name, password_hash=password_hash, meta=meta
            )
        )

    async def login(
        self,
        *,
        email: str,
        password: str,
        client: str,
        device_cookie: str | None = None,
        user_agent: str = "",
        meta: Meta | None = None,
    ) -> LoggedIn:
        """Unknown email and wrong password fail alike, in time too. Failures are refused per
        (account, client address) and per client address; at the account as a whole they only
        slow down, and a client with the account's device cookie is counted on its own."""
        with counting("login"):
            # One key per address, however it is spelt: changing the case of a letter must not
            # buy an attacker a fresh allowance of guesses.
            logged_in, user = await self._login(
                normalise_email(email), password, client, device_cookie, user_agent
            )
        await self._rehash(user, password, meta or SYSTEM)
        return logged_in

    async def _login(
        self, email: str, password: str, client: str, device_cookie: str | None, user_agent: str
    ) -> tuple[LoggedIn, User]:
        account = account_key(email)
        device = self._devices.device_for(device_cookie, account)
        # Every attempt is counted (atomically) before its password is checked, and one over
        # a limit is refused unchecked: concurrent guesses cannot all pass a check made before
        # any of them was counted.
        counted: tuple[Limit, ...]
        slowdown: Slowdown | None = None
        if device is not None:
            # The owner's usual client: strangers' failures at the account or from the same
            # address (a shared NAT) do not reach it; its own failures are limited all the same.
            counted = (self._limits.device(device),)
            await self._limiter.hit(counted)
        else:
            limits = self._limits.login(account, client)
            counted = (limits.account_client, limits.client)
            await self._limiter.hit(counted)
            slowdown = limits.account
            try:
                await self._limiter.slow(slowdown)
            except RateLimited:
                # Refused before any check: not an attempt this client should pay for.
                for limit in counted:
                    await self._limiter.refund(limit)
                raise
        user = await run_in_threadpool(self._identity.find_by_email, email)
        if user is None:
            valid = await self._argon2(lambda: self._hasher.verify_nobody(password))
        else:
            password_hash = user.password_hash
            valid = await self._argon2(lambda: self._hasher.verify(password_hash, password))
        if user is None or not valid:
            log.info("login failed", extra={"client": client})
            raise InvalidCredentials("email or password is wrong")
        # A success forgives this client's failures at the account; the client's own count
        # gets back only this attempt, so an attacker with an account of their own cannot wipe
        # their address's count by logging in. The account-wide slowdown, likewise, gets back
        # only this attempt: forgiving it all would restart an attack under way at full speed.
        await self._limiter.clear(counted[0])
        for limit in counted[1:]:
            await self._limiter.refund(limit)
        if slowdown is not None:
            await self._limiter.refund(slowdown)
        tokens = await self._sessions.open(
            user.id, user.version, client=client, user_agent=user_agent
        )
        logged_in = LoggedIn(tokens, self._devices.issue(account, device), self._devices.ttl)
        return logged_in, user

    async def _rehash(self, user: User, password: str, request_meta: Meta) -> None:
        """Raised argon2 costs reach existing users as they log in: the password just checked
        is hashed again and recorded as PasswordRehashed, which cancels no pending reset."""
        verified_hash = user.password_hash
        if not self._hasher.needs_rehash(verified_hash):
            return
        password_hash = await self._argon2(lambda: self._hasher.hash(password))
        try:
            await run_in_threadpool(
                lambda: self._identity.rehash_password(
                    user.id,
                    verified_hash=verified_hash,
                    password_hash=password_hash,
                    meta=_acting_as(request_meta, user.id),
                )
            )
        except PersistenceError:
            # The login has succeeded; the next one will try the rehash again.
            log.warning("password rehash not recorded", extra={"user_id": str(user.id)})

    async def throttle_reset_request(self, *, email: str, client: str) -> None:
        """Reset mails are limited per email and per client address, registered or not."""
        with counting("forgot_password"):
            await self._limiter.hit(self._limits.forgot(normalise_email(email), client))

    async def request_reset(self, *, email: str, meta: Meta) -> ResetRequest | None:
        """Record a reset request for a registered email; for an unknown one, do nothing."""
        return await run_in_threadpool(
            lambda: self._identity.request_password_reset(
                email, ttl=self._reset_ttl, meta=meta, now=self._clock()
            )
        )

    async def reset_password(self, *, token: str, new_password: str, meta: Meta) -> Written:
        """A reset token works once, before it expires, and only until the password changes;
        it revokes every session of the user."""
        now = self._clock()
        claim = verify_reset_token(self._reset_key, token, now)
        # Checked before any session is touched: a spent token must not log anyone out.
        user = await run_in_threadpool(self._identity.pending_reset, claim, now)
        _check_policy(new_password, user.email)
        # Sessions go first: if Redis fails, nothing has changed and the user may retry. The
        # floor (the version the change will have) also refuses a login that checked the old
        # password while the change lands.
        changed_version = user.version + 1
        await self._sessions.revoke_all(claim.user_id, before_version=changed_version)
        password_hash = await self._argon2(lambda: self._hasher.hash(new_password))
        acting = _acting_as(meta, claim.user_id)
        written = await run_in_threadpool(
            lambda: self._identity.reset_password(
                claim, password_hash=password_hash, meta=acting, now=now, user=user
            )
        )
        if written.version != changed_version:
            # Another event of the user landed in between: raise the floor to the change.
            await self._sessions.revoke_all(claim.user_id, before_version=written.version)
        return written

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A refresh token works once; presenting a spent one revokes its whole session."""
        with counting("refresh"):
            return await self._sessions.refresh(refresh_token)

    async def logout(self, access_token: str) -> None:
        """Logout ends the session: its access and refresh tokens stop working together."""
        with counting("logout"):
            await self._sessions.close(access_token)


def _check_policy(password: str, email: str) -> None:
    problem = password_problem(password, email)
    if problem is not None:
        raise WeakPassword(f"the new password {problem}")


def _acting_as(request_meta: Meta, user: object) -> Meta:
    # Whoever holds a valid reset token acts as its user.
    return meta(user, request_meta["correlation_id"], request_meta["traceparent"])

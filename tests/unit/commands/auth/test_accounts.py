"""The account use cases on in-memory adapters and an in-memory event store, with a fake clock."""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from prometheus_client import REGISTRY

from commands.auth.accounts import Accounts
from commands.auth.devices import DeviceCookies
from commands.auth.memory import InMemoryRateLimiter, InMemorySessionStore
from commands.auth.passwords import Argon2Hasher, PasswordHasher
from commands.auth.rate_limits import AuthLimits
from commands.auth.sessions import Sessions, TokenPair
from commands.auth.tokens import JwtTokens, signing_key
from commands.identity import Identity
from domain.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidResetToken,
    RateLimited,
    Unauthenticated,
    WeakPassword,
)
from domain.meta import meta
from domain.reset_tokens import derive_reset_token, reset_key

SECRET = b"unit-secret"
PASSWORD = "correct horse battery"
HASHER = Argon2Hasher(time_cost=1, memory_cost=64)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


class CountingHasher:
    """The real hasher, counting the passwords it was asked to check."""

    def __init__(self) -> None:
        self.verified = 0

    hashed = 0

    def hash(self, password: str) -> str:
        self.hashed += 1
        return HASHER.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.verified += 1
        return HASHER.verify(password_hash, password)

    def verify_nobody(self, password: str) -> bool:
        self.verified += 1
        return HASHER.verify_nobody(password)

    def needs_rehash(self, password_hash: str) -> bool:
        return HASHER.needs_rehash(password_hash)


@dataclass
class World:
    accounts: Accounts
    sessions: Sessions
    identity: Identity
    clock: Clock
    hasher: CountingHasher
    # The device cookie of the last successful login.
    device_cookie: str | None = None

    async def register(self, email: str = "ann@example.com", client: str = "c") -> UUID:
        written = await self.accounts.register(
            email=email,
            password=PASSWORD,
            display_name="Ann",
            client=client,
            meta=meta(None, "test"),
        )
        return written.id

    async def login(
        self, *, email: str, password: str, client: str, device_cookie: str | None = None
    ) -> TokenPair:
        logged_in = await self.accounts.login(
            email=email, password=password, client=client, device_cookie=device_cookie
        )
        self.device_cookie = logged_in.device_cookie
        return logged_in.tokens


class SlowHasher:
    """Takes a while per call, as argon2 does, and notes how many calls ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self.calls = 0
        self.most_at_once = 0

    def _work(self) -> None:
        with self._lock:
            self.calls += 1
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        time.sleep(0.02)  # long enough for the callers to pile up, were nothing holding them
        with self._lock:
            self._running -= 1

    def hash(self, password: str) -> str:
        self._work()
        return HASHER.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self._work()
        return False

    def verify_nobody(self, password: str) -> bool:
        self._work()
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        return False


def _sessions(clock: Clock) -> Sessions:
    # The tokens' expiry is checked by PyJWT against the real time, so they use it too.
    return Sessions(
        JwtTokens(signing_key(SECRET), algorithm="HS256", access_ttl=900, refresh_ttl=3600),
        InMemorySessionStore(clock=clock.seconds),
        idle_timeout=7 * 86_400,
        lifetime=30 * 86_400,
        clock=clock.seconds,
    )


def _accounts(
    identity: Identity,
    hasher: PasswordHasher,
    clock: Clock,
    sessions: Sessions | None = None,
    hashing_slots: int | None = None,
) -> Accounts:
    return Accounts(
        identity=identity,
        hasher=hasher,
        sessions=sessions or _sessions(clock),
        limiter=InMemoryRateLimiter(clock=clock.seconds),
        limits=AuthLimits(
            login_per_account_client=3,
            login_per_client=5,
            login_window=60,
            login_account_free=8,
            login_account_delay_cap=300,
            forgot_per_email=2,
            forgot_per_client=10,
            forgot_window=60,
            register_per_client=3,
            register_window=60,
        ),
        devices=DeviceCookies(b"device-key", 3600, clock=clock.seconds),
        reset_key=reset_key(SECRET),
        reset_ttl=timedelta(minutes=30),
        clock=clock,
        hashing_slots=hashing_slots,
    )


@pytest.fixture
def world() -> World:
    clock = Clock()
    sessions = _sessions(clock)
    identity = Identity()  # the library's in-memory event store
    hasher = CountingHasher()
    return World(_accounts(identity, hasher, clock, sessions), sessions, identity, clock, hasher)


async def _reset_token(world: World, email: str) -> str:
    requested = await world.accounts.request_reset(email=email, meta=meta(None, "test"))
    assert requested is not None
    return derive_reset_token(reset_key(SECRET), requested.claim)


async def test_a_registered_user_logs_in_with_any_case_of_the_email(world: World) -> None:
    user = await world.register("Ann@Example.com")
    pair = await world.login(email="ANN@example.COM", password=PASSWORD, client="c")
    assert await world.sessions.user_for(pair.access_token) == user


async def test_one_address_in_any_unicode_form_is_one_account(world: World) -> None:
    # Accents typed as one code point or as a letter and a combining mark are one address.
    user = await world.register(unicodedata.normalize("NFD", "Zoë@Example.com"))
    composed = unicodedata.normalize("NFC", "zoë@example.com")
    pair = await world.login(email=composed, password=PASSWORD, client="c")
    assert await world.sessions.user_for(pair.access_token) == user
    requested = await world.accounts.request_reset(email=composed, meta=meta(None, "test"))
    assert requested is not None
    assert requested.claim.user_id == user
    with pytest.raises(EmailTaken):
        await world.register(composed)


async def test_registrations_are_throttled_per_client_before_any_hashing(world: World) -> None:
    for n in range(3):
        await world.register(f"u{n}@example.com", client="c1")
    hashed = world.hasher.hashed
    with pytest.raises(RateLimited) as limited:
        await world.register("u3@example.com", client="c1")
    assert 1 <= limited.value.retry_after <= 60
    assert world.hasher.hashed == hashed
    assert world.identity.find_by_email("u3@example.com") is None
    # Another address is not affected, and the window ends.
    await world.register("u4@example.com", client="c2")
    world.clock.now += timedelta(seconds=61)
    await world.register("u5@example.com", client="c1")


async def test_at_most_hashing_slots_argon2_runs_at_once() -> None:
    hasher = SlowHasher()
    accounts = _accounts(Identity(), hasher, Clock(), hashing_slots=2)
    await asyncio.gather(
        *(
            accounts.register(
                email=f"u{n}@example.com",
                password=PASSWORD,
                display_name="U",
                client=f"c{n}",
                meta=meta(None, "test"),
            )
            for n in range(6)
        ),
        *(
            accounts.login(email=f"u{n}@example.com", password="guess", client=f"d{n}")
            for n in range(6)
        ),
        return_exceptions=True,
    )
    assert hasher.calls == 12
    assert hasher.most_at_once == 2


async def test_wrong_password_and_unknown_email_fail_alike(world: World) -> None:
    await world.register()
    with pytest.raises(InvalidCredentials) as wrong:
        await world.login(email="ann@example.com", password="nope", client="c")
    with pytest.raises(InvalidCredentials) as unknown:
        await world.login(email="bob@example.com", password="nope", client="c")
    assert str(wrong.value) == str(unknown.value)


async def test_failures_are_refused_per_account_and_client_not_for_the_account(
    world: World,
) -> None:
    await world.register()
    # Every spelling of the address counts against the one account.
    for spelling in ("ann@example.com", "ANN@example.com", " Ann@Example.COM "):
        with pytest.raises(InvalidCredentials):
            await world.login(email=spelling, password="nope", client="c1")
    # That client is refused, even with the right password, until the window ends...
    with pytest.raises(RateLimited) as limited:
        await world.login(email="ann@example.com", password=PASSWORD, client="c1")
    assert 1 <= limited.value.retry_after <= 60
    # ...but the account is not locked: the owner elsewhere logs in.
    assert await world.login(email="ann@example.com", password=PASSWORD, client="c2")
    world.clock.now += timedelta(seconds=61)
    assert await world.login(email="ann@example.com", password=PASSWORD, client="c1")


async def test_unknown_emails_are_throttled_like_registered_ones(world: World) -> None:
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await world.login(email="bob@example.com", password="nope", client="c1")
    with pytest.raises(RateLimited):
        await world.login(email="bob@example.com", password="nope", client="c1")


async def _fail_from_many_clients(world: World, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        with pytest.raises(InvalidCredentials):
            await world.login(email="ann@example.com", password="nope", client=f"x{n}")


async def test_many_clients_failures_slow_the_account_exponentially(world: World) -> None:
    await world.register()
    await _fail_from_many_clients(world, 8)  # login_account_free
    waits = []
    for n in range(10):
        with pytest.raises(RateLimited) as slowed:
            await world.login(email="ann@example.com", password="nope", client=f"y{n}")
        waits.append(slowed.value.retry_after)
        world.clock.now += timedelta(seconds=slowed.value.retry_after)
        with pytest.raises(InvalidCredentials):
            await world.login(email="ann@example.com", password="nope", client=f"y{n}")
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]  # doubling, up to the cap
    # Slowed, never refused: the owner from a new client gets in once the delay has passed.
    with pytest.raises(RateLimited) as slowed:
        await world.login(email="ann@example.com", password=PASSWORD, client="new")
    world.clock.now += timedelta(seconds=slowed.value.retry_after)
    assert await world.login(email="ann@example.com", password=PASSWORD, client="new")


async def test_strangers_failures_do_not_keep_the_owners_device_out(world: World) -> None:
    await world.register()
    await world.login(email="ann@example.com", password=PASSWORD, client="home")
    device = world.device_cookie
    await _fail_from_many_clients(world, 8)
    # Strangers at the owner's own address (a shared NAT) use up its allowances too.
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await world.login(email=f"u{n}@example.com", password="nope", client="home")
    with pytest.raises(RateLimited):
        await world.login(email="ann@example.com", password=PASSWORD, client="home")
    assert await world.login(
        email="ann@example.com", password=PASSWORD, client="home", device_cookie=device
    )


async def test_a_device_cookie_is_limited_on_its_own_and_only_for_its_account(
    world: World,
) -> None:
    await world.register()
    await world.register("bob@example.com", client="c9")
    await world.login(email="ann@example.com", password=PASSWORD, client="home")
    device = world.device_cookie
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await world.login(
                email="ann@example.com", password="nope", client="home", device_cookie=device
            )
    with pytest.raises(RateLimited):
        await world.login(
            email="ann@example.com", password=PASSWORD, client="home", device_cookie=device
        )
    # Ann's cookie is nothing to Bob's account: the usual per-client counts apply.
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await world.login(
                email="bob@example.com", password="nope", client="far", device_cookie=device
            )
    with pytest.raises(RateLimited):
        await world.login(
            email="bob@example.com", password=PASSWORD, client="far", device_cookie=device
        )


async def test_failures_from_one_address_across_accounts_are_throttled(world: World) -> None:
    await world.register()
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await world.login(email=f"u{n}@example.com", password="x", client="c1")
    with pytest.raises(RateLimited):
        await world.login(email="ann@example.com", password=PASSWORD, client="c1")
    # Another address is not affected.
    assert await world.login(email="ann@example.com", password=PASSWORD, client="c2")


async def test_a_success_forgives_the_accounts_failures(world: World) -> None:
    await world.register()
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await world.login(email="ann@example.com", password="nope", client="c")
    await world.login(email="ann@example.com", password=PASSWORD, client="c")
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await world.login(email="ann@example.com", password="nope", client="c")
    assert await world.login(email="ann@example.com", password=PASSWORD, client="c")


async def test_concurrent_guesses_past_the_limit_are_refused_unchecked(world: World) -> None:
    await world.register()
    # Twelve wrong guesses and, last, the right password, all at once from one client: every
    # one would pass a check made before any of them was counted.
    passwords = [f"guess {n}" for n in range(12)] + [PASSWORD]
    verified = world.hasher.verified
    outcomes = await asyncio.gather(
        *(
            world.login(email="ann@example.com", password=password, client="c")
            for password in passwords
        ),
        return_exceptions=True,
    )
    refused = [type(outcome) for outcome in outcomes]
    assert refused.count(InvalidCredentials) == 3  # login_per_account_client
    assert refused.count(RateLimited) == 10  # the right password too: it came too late
    assert world.hasher.verified - verified == 3


async def test_concurrent_guesses_from_one_client_get_no_more_401s_than_its_limit(
    world: World,
) -> None:
    guesses = await asyncio.gather(
        *(world.login(email=f"u{n}@example.com", password="guess", client="c1") for n in range(12)),
        return_exceptions=True,
    )
    refused = [type(outcome) for outcome in guesses]
    assert refused.count(InvalidCredentials) == 5  # login_per_client
    assert refused.count(RateLimited) == 7


async def test_successful_logins_do_not_use_up_the_clients_allowance(world: World) -> None:
    await world.register()
    for _ in range(8):  # more than login_per_client
        assert await world.login(email="ann@example.com", password=PASSWORD, client="c")
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await world.login(email=f"u{n}@example.com", password="x", client="c")
    with pytest.raises(RateLimited):
        await world.login(email="ann@example.com", password=PASSWORD, client="c")


async def test_refresh_rotates_and_reuse_revokes_the_session(world: World) -> None:
    await world.register()
    first = await world.login(email="ann@example.com", password=PASSWORD, client="c")
    second = await world.accounts.refresh(first.refresh_token)
    assert await world.sessions.user_for(second.access_token)
    with pytest.raises(Unauthenticated):
        await world.accounts.refresh(first.refresh_token)
    for spent in (second.refresh_token,):
        with pytest.raises(Unauthenticated):
            await world.accounts.refresh(spent)
    for access in (first.access_token, second.access_token):
        with pytest.raises(Unauthenticated):
            await world.sessions.user_for(access)


async def test_logout_ends_access_and_refresh_together(world: World) -> None:
    await world.register()
    pair = await world.login(email="ann@example.com", password=PASSWORD, client="c")
    other = await world.login(email="ann@example.com", password=PASSWORD, client="c")
    await world.accounts.logout(pair.access_token)
    with pytest.raises(Unauthenticated):
        await world.sessions.user_for(pair.access_token)
    with pytest.raises(Unauthenticated):
        await world.accounts.refresh(pair.refresh_token)
    # Only that session: the user's other login goes on.
    assert await world.sessions.user_for(other.access_token)


async def test_a_reset_works_once_and_revokes_every_session(world: World) -> None:
    user = await world.register()
    sessions = [
        await world.login(email="ann@example.com", password=PASSWORD, client="c") for _ in range(2)
    ]
    token = await _reset_token(world, "ann@example.com")
    written = await world.accounts.reset_password(
        token=token, new_password="a new password", meta=meta(None, "test")
    )
    assert written.id == user
    for pair in sessions:
        with pytest.raises(Unauthenticated):
            await world.sessions.user_for(pair.access_token)
    with pytest.raises(InvalidResetToken):
        await world.accounts.reset_password(
            token=token, new_password="again a password", meta=meta(None, "test")
        )
    with pytest.raises(InvalidCredentials):
        await world.login(email="ann@example.com", password=PASSWORD, client="c")
    assert await world.login(email="ann@example.com", password="a new password", client="c")


async def test_the_reset_is_recorded_as_done_by_the_user(world: World) -> None:
    user = await world.register()
    token = await _reset_token(world, "ann@example.com")
    await world.accounts.reset_password(
        token=token, new_password="a new password", meta=meta(None, "request-1")
    )
    changed = list(world.identity.events.get(user))[-1]
    assert vars(changed)["meta"] == {
        "actor_id": str(user),
        "correlation_id": "request-1",
        "traceparent": None,
    }


async def test_a_reset_token_expires(world: World) -> None:
    await world.register()
    token = await _reset_token(world, "ann@example.com")
    world.clock.now += timedelta(minutes=30, seconds=1)
    with pytest.raises(InvalidResetToken):
        await world.accounts.reset_password(
            token=token, new_password="a new password", meta=meta(None, "test")
        )


async def test_another_password_change_spends_older_reset_tokens(world: World) -> None:
    await world.register()
    older = await _reset_token(world, "ann@example.com")
    newer = await _reset_token(world, "ann@example.com")
    await world.accounts.reset_password(
        token=newer, new_password="a new password", meta=meta(None, "test")
    )
    with pytest.raises(InvalidResetToken):
        await world.accounts.reset_password(
            token=older, new_password="another password", meta=meta(None, "test")
        )


async def test_a_reset_request_for_an_unknown_email_records_nothing(world: World) -> None:
    head = world.identity.recorder.max_notification_id()
    assert (
        await world.accounts.request_reset(email="bob@example.com", meta=meta(None, "test")) is None
    )
    assert world.identity.recorder.max_notification_id() == head


async def test_reset_requests_are_throttled_per_email(world: World) -> None:
    for _ in range(2):
        await world.accounts.throttle_reset_request(email="bob@example.com", client="c")
    with pytest.raises(RateLimited):
        await world.accounts.throttle_reset_request(email="BOB@example.com", client="c2")


async def test_a_login_that_read_the_user_before_a_reset_opens_no_session(world: World) -> None:
    user = await world.register()
    # The login checked the old password against this version of the user ...
    before = world.identity.get_user(user).version
    token = await _reset_token(world, "ann@example.com")
    # ... and the reset lands before the login opens its session.
    await world.accounts.reset_password(
        token=token, new_password="a new password", meta=meta(None, "test")
    )
    with pytest.raises(InvalidCredentials):
        await world.sessions.open(user, before)
    assert await world.sessions.open(user, world.identity.get_user(user).version)


async def test_a_spent_reset_token_logs_nobody_out(world: World) -> None:
    await world.register()
    token = await _reset_token(world, "ann@example.com")
    await world.accounts.reset_password(
        token=token, new_password="a new password", meta=meta(None, "test")
    )
    pair = await world.login(email="ann@example.com", password="a new password", client="c")
    with pytest.raises(InvalidResetToken):
        await world.accounts.reset_password(
            token=token, new_password="another password", meta=meta(None, "test")
        )
    assert await world.sessions.user_for(pair.access_token)


async def test_logins_are_counted_by_outcome(world: World) -> None:
    def count(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "taskledger_commands_total", {"command": "login", "outcome": outcome}
        )
        return value or 0.0

    ok, refused = count("ok"), count("InvalidCredentials")
    await world.register()
    await world.login(email="ann@example.com", password=PASSWORD, client="c")
    with pytest.raises(InvalidCredentials):
        await world.login(email="ann@example.com", password="nope", client="c")
    assert (count("ok"), count("InvalidCredentials")) == (ok + 1, refused + 1)


async def test_refreshing_never_keeps_a_session_past_its_absolute_lifetime(world: World) -> None:
    await world.register()
    pair = await world.login(email="ann@example.com", password=PASSWORD, client="c")
    # Refreshed every six days (inside the seven-day idle timeout), until day 30.
    for _ in range(4):
        world.clock.now += timedelta(days=6)
        pair = await world.accounts.refresh(pair.refresh_token)
    world.clock.now += timedelta(days=6, seconds=-1)  # day 30, one second before the end
    pair = await world.accounts.refresh(pair.refresh_token)
    assert pair.expires_in == 1  # the access token too ends with the session
    world.clock.now += timedelta(seconds=1)
    with pytest.raises(Unauthenticated):
        await world.sessions.user_for(pair.access_token)
    with pytest.raises(Unauthenticated):
        await world.accounts.refresh(pair.refresh_token)


async def test_a_session_unused_for_the_idle_timeout_ends(world: World) -> None:
    await world.register()
    pair = await world.login(email="ann@example.com", password=PASSWORD, client="c")
    world.clock.now += timedelta(days=7)
    with pytest.raises(Unauthenticated):
        await world.accounts.refresh(pair.refresh_token)


async def test_a_login_after_a_cost_rise_rehashes_and_keeps_pending_resets(world: World) -> None:
    user_id = await world.register()
    token = await _reset_token(world, "ann@example.com")
    before = world.identity.get_user(user_id)
    stronger = Argon2Hasher(time_cost=2, memory_cost=128)
    raised = _accounts(world.identity, stronger, world.clock, world.sessions)
    await raised.login(
        email="ann@example.com", password=PASSWORD, client="c", meta=meta(None, "login-1")
    )
    after = world.identity.get_user(user_id)
    assert after.version == before.version + 1
    assert "m=128,t=2" in after.password_hash
    assert stronger.verify(after.password_hash, PASSWORD)
    last = list(world.identity.events.get(user_id))[-1]
    assert type(last).__qualname__ == "User.PasswordRehashed"
    assert last.meta["actor_id"] == str(user_id)  # type: ignore[attr-defined]
    # Not a password change: the reset requested before it still works.
    await raised.reset_password(token=token, new_password="a new password", meta=meta(None, "r"))
    # And at the raised cost, the next login rehashes nothing.
    version = world.identity.get_user(user_id).version
    await raised.login(email="ann@example.com", password="a new password", client="c")
    assert world.identity.get_user(user_id).version == version


async def test_a_failed_login_rehashes_nothing(world: World) -> None:
    user_id = await world.register()
    version = world.identity.get_user(user_id).version
    raised = _accounts(world.identity, Argon2Hasher(time_cost=2, memory_cost=128), world.clock)
    with pytest.raises(InvalidCredentials):
        await raised.login(email="ann@example.com", password="nope", client="c")
    assert world.identity.get_user(user_id).version == version


async def test_a_common_password_or_the_email_is_refused_before_anything_is_written(
    world: World,
) -> None:
    for password in ("iloveyou", "ANN@example.com"):
        with pytest.raises(WeakPassword):
            await world.accounts.register(
                email="ann@example.com",
                password=password,
                display_name="Ann",
                client="c",
                meta=meta(None, "test"),
            )
    assert world.identity.find_by_email("ann@example.com") is None
    assert world.hasher.hashed == 0

"""Turning one integration message into one accepted mail, whatever crashes or fails meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from consumers.event_context import bind_event_context
from consumers.ledger import RedisDeliveryLedger, StreamEntry
from consumers.letters import RESET_KIND, WELCOME_KIND, password_reset_letter, welcome_letter
from consumers.mail import Mail, Mailer, PermanentFailure, TransientFailure
from consumers.messages import IntegrationMessage, PasswordResetRequested, UserRegistered
from consumers.metrics import MAIL_DEAD_LETTERED, MAIL_RETRIED, MAIL_SEND_SECONDS, MAIL_SENT
from consumers.retry import RetryPolicy

log = logging.getLogger("taskledger.mailer")

Outcome = Literal["sent", "duplicate", "pending", "retrying", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class MailDelivery:
    ledger: RedisDeliveryLedger
    mailer: Mailer
    policy: RetryPolicy
    sender: str  # the From: header
    reset_key: bytes  # domain.reset_tokens.reset_key(server secret)
    reset_url_base: str
    owner: str  # this mailer's consumer name: who holds a lease
    # Mails in flight in this process, across every subscriber. Taken before the lease, so
    # waiting for a slot never eats into a lease's time.
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    async def password_reset(self, message: PasswordResetRequested, entry: StreamEntry) -> Outcome:
        """One reset request, one mail: the token is derived here and appears nowhere else."""
        return await self._deliver(
            RESET_KIND,
            message,
            entry,
            lambda: password_reset_letter(message, self.reset_key, self.reset_url_base),
        )

    async def welcome(self, message: UserRegistered, entry: StreamEntry) -> Outcome:
        """One registration, one welcome mail."""
        return await self._deliver(WELCOME_KIND, message, entry, lambda: welcome_letter(message))

    async def malformed(self, kind: str, entry: StreamEntry, error: str) -> None:
        """A message no retry can read goes straight to the dead letters."""
        await self._park(kind, None, entry, f"malformed message: {error}", attempts=1)

    async def _deliver(
        self,
        kind: str,
        message: IntegrationMessage,
        entry: StreamEntry,
        letter: Callable[[], Mail],
    ) -> Outcome:
        # Logs (and, with OpenTelemetry, a span) join the HTTP request that caused the mail.
        origin = {"correlation_id": message.correlation_id, "traceparent": message.traceparent}
        with bind_event_context(
            origin, f"send {kind} mail", message_id=str(message.message_id), mail_kind=kind
        ):
            async with self.in_flight:
                return await self._attempt(kind, message.message_id, entry, letter)

    async def _attempt(
        self, kind: str, message_id: UUID, entry: StreamEntry, letter: Callable[[], Mail]
    ) -> Outcome:
        decision = await self.ledger.begin(message_id, self.owner)
        if decision.verdict == "done":
            await self.ledger.duplicate(entry)
            return "duplicate"
        if decision.verdict in ("busy", "wait"):
            # Left pending: whichever mailer claims it once it is idle long enough decides again.
            return "pending"
        if decision.verdict == "exhausted":
            reason = f"gave up after {decision.attempts} attempts: {decision.last_error}"
            await self._park(kind, message_id, entry, reason, decision.attempts)
            return "dead_lettered"

        attempt = decision.attempts
        started = time.perf_counter()
        try:
            await self.mailer.send(letter(), self.sender)
        except PermanentFailure as failure:
            await self._park(kind, message_id, entry, f"permanent failure: {failure}", attempt)
            return "dead_lettered"
        except Exception as failure:  # any other failure is worth a retry, within the limit
            if not isinstance(failure, TransientFailure):
                # A traceback without frame locals: a local may hold the mail, token and all.
                trace = "".join(traceback.format_exception(failure))
                log.error("unexpected failure while mailing:\n%s", trace)
            return await self._retry_later(kind, message_id, entry, attempt, failure)
        finally:
            MAIL_SEND_SECONDS.observe(time.perf_counter() - started)
        await self.ledger.sent(entry, message_id, self.owner)
        MAIL_SENT.labels(kind).inc()
        log.info("mail sent", extra={"attempt": attempt})
        return "sent"

    async def _retry_later(
        self, kind: str, message_id: UUID, entry: StreamEntry, attempt: int, failure: Exception
    ) -> Outcome:
        error = str(failure) or type(failure).__name__
        if self.policy.exhausted(attempt):
            reason = f"gave up after {attempt} attempts: {error}"
            await self._park(kind, message_id, entry, reason, attempt)
            return "dead_lettered"
        delay = self.policy.delay(attempt)
        await self.ledger.postpone(message_id, self.owner, delay, error)
        MAIL_RETRIED.labels(kind).inc()
        log.warning("mail not sent, retrying in %.1fs (attempt %d): %s", delay, attempt, error)
        return "retrying"

    async def _park(
        self, kind: str, message_id: UUID | None, entry: StreamEntry, reason: str, attempts: int
    ) -> None:
        await self.ledger.dead_letter(
            entry, kind=kind, message_id=message_id, reason=reason, attempts=attempts
        )
        MAIL_DEAD_LETTERED.labels(kind).inc()
        log.error("mail parked in the dead letters: %s", reason)

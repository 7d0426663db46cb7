"""The Mailer port: hand one mail to a mail transfer agent, and say how it failed if it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    # Kept out of repr (and so out of any log): the reset mail's body holds the token.
    text: str = field(repr=False)
    html: str = field(repr=False)
    # A stable Message-ID per integration message lets the receiving side de-duplicate too.
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


class SendFailed(Exception):
    """The mail was not accepted."""


class TransientFailure(SendFailed):
    """Worth another attempt later: connection refused or lost, timeout, a 4xx reply."""


class PermanentFailure(SendFailed):
    """No retry will help: a 5xx reply, a malformed address."""


def malformed(address: str) -> bool:
    """Not one local part and one domain, or a header break: no server could take it."""
    local, _, domain = address.partition("@")
    return not local or not domain or "@" in domain or any(c in address for c in "\r\n")


class Mailer(Protocol):
    """Sends one mail; returns once the server accepted it, else raises a ``SendFailed``."""

    async def send(self, mail: Mail, sender: str) -> None: ...


class InMemoryMailer:
    """Accepts every mail to an address not listed in ``refuse``; keeps what it accepted."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.sent: list[tuple[str, Mail]] = []
        self.refuse: set[str] = refuse if refuse is not None else set()

    async def send(self, mail: Mail, sender: str) -> None:
        if malformed(mail.to):
            raise PermanentFailure(f"malformed address {mail.to!r}")
        if mail.to.lower() in self.refuse:
            raise PermanentFailure(f"550 recipient refused: {mail.to}")
        self.sent.append((sender, mail))

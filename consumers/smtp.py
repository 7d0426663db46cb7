"""SmtpMailer: the Mailer port over aiosmtplib, configured by one URL.

``smtp://[user:pass@]host:port`` (plain, or ``?starttls=true``), ``smtps://…`` (TLS from the
first byte). Every SMTP conversation is bounded by ``timeout`` as a whole, so a hung server
costs one attempt, never a stuck mailer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from consumers.mail import Mail, PermanentFailure, TransientFailure, malformed

_TRUE = {"1", "true", "yes", "on"}
_WIRE = compat32.clone(linesep="\r\n")


@dataclass(frozen=True, slots=True)
class SmtpMailer:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool = False
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0) -> SmtpMailer:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("must be smtp://[user:pass@]host:port or smtps://…")
        query = parse_qs(parts.query)
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=query.get("starttls", ["false"])[-1].lower() in _TRUE,
            timeout=timeout,
        )

    async def send(self, mail: Mail, sender: str) -> None:
        envelope_from = parseaddr(sender)[1]
        data = self._message(mail, sender)
        try:
            async with asyncio.timeout(self.timeout):
                await aiosmtplib.send(
                    data,
                    sender=envelope_from,
                    recipients=[mail.to],
                    hostname=self.hostname,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.use_tls,
                    start_tls=self.start_tls,
                    timeout=self.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as refused:
            raise _by_code(refused.recipients[0].code, str(refused.recipients[0])) from None
        except aiosmtplib.SMTPResponseException as reply:
            raise _by_code(reply.code, f"{reply.code} {reply.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as failure:
            raise TransientFailure(f"{type(failure).__name__}: {failure}") from None

    @staticmethod
    def _message(mail: Mail, sender: str) -> bytes:
        """The mail as sent: text and HTML alternatives, flattened once, CRLF line ends.

        Built with the compat32 MIME classes: several times cheaper than ``EmailMessage``'s
        header registry, which dominated the mailer's CPU time.
        """
        if malformed(mail.to):
            raise PermanentFailure(f"malformed address {mail.to!r}")
        headers = {
            "From": _address(sender),
            "To": mail.to,
            "Subject": str(Header(mail.subject, "utf-8"))
            if not mail.subject.isascii()
            else mail.subject,
            "Date": formatdate(localtime=False),
            "Message-ID": mail.message_id,
            **mail.headers,
        }
        if any("\r" in value or "\n" in value for value in headers.values()):
            raise PermanentFailure("unusable header: a line break in a header value")
        message = MIMEMultipart("alternative")
        for name, value in headers.items():
            message[name] = value
        message.attach(MIMEText(mail.text, "plain", "utf-8"))
        message.attach(MIMEText(mail.html, "html", "utf-8"))
        return message.as_bytes(policy=_WIRE)


def _address(value: str) -> str:
    name, address = parseaddr(value)
    if not address or malformed(address):
        raise PermanentFailure(f"malformed sender {value!r}")
    return formataddr((name, address), charset="utf-8")


def _by_code(code: int, detail: str) -> TransientFailure | PermanentFailure:
    # RFC 5321: 4yz is a transient negative reply, 5yz a permanent one.
    return PermanentFailure(detail) if 500 <= code < 600 else TransientFailure(detail)

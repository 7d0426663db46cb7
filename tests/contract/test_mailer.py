"""The Mailer port, run against every adapter: in memory, and SMTP to a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from consumers.mail import InMemoryMailer, Mail, Mailer, PermanentFailure, TransientFailure
from consumers.smtp import SmtpMailer
from ops.engines import free_port
from ops.smtp_sink import SmtpSink

SENDER = "taskledger <no-reply@taskledger.localhost>"


@dataclass
class Subject:
    mailer: Mailer
    delivered: Callable[[], list[str]]  # recipients of the accepted mails, in order
    refuse: Callable[[str], None]  # make the far end answer "no such mailbox" for an address


@pytest.fixture(params=["memory", "smtp"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "memory":
        memory = InMemoryMailer()
        yield Subject(memory, lambda: [mail.to for _, mail in memory.sent], memory.refuse.add)
        return
    sink: SmtpSink = request.getfixturevalue("smtp_sink")
    yield Subject(
        SmtpMailer.from_url(sink.url, timeout=5),
        lambda: [r for received in sink.received for r in received.recipients],
        sink.handler.refuse.add,
    )


def _mail(to: str, n: int = 1) -> Mail:
    return Mail(
        to=to,
        subject=f"Hello {n}",
        text="plain",
        html="<p>html</p>",
        message_id=f"<m{n}@taskledger>",
    )


async def test_an_accepted_mail_is_delivered_once(subject: Subject) -> None:
    await subject.mailer.send(_mail("ada@example.com"), SENDER)
    await subject.mailer.send(_mail("bob@example.com", 2), SENDER)
    assert subject.delivered() == ["ada@example.com", "bob@example.com"]


async def test_a_refused_mailbox_is_a_permanent_failure(subject: Subject) -> None:
    subject.refuse("gone@example.com")
    with pytest.raises(PermanentFailure):
        await subject.mailer.send(_mail("gone@example.com"), SENDER)
    assert subject.delivered() == []


@pytest.mark.parametrize("address", ["no-at-sign", "two@@example.com", "a@b.c\r\nBcc: x@y.z"])
async def test_a_malformed_address_is_a_permanent_failure(subject: Subject, address: str) -> None:
    with pytest.raises(PermanentFailure):
        await subject.mailer.send(_mail(address), SENDER)
    assert subject.delivered() == []


# What only a network adapter can meet: a server that is down, busy or too slow.


async def test_smtp_server_down_is_transient() -> None:
    mailer = SmtpMailer.from_url(f"smtp://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TransientFailure):
        await mailer.send(_mail("ada@example.com"), SENDER)


async def test_a_4xx_reply_is_transient(smtp_sink: SmtpSink) -> None:
    smtp_sink.handler.defer.add("busy@example.com")
    with pytest.raises(TransientFailure, match="450"):
        await SmtpMailer.from_url(smtp_sink.url).send(_mail("busy@example.com"), SENDER)


async def test_a_server_slower_than_the_timeout_is_transient(smtp_sink: SmtpSink) -> None:
    smtp_sink.handler.delay = 1.0
    with pytest.raises(TransientFailure):
        await SmtpMailer.from_url(smtp_sink.url, timeout=0.3).send(_mail("a@example.com"), SENDER)
    assert smtp_sink.received == []  # it gave up before the 250, so nothing was accepted


async def test_smtp_sends_text_and_html_with_the_message_id(smtp_sink: SmtpSink) -> None:
    await SmtpMailer.from_url(smtp_sink.url).send(_mail("ada@example.com", 7), SENDER)
    [received] = smtp_sink.received
    message = received.message()
    assert message["Message-ID"] == "<m7@taskledger>"
    assert message["From"] == SENDER
    assert message.get_body(("plain",)).get_content().strip() == "plain"  # type: ignore[union-attr]
    assert message.get_body(("html",)).get_content().strip() == "<p>html</p>"  # type: ignore[union-attr]
    assert smtp_sink.handler.directory is not None
    assert len(list(smtp_sink.handler.directory.glob("*.eml"))) == 1

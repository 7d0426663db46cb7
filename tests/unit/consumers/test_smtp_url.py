"""TASKLEDGER_SMTP_URL: plain, STARTTLS, TLS, credentials."""

from __future__ import annotations

import pytest

from consumers.smtp import SmtpMailer


def test_a_plain_url_with_credentials() -> None:
    mailer = SmtpMailer.from_url("smtp://me%40x.org:p%3Ass@mail.example:2525", timeout=7)
    assert mailer == SmtpMailer("mail.example", 2525, "me@x.org", "p:ss", False, False, 7)


def test_starttls_is_asked_for_in_the_query() -> None:
    mailer = SmtpMailer.from_url("smtp://mail.example?starttls=true")
    assert (mailer.port, mailer.start_tls, mailer.use_tls) == (25, True, False)


def test_smtps_means_tls_from_the_first_byte() -> None:
    mailer = SmtpMailer.from_url("smtps://mail.example")
    assert (mailer.port, mailer.start_tls, mailer.use_tls) == (465, False, True)


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="smtp://"):
        SmtpMailer.from_url(url)

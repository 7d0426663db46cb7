"""The mailer's metrics (prometheus-client default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MAIL_SENT = Counter("taskledger_mail_sent_total", "Mails accepted by the SMTP server.", ["kind"])
MAIL_RETRIED = Counter(
    "taskledger_mail_retried_total", "Send attempts that failed and will be retried.", ["kind"]
)
MAIL_DEAD_LETTERED = Counter(
    "taskledger_mail_dead_lettered_total", "Mails parked in the dead-letter stream.", ["kind"]
)
MAIL_SEND_SECONDS = Histogram(
    "taskledger_mail_send_seconds",
    "Duration of one SMTP conversation, successful or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def announce(kinds: list[str]) -> None:
    """Every counter shows each kind from the start, at 0: dashboards need no special case."""
    for kind in kinds:
        for counter in (MAIL_SENT, MAIL_RETRIED, MAIL_DEAD_LETTERED):
            counter.labels(kind)

"""The relay's metrics (prometheus-client default registry)."""

from __future__ import annotations

from prometheus_client import Counter

# Kinds as the mailer names them (consumers/letters.py); the two sides share no code.
WELCOME_KIND = "welcome"
RESET_KIND = "password_reset"
TOO_OLD = "older_than_window"
EXPIRED = "expired"

MAIL_SKIPPED = Counter(
    "taskledger_mail_skipped_total",
    "Events the relay did not publish as mail: older than the relay window, or a reset whose "
    "link had expired.",
    ["kind", "reason"],
)
for _kind, _reason in ((WELCOME_KIND, TOO_OLD), (RESET_KIND, TOO_OLD), (RESET_KIND, EXPIRED)):
    MAIL_SKIPPED.labels(_kind, _reason)  # every series shows from the start, at 0

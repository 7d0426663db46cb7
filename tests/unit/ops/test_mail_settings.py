"""Mail settings: the de-dup memory must outlive every retry and re-publication."""

from __future__ import annotations

import pytest

from ops.settings import InvalidSetting, Settings, load_settings


def test_the_defaults_hold_together() -> None:
    settings = Settings()
    horizon = sum(
        min(settings.mail_retry_max, settings.mail_retry_base * 2**n)
        for n in range(settings.mail_max_attempts)
    )
    assert settings.mail_dedup_ttl > horizon + settings.mail_relay_window


def test_a_de_dup_ttl_shorter_than_the_horizon_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLEDGER_MAIL_DEDUP_TTL", "3600")
    with pytest.raises(InvalidSetting, match="TASKLEDGER_MAIL_DEDUP_TTL"):
        load_settings()

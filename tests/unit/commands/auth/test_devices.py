"""Device cookies: only this server's, for that account, before they expire."""

from __future__ import annotations

from commands.auth.devices import DeviceCookies

NOW = 1_800_000_000.0


def _cookies(now: float = NOW) -> DeviceCookies:
    return DeviceCookies(b"k" * 32, 3600, clock=lambda: now)


def test_a_cookie_names_its_device_for_its_account_only() -> None:
    cookie = _cookies().issue("ann", "d1")
    assert _cookies().device_for(cookie, "ann") == "d1"
    assert _cookies().device_for(cookie, "bob") is None


def test_a_new_device_gets_a_new_id() -> None:
    first, second = _cookies().issue("ann"), _cookies().issue("ann")
    assert _cookies().device_for(first, "ann") != _cookies().device_for(second, "ann")


def test_an_expired_cookie_counts_for_nothing() -> None:
    cookie = _cookies().issue("ann", "d1")
    assert _cookies(NOW + 3599).device_for(cookie, "ann") == "d1"
    assert _cookies(NOW + 3600).device_for(cookie, "ann") is None


def test_a_tampered_or_foreign_cookie_counts_for_nothing() -> None:
    cookie = _cookies().issue("ann", "d1")
    device, expires, mac = cookie.split(".")
    for forged in (
        f"d2.{expires}.{mac}",
        f"{device}.{int(expires) + 60}.{mac}",
        f"{device}.{expires}.{mac[:-2]}AA",
        DeviceCookies(b"x" * 32, 3600, clock=lambda: NOW).issue("ann", "d1"),
        "",
        "a.b",
        "a.b.c",
        "x" * 500,
    ):
        assert _cookies().device_for(forged, "ann") is None
    assert _cookies().device_for(None, "ann") is None

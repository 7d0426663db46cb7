"""Device cookies: proof that a client has logged in to an account before (OWASP's "device
cookies" against lockout attacks). A login that presents one for the account is counted on
its own key, away from strangers' failures at the account and at the client's address.

The cookie is ``<device id>.<expiry>.<MAC>``, the MAC an HMAC over the account's key, the id
and the expiry: it is checked without a store, names no user, and unlocks nothing but the
throttle (it is no credential). Nothing about devices is stored but their failure counters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable

DEVICE_COOKIE = "tl_device"


def device_key(secret: bytes) -> bytes:
    """The MAC key, derived so that the server secret never signs anything itself."""
    return hmac.new(secret, b"device-cookie", hashlib.sha256).digest()


class DeviceCookies:
    def __init__(self, key: bytes, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.ttl = ttl
        self._clock = clock

    def _mac(self, account: str, device_id: str, expires: int) -> str:
        message = f"{account}|{device_id}|{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, account: str, device_id: str | None = None) -> str:
        """A cookie for ``account`` (``account_key(email)``); a known device keeps its id."""
        device_id = device_id or uuid.uuid4().hex
        expires = int(self._clock()) + self.ttl
        return f"{device_id}.{expires}.{self._mac(account, device_id, expires)}"

    def device_for(self, cookie: str | None, account: str) -> str | None:
        """The device id, if the cookie is one this server issued for ``account`` and unexpired."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        device_id, expires, mac = parts[0], int(parts[1]), parts[2]
        if expires <= self._clock():
            return None
        if not hmac.compare_digest(mac, self._mac(account, device_id, expires)):
            return None
        return device_id

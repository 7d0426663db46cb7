"""An SMTP sink for the embedded mode and the tests: every accepted mail becomes an .eml file.

``python -m ops.smtp_sink --port P --dir DIR`` runs it as a child of ``taskledger up``; the
tests start it in-process (``SmtpSink``) and steer it: slow it down, make it refuse an address
with a permanent 550, stop it and start it again on the same port.
aiosmtpd's ``Controller`` needs a real free port (port 0 fails). The sink binds its socket itself,
retrying a while on EADDRINUSE: a restart on the same port may race the old socket's release.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

BIND_ATTEMPTS = 30  # with back-off up to 0.5 s: about 12 s in all before giving up


@dataclass(frozen=True, slots=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    accepted_at: float  # time.time()

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SinkHandler:
    """aiosmtpd handler. ``delay``, ``gate``, ``refuse`` and ``defer`` may change while it runs."""

    directory: Path | None = None
    delay: float = 0.0  # seconds before answering DATA: a slow provider
    # When set to an Event: every 250 is held until the Event is set (a test decides when,
    # e.g. only after it killed the client mid-send), whatever the machine's load.
    gate: threading.Event | None = None
    refuse: set[str] = field(default_factory=set)  # answered with 550 at RCPT (permanent)
    defer: set[str] = field(default_factory=set)  # answered with 450 at RCPT (try later)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answering: int = 0  # mails whose data arrived and whose 250 is still held back
    held: int = 0  # how many mails were ever held back so
    holding: list[Any] = field(default_factory=list)  # their SMTP sessions, while held

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        if address.lower() in self.defer:
            return "450 4.2.1 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        gate = self.gate
        if self.delay or gate is not None:
            with self.lock:
                self.answering += 1
                self.held += 1
                self.holding.append(server)
            try:
                await asyncio.sleep(self.delay)
                # Polled: the gate is set from the test's thread, which an asyncio.Event
                # (bound to this loop, not thread-safe) cannot be.
                while gate is not None and not gate.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            finally:
                with self.lock:
                    self.answering -= 1
                    self.holding.remove(server)
            if _gone(server):
                # The client went away before our 250: it never learnt the mail was accepted,
                # so, like a server that checks its reply went out, we do not deliver it.
                return "451 4.4.2 connection lost"
        data = bytes(envelope.original_content or envelope.content)
        if self.directory is not None:
            _write_eml(self.directory, data)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), data, time.time())
            )
        return "250 2.0.0 message accepted"

    def held_clients_gone(self) -> bool:
        """Every client whose 250 is held has hung up (the sink's loop has seen it)."""
        with self.lock:
            return all(_gone(server) for server in self.holding)


def _gone(server: Any) -> bool:
    return server.transport is None or server.transport.is_closing()


def _write_eml(directory: Path, data: bytes) -> Path:
    # Written aside then renamed: a reader of the directory never sees half a mail.
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
    partial = directory / f".{name}.part"
    partial.write_bytes(data)
    os.replace(partial, directory / name)
    return directory / name


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    pause = 0.05
    for attempt in range(1, BIND_ATTEMPTS + 1):
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(128)
        except OSError as error:
            sock.close()
            if error.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            continue
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable")


class _ListeningController(Controller):
    """aiosmtpd's ``Controller`` serving a socket already bound and listening."""

    def __init__(self, handler: Any, sock: socket.socket, host: str, port: int) -> None:
        super().__init__(handler, hostname=host, port=port)
        self._sock = sock

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class SmtpSink:
    """The handler behind an aiosmtpd ``Controller`` (its own thread and event loop)."""

    def __init__(self, port: int, host: str = "127.0.0.1", directory: Path | None = None) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.handler = SinkHandler(directory=directory)
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> None:
        sock = _listen(self.host, self.port)
        controller = _ListeningController(self.handler, sock, self.host, self.port)
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self.controller = controller

    def stop(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP sink writing each mail as an .eml file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250")
    args = parser.parse_args()
    sink = SmtpSink(args.port, args.host, args.dir)
    sink.handler.delay = args.delay
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sink.start()
    print(f"smtp sink on {sink.url}, mails in {args.dir}", flush=True)
    stop.wait()
    sink.stop()


if __name__ == "__main__":
    main()

"""The SMTP sink the tests steer: it comes back on its port even while the port is still taken."""

from __future__ import annotations

import smtplib
import socket
import threading
from pathlib import Path

from ops.engines import free_port
from ops.smtp_sink import SmtpSink


def test_a_restart_waits_for_its_port_to_be_released(tmp_path: Path) -> None:
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    release = threading.Timer(0.5, squatter.close)  # the old listener lets go a moment later
    sink = SmtpSink(port, directory=tmp_path)
    release.start()
    try:
        sink.start()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    finally:
        release.cancel()
        squatter.close()
        sink.stop()
    assert [m.recipients for m in sink.received] == [("b@example.com",)]
    assert len(list(tmp_path.glob("*.eml"))) == 1

"""A logged exception never carries its frames' local variables (passwords, tokens, mail)."""

from __future__ import annotations

import io
import logging

import pytest

from ops.logs import line_formatter


@pytest.mark.parametrize("json_lines", [True, False])
def test_tracebacks_are_logged_without_locals(json_lines: bool) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(line_formatter(json_lines=json_lines))
    logger = logging.getLogger(f"test.tracebacks.{json_lines}")
    logger.handlers, logger.propagate = [handler], False

    def reset(new_password: str) -> None:
        raise ValueError("hash failed")

    secret = "-".join(["correct", "horse", "battery", "staple"])  # not a literal in the source
    try:
        reset(secret)
    except ValueError:
        logger.exception("reset failed")

    logged = buffer.getvalue()
    assert "hash failed" in logged  # the traceback is there...
    assert secret not in logged  # ...its locals are not

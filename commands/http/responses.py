"""Responses the command routes build themselves: encoded once with msgspec, never re-validated.

A route declares its ``response_model`` for the OpenAPI document; what it returns here is a
``Response``, which FastAPI sends as it is, without validating and serialising it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.background import BackgroundTask
from starlette.responses import Response

_ENCODER = msgspec.json.Encoder()


class JsonBody(Response):
    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, self.media_type, background)

    def render(self, content: Any) -> bytes:
        # UUIDs as their canonical text, aware datetimes as ISO 8601: what FastAPI would write.
        return _ENCODER.encode(content)

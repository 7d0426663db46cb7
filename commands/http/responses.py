"""Responses the command routes build themselves: encoded once with orjson, never re-validated.

A route declares its ``response_model`` for the OpenAPI document; what it returns here is a
``Response``, which FastAPI sends as it is, without validating and serialising it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response


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
        # orjson writes UUIDs and aware datetimes as the stdlib encoder would be made to.
        return orjson.dumps(content)

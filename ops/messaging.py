"""The broker as every process builds it: FastStream's RedisBroker on Redis Streams, plain JSON.

FastStream 0.7 writes a binary envelope by default (a magic header, then length-prefixed
headers, then the body). We write each stream entry's ``__data__`` field as plain JSON instead,
``{"headers": {...}, "data": <the message>}``, so any Redis client (``redis-cli XRANGE``, an
operator, a consumer in another language) reads the messages without FastStream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faststream.redis import RedisBroker
from faststream.redis.parser import MessageFormat

from ops.bootstrap import redis_url
from ops.settings import Settings

if TYPE_CHECKING:
    from fast_depends.library.serializer import SerializerProto
    from faststream._internal.basic_types import SendableMessage
    from faststream._internal.parser import CodecProto

JSON = "application/json"


class PlainJsonFormat(MessageFormat):
    """``{"headers": {...}, "data": ...}``: the body is embedded as JSON, not as a string."""

    __slots__ = ()

    @classmethod
    async def encode(
        cls,
        *,
        message: SendableMessage | Sequence[SendableMessage],
        reply_to: str | None,
        headers: dict[str, Any] | None,
        correlation_id: str,
        serializer: SerializerProto | None = None,
        codec: CodecProto | None = None,
    ) -> bytes:
        built = await cls.build(
            message=message,
            reply_to=reply_to,
            headers=headers,
            correlation_id=correlation_id,
            serializer=serializer,
            codec=codec,
        )
        if built.headers.get("content-type") == JSON:
            body = built.data  # already JSON: embed it as is, no second encoding
        else:
            body = json.dumps(built.data.decode()).encode()
        return b'{"headers":' + json.dumps(built.headers).encode() + b',"data":' + body + b"}"

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        try:
            envelope = json.loads(data)
            body, headers = envelope["data"], dict(envelope["headers"])
        except (ValueError, KeyError, TypeError):
            return data, {}  # not ours: hand the raw bytes on; the handler's schema decides
        if isinstance(body, str) and headers.get("content-type") != JSON:
            return body.encode(), headers
        return json.dumps(body).encode(), headers


def integration_stream_prefix(settings: Settings) -> str:
    """Streams are named ``{prefix}integration:{MessageType}``: one stream per message type."""
    return f"{settings.redis_prefix}integration:"


def build_broker(settings: Settings, **options: Any) -> RedisBroker:
    """Not connected: FastStream connects when the app (or the relay) starts it."""
    return RedisBroker(redis_url(settings), message_format=PlainJsonFormat, **options)

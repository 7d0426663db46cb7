"""Closed-loop load: N clients, each sending its next request when the last one answered.

The HTTP client is a bare keep-alive HTTP/1.1 connection on asyncio streams, so that on a
two-core machine the load generator spends as little CPU as possible beside the server.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class HttpConnection:
    """One keep-alive connection; answers must carry Content-Length (uvicorn's JSON do)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}",
            f"Content-Length: {len(payload)}",
        ]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class Result:
    """What one measured phase gave: completed operations, failures, and their latencies."""

    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[int(q * 10) - 1]


# One operation of one client; returns None when it succeeded, else what went wrong.
Operation = Callable[[], Awaitable[str | None]]


async def closed_loop(
    name: str, operations: list[Operation], *, warmup: float, seconds: float
) -> Result:
    """Run every client's operation in a loop; count only what completes in the window."""
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end = start + seconds
    result = Result(name, seconds)

    async def client(operation: Operation) -> None:
        while loop.time() < end:
            began = time.perf_counter()
            error = await operation()
            finished = loop.time()
            if start <= finished <= end:
                if error is None:
                    result.latencies.append(time.perf_counter() - began)
                else:
                    result.errors += 1
                    result.first_error = result.first_error or error

    await asyncio.gather(*(client(op) for op in operations))
    return result

"""Liveness and readiness: live while the process runs, ready while its dependencies answer.

Each process registers its probes on ``app.state.readiness`` (name -> probe); readiness runs
them all, bounded in time, and names the first that fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ops.http import problem
from ops.metrics import DEPENDENCY_READY

Probe = Callable[[], Awaitable[object]]

PROBE_TIMEOUT = 2.0

log = logging.getLogger("taskledger.health")
router = APIRouter(prefix="/health", tags=["health"])


class Live(BaseModel):
    status: Literal["live"]


class Ready(BaseModel):
    status: Literal["ready"]
    checked: list[str] = Field(description="the dependencies that answered")


@router.get("/live", response_model=Live)
async def health_live() -> Live:
    """200 while the process runs and serves HTTP."""
    return Live(status="live")


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"description": "a dependency does not answer"}},
)
async def health_ready(request: Request) -> JSONResponse:
    """200 when every dependency answers; else 503 naming the one that failed."""
    probes: Mapping[str, Probe] = getattr(request.app.state, "readiness", {})
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), PROBE_TIMEOUT)
            DEPENDENCY_READY.labels(name).set(1)
        except Exception as exc:  # any failure means "not ready"; it is named below
            log.warning("dependency %s is not ready: %r", name, exc)
            DEPENDENCY_READY.labels(name).set(0)
            return problem(
                503,
                "unavailable",
                "Service unavailable",
                f"dependency {name} is not answering",
                extra={"dependency": name},
            )
    return JSONResponse({"status": "ready", "checked": list(probes)})

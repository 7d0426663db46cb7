"""Builds the HTTP API process: routers, middleware, and the objects routes find on app.state."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from commands.http import auth as auth_commands
from commands.http import sessions as session_commands
from commands.http import tasks as task_commands
from ops import health
from ops.audit import open_audit_logs
from ops.bootstrap import (
    API_REDIS_TIMEOUT,
    WriteSide,
    build_auth,
    build_write_side,
    redis_client,
)
from ops.http import BodyLimitMiddleware, RequestIdMiddleware, install_error_handlers
from ops.metrics import router as metrics_router
from ops.observability import ObservabilityMiddleware, configure_tracing
from ops.openapi import install_contract, operation_id
from ops.projection_status import refresh_gauges
from ops.projections import read_side_on
from ops.queries import open_query_side
from ops.schema import require_schema
from ops.settings import Routes, Settings
from ops.web import router as web_router
from projections.log import EventsourcingLog
from queries.history import http as task_history
from queries.http import tasks as task_queries
from queries.http import users as user_queries
from queries.users.event_store import EventStoreUserDirectory


def readiness_probes(
    write_side: WriteSide, redis: Redis, mongo: AsyncMongoClient[Any] | None = None
) -> dict[str, health.Probe]:
    """What /health/ready checks: the event store (both logs), Redis, and MongoDB when the
    process reads from it (pass the read side's client)."""

    async def event_store() -> None:
        await run_in_threadpool(write_side.identity.recorder.max_notification_id)
        await run_in_threadpool(write_side.tasks.recorder.max_notification_id)

    async def redis_answers() -> None:
        await redis.ping()

    probes: dict[str, health.Probe] = {"event_store": event_store, "redis": redis_answers}
    if mongo is not None:
        client = mongo

        async def mongo_answers() -> None:
            await client.admin.command("ping")

        probes["mongo"] = mongo_answers
    return probes


def refresh_projection_gauges(
    settings: Settings,
    write_side: WriteSide,
    redis: Redis,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> asyncio.Task[None]:
    """The projection gauges, refreshed in the background from the checkpoints over this
    process's own clients and event store handles."""
    logs = {app.name: EventsourcingLog(app) for app in (write_side.identity, write_side.tasks)}
    side = read_side_on(settings, mongo, redis, logs)
    return asyncio.create_task(refresh_gauges(side, side.projections()), name="projection-gauges")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ``serve api --workers N`` tells each worker process which routes to serve through this.
ROUTES_VARIABLE = "TASKLEDGER_SERVE_ROUTES"


def api_from_environment() -> FastAPI:
    """The app of one ``serve api --workers N`` worker, from the environment its parent checked."""
    from ops.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    routes = os.environ.get(ROUTES_VARIABLE, "all")
    if routes not in get_args(Routes):
        raise ValueError(f"{ROUTES_VARIABLE} must be one of {get_args(Routes)}, not {routes!r}")
    return build_api(settings, routes)  # type: ignore[arg-type]


def build_api(settings: Settings, routes: Routes = "all") -> FastAPI:
    """The API app. Connections open in the lifespan, never at import time."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each resource is handed to the stack as soon as it is open: when a later one fails
        # to open (MongoDB, the audit logs), the earlier ones are closed all the same.
        async with AsyncExitStack() as stack:
            # One Redis client (one pool) for sessions, rate limits, caches and write positions.
            redis = redis_client(settings, timeout=API_REDIS_TIMEOUT, retries=0)
            stack.push_async_callback(redis.aclose)
            await run_in_threadpool(require_schema, settings)
            write_side = build_write_side(settings)
            stack.callback(write_side.close)
            app.state.identity = write_side.identity
            app.state.tasks = write_side.tasks
            app.state.redis = redis
            auth = build_auth(settings, write_side.identity, redis)
            app.state.accounts = auth.accounts
            app.state.authenticator = auth.sessions
            app.state.sessions = auth.sessions
            # The Identity store answers for users the users projection has not reached yet.
            event_store_users = EventStoreUserDirectory(write_side.identity)
            query_side = await stack.enter_async_context(
                open_query_side(settings, redis, fallback_users=event_store_users)
            )
            app.state.write_tracker = query_side.write_positions
            app.state.task_queries = query_side.task_queries
            app.state.user_directory = query_side.user_directory or event_store_users
            app.state.readiness = readiness_probes(write_side, redis, query_side.mongo)
            if query_side.mongo is not None:
                # /metrics shows every projection's position and lag: one scrape, whole system.
                gauges = refresh_projection_gauges(settings, write_side, redis, query_side.mongo)
                stack.push_async_callback(_cancel, gauges)
            # History and as_of read the Tasks store through their own handle, not the write side.
            audit = open_audit_logs(settings, ["Tasks"] if routes in ("tasks", "all") else [])
            stack.callback(audit.close)
            if "Tasks" in audit.logs:
                app.state.task_history = audit.task_history()
            # What start-up built lives as long as the server: frozen, it is out of the cyclic
            # collector's sight, so a full collection no longer walks the whole heap while
            # requests wait (a POST /v1/tasks p99 fell from ~100 ms to ~35 ms). No collection
            # first: in a test process, with every module loaded, that costs a server start
            # more than the little garbage it would spare.
            gc.freeze()
            try:
                yield
            finally:
                # Collectable again, so a process that serves several apps (tests) frees them.
                gc.unfreeze()

    tracing = configure_tracing(settings, "api")
    app = FastAPI(
        title="taskledger",
        version="1",
        description="An event-sourced task manager: commands append events, reads come "
        "from projections. Errors are RFC 9457 problem details.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # Without our tracing, FastAPI's own OpenTelemetry would still ask the global
        # providers whether to record on every request (a few percent of a command's CPU).
        telemetry=None if tracing else {"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    install_contract(app)
    app.add_middleware(BodyLimitMiddleware)
    # Inside RequestIdMiddleware, so the request id is known to every log line it binds.
    app.add_middleware(ObservabilityMiddleware, tracing=tracing)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(metrics_router)
    # The web client, on every kind of API process: the gateway sends / to the task routes.
    app.include_router(web_router)
    if routes in ("auth", "all"):
        app.include_router(auth_commands.router)
        app.include_router(user_queries.router)
        app.include_router(session_commands.router)
    if routes in ("tasks", "all"):
        app.include_router(task_commands.router)
        app.include_router(task_queries.router)
        app.include_router(task_history.router)
    return app

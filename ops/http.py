"""The HTTP edge shared by every route: request ids, body limits, problem+json errors.

Errors are mapped to statuses here, once; routes only raise domain errors.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import psycopg
import redis.exceptions
from eventsourcing.persistence import OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain import errors

log = logging.getLogger("taskledger.http")

MAX_BODY_BYTES = 1024 * 1024
PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://taskledger.dev/problems/"

_STATUS: list[tuple[type[errors.DomainError], int, str, str]] = [
    (errors.NotFound, 404, "not-found", "Not found"),
    (errors.EmailTaken, 409, "email-taken", "Email already registered"),
    (errors.VersionMismatch, 412, "precondition-failed", "Version mismatch"),
    (errors.UnparseablePrecondition, 412, "precondition-failed", "Unparseable precondition"),
    (errors.ConcurrentWrite, 409, "conflict", "Concurrent write"),
    (errors.InvalidCredentials, 401, "invalid-credentials", "Invalid credentials"),
    (errors.Unauthenticated, 401, "unauthenticated", "Not authenticated"),
    (errors.InvalidResetToken, 400, "invalid-reset-token", "Invalid reset token"),
    (errors.WeakPassword, 422, "weak-password", "Weak password"),
    (errors.RateLimited, 429, "rate-limited", "Too many requests"),
    (errors.Unavailable, 503, "unavailable", "Service unavailable"),
]

# Infrastructure that stopped answering: 503 naming it, never a 500 (the request may be retried).
# eventsourcing wraps the drivers' errors in its own; psycopg's pool timeout can escape unwrapped.
_OUTAGES: list[tuple[type[Exception], str]] = [
    (redis.exceptions.ConnectionError, "redis"),
    (redis.exceptions.TimeoutError, "redis"),
    (OperationalError, "event store"),
    (psycopg.OperationalError, "event store"),
]
RETRY_AFTER_SECONDS = 5


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, slug, title in _STATUS:
        if isinstance(exc, kind):
            headers: dict[str, str] = {}
            detail = str(exc)
            if status == 401:
                headers["WWW-Authenticate"] = "Bearer"
            if isinstance(exc, errors.RateLimited):
                headers["Retry-After"] = str(exc.retry_after)
            if isinstance(exc, errors.NotFound):
                detail = "no such resource"
            if isinstance(exc, errors.InvalidCredentials):
                detail = "email or password is wrong"
            if isinstance(exc, errors.InvalidResetToken):
                detail = "the reset token is invalid, expired or already used"
            if isinstance(exc, errors.Unavailable):
                return _unavailable(exc.dependency)
            return problem(status, slug, title, detail, headers=headers)
    return _unexpected(exc)


def _outage(request: Request, exc: Exception) -> JSONResponse:
    dependency = next(name for kind, name in _OUTAGES if isinstance(exc, kind))
    log.warning("%s is unavailable: %r", dependency, exc)
    return _unavailable(dependency)


def _unavailable(dependency: str) -> JSONResponse:
    return problem(
        503,
        "unavailable",
        "Service unavailable",
        f"{dependency} is unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extra={"dependency": dependency},
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field_errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    return problem(
        422,
        "validation-error",
        "Invalid request",
        "the request is not valid",
        extra={"errors": field_errors},
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        401: "unauthenticated",
    }.get(exc.status_code, "http-error")
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), headers=headers)


def _unexpected(exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return problem(
        500,
        "internal-error",
        "Internal server error",
        "an unexpected error occurred; it has been logged",
    )


def install_error_handlers(app: FastAPI) -> None:
    # No handler for Exception: Starlette would run it outside RequestIdMiddleware (no request
    # id on the 500) and re-raise to the server (logged twice). RequestIdMiddleware answers it.
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind, _ in _OUTAGES:
        app.add_exception_handler(kind, _outage)


class RequestIdMiddleware:
    """Every response carries X-Request-ID; the client's is echoed when it is sane.

    Outermost of our middleware, it also answers what nothing else handled: a logged 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise  # too late for a problem body: the server logs it and drops the connection
            await _unexpected(exc)(scope, receive, send_with_id)


def _new_request_id() -> str:
    """A UUID-shaped (version 4) id. Ids only need to be unique, not secret: the fast PRNG spares
    the urandom call (a syscall) that uuid4 makes on every request."""
    h = f"{random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 128 and text.isascii() and text.isprintable():
                return text
    return None


class BodyLimitMiddleware:
    """Refuse bodies over 1 MiB with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised while the route reads its body, so the error handlers answer 413.
                    raise StarletteHTTPException(413, "Payload too large")
            return message

        await self.app(scope, limited_receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "payload-too-large",
            "Payload too large",
            f"request bodies are limited to {self.limit} bytes",
        )
        await response(scope, receive, send)

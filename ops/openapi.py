"""The served OpenAPI document, made to say what the server does.

Routes declare their own successes and the errors only they raise (404, 409, 412, 429). What
the edge in ops/http.py adds to every route is added here, once, from what a route is: an
operationId from its function's name, 401 on every bearer route, 400 and 413 where a body is
read, 503 on every /v1 route, and one ``Problem`` schema (problem+json) for every error.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from ops.http import PROBLEM_JSON, _validation_error, problem

REF = "#/components/schemas/"


class FieldError(BaseModel):
    """One field a request got wrong."""

    loc: list[str] = Field(description="where: body, query, header or path, then the field")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem: every error this API answers, 4xx and 5xx alike."""

    type: str = Field(json_schema_extra={"format": "uri"})
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldError] = Field(default=[], description="422 only: each field error")
    dependency: str = Field(default="", description="503 only: the engine that did not answer")


def operation_id(route: APIRoute) -> str:
    """createTask for ``def create_task``: a route's id is its function's name, camelCased."""
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _header(description: str, *, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


_REQUEST_ID = _header("the request's id, echoed when the client sent a sane one")
_GENERIC: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("the body could not be decoded (bad bytes, broken multipart)", {}),
    "401": (
        "no valid bearer token",
        {"WWW-Authenticate": _header("always Bearer")},
    ),
    "413": ("the body is over 1 MiB", {}),
    "422": ("a parameter or a body field is not valid: each one is in errors", {}),
    "429": ("too many attempts", {"Retry-After": _header("seconds to wait")}),
    "503": (
        "an engine does not answer, or the server sheds load; retry later",
        {"Retry-After": _header("seconds to wait", required=False)},
    ),
}


def _problem_response(operation: dict[str, Any], status: str) -> None:
    description, headers = _GENERIC.get(status, ("", {}))
    response = operation["responses"].setdefault(status, {"description": description})
    if response.get("description") in (None, "", "Validation Error"):
        response["description"] = description or "an error"
    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": REF + "Problem"}}}
    response["headers"] = {**headers, **response.get("headers", {})}


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, operation)
        for path, item in document.get("paths", {}).items()
        for operation in item.values()
        if isinstance(operation, dict) and "responses" in operation
    ]


def contract(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every answer the edge can give, built once."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI's own 422 shape is never sent: ours is a Problem with errors.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    problem = Problem.model_json_schema(ref_template=REF + "{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for path, operation in _operations(document):
        statuses = set(operation["responses"])
        if operation.get("security"):
            statuses.add("401")
        if "requestBody" in operation:
            statuses |= {"400", "413"}
        if path.startswith("/v1/"):
            statuses.add("503")
        for status in sorted(statuses):
            if int(status) >= 400:
                _problem_response(operation, status)
        for response in operation["responses"].values():
            response["headers"] = {"X-Request-ID": _REQUEST_ID, **response.get("headers", {})}
    _name_form_bodies(document)
    app.openapi_schema = document
    return document


def _name_form_bodies(document: dict[str, Any]) -> None:
    """FastAPI names a form body ``Body_<operationId>``: call it ``<OperationId>Form``."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    renames = {
        name: name.removeprefix("Body_")[:1].upper() + name.removeprefix("Body_")[1:] + "Form"
        for name in schemas
        if name.startswith("Body_")
    }
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
        schemas[new]["title"] = new
    for _, operation in _operations(document):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            ref: str = media.get("schema", {}).get("$ref", "")
            if ref.removeprefix(REF) in renames:
                media["schema"]["$ref"] = REF + renames[ref.removeprefix(REF)]


def allowed_methods(document: dict[str, Any], path: str) -> list[str] | None:
    """The methods the document gives the resource at ``path``; None if it names none. A
    concrete path wins over a template (OpenAPI's rule): /v1/tasks/stats is not {task_id}."""
    matches = [
        (template.count("{"), item)
        for template, item in document.get("paths", {}).items()
        if compile_path(template)[0].match(path)
    ]
    if not matches:
        return None
    _, item = min(matches, key=lambda match: match[0])
    return sorted(method.upper() for method in item if method.upper() in _METHODS)


_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's Allow lists the first route that matched the path (PATCH alone for
    # OPTIONS /v1/tasks/{id}); the document knows every method of the resource.
    assert isinstance(exc, StarletteHTTPException)
    methods = allowed_methods(request.app.openapi(), request.url.path)
    return _not_allowed(request, methods or [(exc.headers or {}).get("Allow", "")])


async def _invalid_or_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # PATCH /v1/tasks/stats reaches PATCH /v1/tasks/{task_id}, whose id check fails (422); but
    # the resource /v1/tasks/stats has no PATCH, so the answer is 405 as for any other method.
    methods = allowed_methods(request.app.openapi(), request.url.path)
    if methods is not None and request.method not in methods:
        return _not_allowed(request, methods)
    return _validation_error(request, exc)


def _not_allowed(request: Request, methods: list[str]) -> JSONResponse:
    return problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        f"{request.method} is not allowed here; Allow lists what is",
        headers={"Allow": ", ".join(methods)},
    )


def install_contract(app: FastAPI) -> None:
    """Serve ``contract(app)`` at /openapi.json (and so in /docs), and answer 405 by it."""

    def openapi() -> dict[str, Any]:
        return contract(app)

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(RequestValidationError, _invalid_or_not_allowed)

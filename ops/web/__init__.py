"""The web client: one HTML page, its stylesheet and its script, served as files of this package.

No build step: the browser loads these files as they are. The page reads its view from the path
(``/``, ``/reset-password``) and the reset token from the fragment, which never reaches a server.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

# Script and styles only from this origin and never inline, so an injected tag cannot run;
# no page may frame this one (clickjacking); no Referer carries a path elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Small files, fetched again on each load: a new release is seen at once.
    "Cache-Control": "no-cache",
}

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@cache
def _read(name: str) -> bytes:
    return files(__package__).joinpath(name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=_ASSETS[name], headers=SECURITY_HEADERS)


@router.get("/")
@router.get("/reset-password")
async def page() -> Response:
    """The client's one page; the script picks the view from the path."""
    return _file("index.html")


@router.get("/assets/app.js")
async def script() -> Response:
    return _file("app.js")


@router.get("/assets/app.css")
async def stylesheet() -> Response:
    return _file("app.css")

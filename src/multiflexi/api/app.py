"""The ASGI application: middleware, the error mapping, and the routes under the base path.

Errors are mapped to HTTP statuses here and nowhere else, as ``cli/main.py`` maps them to
exit codes: every error body is ``{"error": "...", "success": false}``; no traceback ever
leaves the server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from multiflexi import __version__
from multiflexi.api.render import to_json
from multiflexi.config import Settings
from multiflexi.errors import (
    Conflict,
    DatabaseError,
    Forbidden,
    Invalid,
    MultiFlexiError,
    NotFound,
    Throttled,
    Unauthenticated,
    UsageError,
)
from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.api")

BASE_PATH = "/api/VitexSoftware/MultiFlexi/1.0.0"
DEFAULT_MAX_BODY = 1024 * 1024

STATUS: list[tuple[type[MultiFlexiError], int]] = [
    (Throttled, 429),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 400),
    (UsageError, 400),
    (DatabaseError, 503),
]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        b"script-src 'self' https://cdn.jsdelivr.net; connect-src 'self'; "
        b"style-src-elem 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
    ),
]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = to_json({"error": message, "success": False})
    return Response(body, status, headers=headers, media_type="application/json")


class Guard:
    """Outermost middleware: the request body limit, security and cache headers, and the
    audit actor of the request (filled in once the user is known)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from multiflexi.audit import Actor, set_actor

        client = scope.get("client")
        set_actor(Actor(source="api", address=client[0] if client else ""))
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await error_response(413, f"request body larger than {self.max_body} bytes")(
                scope, receive, send
            )
            return
        authenticated = b"authorization" in headers
        if length is None and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            # A body without a declared length (chunked): read it here, at most max_body
            # bytes, then hand it on; above the limit answer 413 before any handler runs.
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                more = bool(message.get("more_body"))
                if len(body) > self.max_body:
                    await error_response(413, f"request body larger than {self.max_body} bytes")(
                        scope, receive, send
                    )
                    return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            receive = replay

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                raw += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if authenticated and b"cache-control" not in names:
                    raw.append((b"cache-control", b"no-store"))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, *, base_path: str | None = None) -> FastAPI:
    """The API for ``settings``' database, its routes under ``base_path``."""
    base = base_path if base_path is not None else settings.get("MULTIFLEXI_API_BASE_PATH")
    base = "/" + (base if base is not None else BASE_PATH).strip("/")
    base = "" if base == "/" else base
    db = Database(settings)
    db.ensure_schema()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="MultiFlexi API",
        version=__version__,
        description="MultiFlexi REST API: upstream-compatible paths and our extensions.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.db = db
    app.state.settings = settings
    app.state.base_path = base

    @app.exception_handler(MultiFlexiError)
    async def _domain_error(request: Request, exc: MultiFlexiError) -> Response:
        for cls, status in STATUS:
            if isinstance(exc, cls):
                headers = None
                if isinstance(exc, Throttled):
                    headers = {"Retry-After": str(exc.retry_after)}
                elif isinstance(exc, Unauthenticated):
                    headers = {"WWW-Authenticate": 'Basic realm="MultiFlexi", Bearer'}
                return error_response(status, exc.message, headers)
        log.error("action=api_error error=%s", exc.message)
        return error_response(500, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed JSON body")
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            message = "The requested resource does not exist"
        if exc.status_code == 405:
            return error_response(404, "The requested resource does not exist")
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("action=api_unexpected_error path=%s", request.url.path)
        return error_response(500, "internal error")

    from multiflexi.api.routes import entities, jobs, meta

    for module in (meta, entities, jobs):
        app.include_router(module.router, prefix=base)
    from multiflexi.api.openapi import install

    install(app, base)

    max_body = int(settings.get("MULTIFLEXI_API_MAX_BODY") or DEFAULT_MAX_BODY)
    origins = [o.strip() for o in (settings.get("MULTIFLEXI_API_CORS_ORIGINS") or "").split(",")]
    origins = [o for o in origins if o]
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Guard, max_body=max_body)
    return app

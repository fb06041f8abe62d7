"""Our OpenAPI document: FastAPI's, completed with what handlers return as plain
responses: the four media types of ``.{suffix}`` paths, the streams, and the JSON error
body of every error status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from multiflexi.api.render import MEDIA

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "success"],
    "properties": {"error": {"type": "string"}, "success": {"type": "boolean", "enum": [False]}},
}
ERRORS = {
    "400": "Invalid value or malformed JSON",
    "401": "No, wrong, expired or revoked credentials",
    "403": "The caller's role does not allow this",
    "404": "Not found (or of a company the caller is not assigned to)",
    "409": "Conflict with the current state",
    "413": "Request body too large",
    "416": "Range outside the content",
    "422": "A parameter or body field of the wrong type, range or name",
    "429": "Too many failed logins",
    "503": "The database is unavailable",
}
#: Paths (after the base path) that answer something else than the suffix's media type.
STREAMS = {
    "/artifact/{artifact_id}/download": "*/*",
    "/job/{job_id}/artifact/{name}": "*/*",
    "/job/{job_id}/output": "text/event-stream",
    "/metrics": "text/plain",
}


def _content(media: list[str]) -> dict[str, Any]:
    return {m.split(";")[0]: {"schema": {}} for m in media}


def build(app: FastAPI, base: str) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    doc.setdefault("components", {})["schemas"] = {
        **doc.get("components", {}).get("schemas", {}),
        "ErrorResponse": ERROR_SCHEMA,
    }
    doc["components"]["securitySchemes"] = {
        "basicAuth": {"type": "http", "scheme": "basic"},
        "bearerAuth": {"type": "http", "scheme": "bearer"},
    }
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, item in doc.get("paths", {}).items():
        relative = path[len(base) :] if base and path.startswith(base) else path
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            for code, answer in list(responses.items()):
                if not code.startswith("2"):
                    continue
                if relative in STREAMS:
                    answer["content"] = _content([STREAMS[relative]])
                    if relative.startswith("/artifact") or "artifact/" in relative:
                        responses.setdefault(
                            "206", {"description": "Partial content", "content": _content(["*/*"])}
                        )
                elif ".{suffix}" in relative:
                    answer["content"] = _content(list(MEDIA.values()))
                else:
                    answer["content"] = _content(["application/json"])
            if relative == "/":
                responses.setdefault("302", {"description": "Redirect to the index"})
            for code, text in ERRORS.items():
                if code == "422" and code in responses:
                    responses[code] = {"description": text, "content": error_ref}
                responses.setdefault(code, {"description": text, "content": error_ref})
            op["security"] = (
                []
                if method == "get"
                and relative in ("/ping.{suffix}", "/index.{suffix}", "/status.{suffix}", "/")
                else [{"basicAuth": []}, {"bearerAuth": []}]
            )
    return doc


def install(app: FastAPI, base: str) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, base)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""Index, ping, status, login and logout, the GDPR export, queue status and metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import RedirectResponse, Response

from multiflexi.api.deps import Conf, Db, Who, authenticate, client_address
from multiflexi.api.render import Suffix, render
from multiflexi.errors import Invalid, Unauthenticated

router = APIRouter()

INDEX = [
    "ping", "status", "apps", "companies", "runtemplates", "jobs", "jobs/status", "users",
    "credentials", "auditlog", "login", "queue/status",
]  # fmt: skip
TOKEN_LIFETIME = timedelta(hours=12)


@router.get("/", include_in_schema=False)
def root(request: Request) -> Response:
    return RedirectResponse(str(request.url_for("index", suffix="html")), status_code=302)


@router.get("/index.{suffix}", name="index", tags=["meta"])
def index(suffix: Suffix) -> Response:
    """The paths of this API."""
    return render({"index": [{"path": p} for p in INDEX]}, suffix, title="MultiFlexi API")


@router.get("/ping.{suffix}", tags=["meta"])
def ping(suffix: Suffix) -> Response:
    """Answers pong; no authentication, no database."""
    return render({"ping": [{"ping": "pong"}]}, suffix, title="ping")


def _optional_principal(request: Request) -> Any:
    if not request.headers.get("authorization"):
        return None
    return authenticate(request)


@router.get("/status.{suffix}", tags=["meta"])
def status(suffix: Suffix, request: Request, db: Db, settings: Conf) -> Response:
    """Version, database state and daemons alive; with credentials also the counts of what
    the caller may see."""
    from multiflexi.storage.types import utcnow
    from multiflexi.workers import system_status

    full = system_status(db, settings)
    daemons = [
        {"kind": d.get("kind"), "host": d.get("host"), "alive": d.get("alive")}
        for d in full["daemons"]
    ]
    alive = any(d["alive"] for d in daemons)
    data: dict[str, Any] = {
        "version": full["version"],
        "database": "ok" if full["database"]["up_to_date"] else "schema behind",
        "daemon": "running" if alive else "stopped",
        "daemons": daemons,
        "timestamp": utcnow(),
    }
    who = _optional_principal(request)
    if who is not None:
        from multiflexi.catalog import counts

        with db.read() as s:
            data.update(counts(s, who))
    return render({"status": data}, suffix, title="status")


@router.get("/jobs/status.{suffix}", tags=["meta"])
def jobs_status(suffix: Suffix, who: Who, db: Db) -> Response:
    """Counts of the caller's jobs by outcome."""
    from multiflexi.catalog import JobQuery, count_jobs
    from multiflexi.storage.types import utcnow

    with db.read() as s:

        def n(status: str | None) -> int:
            return count_jobs(s, who, JobQuery(status=status))

        data = {
            "timestamp": utcnow(),
            "successful_jobs": n("success"),
            "failed_jobs": n("failed,lost"),
            "incomplete_jobs": n("loaded,scheduled,running"),
            "total_applications": len(_app_ids(s)),
            "repeated_jobs": 0,
            "total_jobs": n(None),
        }
    return render([data], suffix, title="jobs status")


def _app_ids(session: Any) -> list[int]:
    from sqlalchemy import select

    from multiflexi.storage.models import App

    return list(session.scalars(select(App.id)))


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str | None = Field(default=None, max_length=255)
    login: str | None = Field(default=None, max_length=255)
    password: str = Field(max_length=1024)


def _login(
    request: Request, db: Db, settings: Conf, suffix: str, username: str | None, password: str
) -> Response:
    from multiflexi.accounts import throttle
    from multiflexi.accounts.access import login_with_password
    from multiflexi.accounts.tokens import generate_token
    from multiflexi.audit import current_actor
    from multiflexi.storage.models import User

    if not username:
        raise Invalid("username and password are required")
    limits = throttle.Limits.from_settings(settings)
    who = login_with_password(
        db, username, password, address=client_address(request), limits=limits
    )
    if who is None:
        raise Unauthenticated("invalid login or password")
    actor = current_actor()
    with db.session() as s:
        if actor is not None:
            actor.login, actor.user_id = who.login, who.user_id
        fresh = s.get_one(User, who.user_id)
        row, plain = generate_token(s, fresh, lifetime=TOKEN_LIFETIME, name="login")
        data = {
            "token": plain,
            "token_id": row.id,
            "expires_at": row.until,
            "user": {"id": fresh.id, "login": fresh.login, "email": fresh.email},
            "message": "Login successful",
            "status": "success",
        }
    return render(data, suffix, title="login", status=201)


@router.post("/login.{suffix}", tags=["auth"], status_code=201)
def login_post(
    suffix: Suffix,
    request: Request,
    db: Db,
    settings: Conf,
    body: Annotated[LoginBody | None, Body()] = None,
    username: Annotated[str | None, Query(max_length=255)] = None,
    password: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """Log in with login and password (JSON body or query); returns a bearer token valid
    for 12 hours."""
    name = (body.username or body.login) if body else username
    secret = body.password if body else password
    return _login(request, db, settings, suffix, name, secret or "")


@router.get("/login.{suffix}", tags=["auth"])
def login_get(
    suffix: Suffix,
    request: Request,
    db: Db,
    settings: Conf,
    username: Annotated[str | None, Query(max_length=255)] = None,
    password: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """Upstream's GET login (credentials in the query: prefer POST)."""
    return _login(request, db, settings, suffix, username, password or "")


class LogoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str | None = Field(default=None, max_length=200)


@router.post("/logout", tags=["auth"])
def logout(request: Request, db: Db, body: Annotated[LogoutBody | None, Body()] = None) -> Response:
    """Revoke the bearer token of the request (or the one given in the body)."""
    from multiflexi.accounts.tokens import revoke_plain

    plain = body.token if body and body.token else None
    if plain is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        plain = value.strip() if scheme.lower() == "bearer" else None
    if not plain:
        raise Invalid('give the token to revoke (bearer header or {"token": ...})')
    with db.session() as s:
        revoked = revoke_plain(s, plain)
    if not revoked:
        raise Unauthenticated("unknown or already revoked token")
    return render({"message": "Logout successful", "status": "success"}, "json")


def _export(db: Db, who: Any, request: Request) -> dict[str, Any]:
    from multiflexi.accounts.export import export_user_data

    with db.read() as s:
        return export_user_data(s, who.user_id, address=client_address(request))


@router.get("/data-export", tags=["gdpr"])
def data_export(
    request: Request,
    who: Who,
    db: Db,
    action: Annotated[str, Query(pattern="^(export|status)$")] = "export",
    format: Annotated[str, Query(pattern="^json$")] = "json",
) -> Response:
    """Your own account data (GDPR): profile, roles, companies, tokens, your changes."""
    from multiflexi.storage.types import utcnow

    if action == "status":
        return render({"success": True, "exports": []}, "json")
    now = utcnow()
    url = str(request.url_for("data_export_download"))
    data = {
        "success": True,
        "download_url": url,
        "format": "json",
        "generated_at": now,
        "expires_at": now,
        "notification_sent": False,
        "data": _export(db, who, request),
    }
    return render(data, "json")


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(default="export", pattern="^(export|status)$")
    format: str = Field(default="json", pattern="^json$")


@router.post("/data-export", tags=["gdpr"])
def data_export_post(
    request: Request, who: Who, db: Db, body: Annotated[ExportBody | None, Body()] = None
) -> Response:
    """The same as GET: your own account data."""
    return data_export(request, who, db, action=body.action if body else "export")


@router.get("/data-export-download", name="data_export_download", tags=["gdpr"])
def data_export_download(
    request: Request,
    who: Who,
    db: Db,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Your own account data as a JSON document (nothing of any other user)."""
    return render(_export(db, who, request), "json")


@router.get("/queue/status.{suffix}", tags=["queue"])
def queue_status(suffix: Suffix, who: Who, db: Db) -> Response:
    """Counts by state, due now, oldest due job, running jobs (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.workers import queue_overview

    require_admin(who)
    with db.read() as s:
        data = queue_overview(s)
    return render(data, suffix, title="queue")


@router.get("/metrics", tags=["meta"])
def metrics(who: Who, db: Db) -> Response:
    """Prometheus text exposition (administrators; scrape with a bearer token)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.monitoring.metrics import render as render_metrics

    require_admin(who)
    return Response(render_metrics(db), media_type="text/plain; version=0.0.4; charset=utf-8")

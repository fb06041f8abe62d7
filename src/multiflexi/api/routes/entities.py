"""Applications, companies, run templates, credentials, users and roles, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from multiflexi.api import shapes
from multiflexi.api.deps import Conf, Db, PathId, Shaped, Who, as_utc, pagination
from multiflexi.api.render import Suffix, render
from multiflexi.catalog import Page

router = APIRouter()
Paged = Annotated[Page, Depends(pagination)]


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_max_length=4096)


# -- applications ---------------------------------------------------------------------------


@router.get("/apps.{suffix}", tags=["app"])
def list_apps(suffix: Suffix, who: Who, db: Db, page: Paged, shape: Shaped) -> Response:
    """Applications (an id-keyed object; an array with ``shape=array``)."""
    from multiflexi import catalog

    with db.read() as s:
        rows = [shapes.app_wire(a, shape) for a in catalog.list_apps(s, who, page)]
    return render(shapes.id_keyed(rows, shape), suffix, title="Applications")


@router.get("/app/{app_id}.{suffix}", tags=["app"])
def get_app(app_id: PathId, suffix: Suffix, who: Who, db: Db, shape: Shaped) -> Response:
    """One application with its environment fields and exit codes."""
    from multiflexi import catalog

    with db.read() as s:
        data = shapes.app_wire(catalog.get_app(s, who, app_id), shape, detail=True)
    return render(data, suffix, title=f"Application {app_id}")


class AppBody(Strict):
    name: str | None = Field(default=None, max_length=255)
    executable: str | None = Field(default=None, max_length=255)
    description: str | None = None
    cmdparams: str | None = None
    homepage: str | None = None
    version: str | None = Field(default=None, max_length=64)
    enabled: bool | None = None
    tags: str | None = None
    requirements: str | None = None
    uuid: str | None = Field(default=None, max_length=40)


@router.post("/app/", tags=["app"], status_code=201)
def set_app(
    who: Who,
    db: Db,
    shape: Shaped,
    appId: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    body: Annotated[AppBody | None, Body()] = None,
) -> Response:
    """Create an application, or change the one given by ``appId`` (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.apps.service import create_app, update_app
    from multiflexi.catalog import get_app as find

    require_admin(who)
    values = body.model_dump(exclude_none=True) if body else {}
    with db.session() as s:
        if appId:
            app = find(s, who, appId)
            if values:  # upstream's client sends no body: nothing to change
                update_app(s, app, values)
        else:
            app = create_app(s, values)
        data = shapes.app_wire(app, shape, detail=True)
    return render(data, "json", status=201)


# -- companies ------------------------------------------------------------------------------


@router.get("/companies.{suffix}", tags=["company"])
def list_companies(suffix: Suffix, who: Who, db: Db, page: Paged, shape: Shaped) -> Response:
    """The companies the caller is assigned to (all for an administrator)."""
    from multiflexi import catalog

    with db.read() as s:
        rows = [shapes.company_wire(c, shape) for c in catalog.list_companies(s, who, page)]
    return render(rows, suffix, title="Companies")


@router.get("/company/{company_id}.{suffix}", tags=["company"])
def get_company(company_id: PathId, suffix: Suffix, who: Who, db: Db, shape: Shaped) -> Response:
    from multiflexi import catalog

    with db.read() as s:
        data = shapes.company_wire(catalog.get_company(s, who, company_id), shape)
    return render(data, suffix, title=f"Company {company_id}")


class CompanyBody(Strict):
    name: str | None = Field(default=None, max_length=255)
    slug: str | None = Field(default=None, max_length=64)
    ic: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=255)
    enabled: bool | None = None
    zabbix_host: str | None = Field(default=None, max_length=255)


@router.post("/company/", tags=["company"], status_code=201)
def set_company(
    who: Who,
    db: Db,
    shape: Shaped,
    companyId: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    body: Annotated[CompanyBody | None, Body()] = None,
) -> Response:
    """Create a company, or change the one given by ``companyId`` (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.catalog import get_company as find
    from multiflexi.companies.service import create_company, update_company
    from multiflexi.errors import Invalid

    require_admin(who)
    values = body.model_dump(exclude_none=True) if body else {}
    with db.session() as s:
        if companyId:
            find(s, who, companyId)
            update_company(s, companyId, values)
            company = find(s, who, companyId)
        else:
            if not values.get("name"):
                raise Invalid("name is required")
            company = create_company(s, **values)
        data = shapes.company_wire(company, shape)
    return render(data, "json", status=201)


@router.get("/company/{company_id}/users.{suffix}", tags=["user-company"])
def company_users(company_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    """Who has which role in a company (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.accounts.service import assignment_record, list_assignments
    from multiflexi.catalog import get_company as find

    require_admin(who)
    with db.read() as s:
        find(s, who, company_id)
        rows = [assignment_record(a) for a in list_assignments(s, company_id=company_id)]
    return render(rows, suffix, title=f"Users of company {company_id}")


class AssignBody(Strict):
    user_id: int = Field(ge=1, le=2**31 - 1)
    role: str = Field(default="viewer", pattern="^(viewer|operator)$")


@router.post("/company/{company_id}/user/", tags=["user-company"], status_code=201)
def assign_user(company_id: PathId, body: AssignBody, who: Who, db: Db) -> Response:
    """Give a user a role (viewer or operator) in a company (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.accounts.service import assign_company, assignment_record, get_user

    require_admin(who)
    with db.session() as s:
        row = assign_company(s, company_id, get_user(s, body.user_id), body.role)
        data = assignment_record(row)
    return render(data, "json", status=201)


@router.delete("/company/{company_id}/user/{user_id}", tags=["user-company"])
def unassign_user(company_id: PathId, user_id: PathId, who: Who, db: Db) -> Response:
    from multiflexi.accounts.access import require_admin
    from multiflexi.accounts.service import get_user, unassign_company

    require_admin(who)
    with db.session() as s:
        deleted = unassign_company(s, company_id, get_user(s, user_id))
    data = {"company_id": company_id, "user_id": user_id, "deleted": deleted, "success": True}
    return render(data, "json")


# -- run templates --------------------------------------------------------------------------


@router.get("/runtemplates.{suffix}", tags=["runtemplate"])
def list_runtemplates(
    suffix: Suffix,
    who: Who,
    db: Db,
    page: Paged,
    shape: Shaped,
    company_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    app_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Run templates of the caller's companies (id-keyed object; array with shape=array)."""
    from multiflexi import catalog

    with db.read() as s:
        rts = catalog.list_runtemplates(s, who, page, company_id=company_id, app_id=app_id)
        rows = [shapes.runtemplate_wire(rt, shape) for rt in rts]
    return render(shapes.id_keyed(rows, shape), suffix, title="Run templates")


@router.get("/runtemplate/{rt_id}.{suffix}", tags=["runtemplate"])
def get_runtemplate(rt_id: PathId, suffix: Suffix, who: Who, db: Db, shape: Shaped) -> Response:
    from multiflexi import catalog

    with db.read() as s:
        data = shapes.runtemplate_wire(catalog.get_runtemplate(s, who, rt_id), shape)
    return render(data, suffix, title=f"Run template {rt_id}")


class RunTemplateSettings(Strict):
    name: str | None = Field(default=None, max_length=250)
    interv: str | None = Field(default=None, max_length=1)
    cron: str | None = Field(default=None, max_length=64)
    delay: int | None = Field(default=None, ge=0, le=2**31 - 1)
    executor: str | None = Field(default=None, max_length=64)
    active: bool | None = None
    note: str | None = None
    timeout: int | None = Field(default=None, ge=0, le=2**31 - 1)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    config: dict[str, str] | None = None

    def split(self) -> tuple[dict[str, Any], dict[str, str]]:
        values = self.model_dump(exclude_none=True)
        config = values.pop("config", None) or {}
        values.pop("id", None)
        values.pop("app_id", None)
        values.pop("company_id", None)
        return values, config


class RunTemplateCreate(RunTemplateSettings):
    app_id: int = Field(ge=1, le=2**31 - 1)
    company_id: int = Field(ge=1, le=2**31 - 1)


class RunTemplateUpdate(RunTemplateSettings):
    id: int = Field(ge=1, le=2**31 - 1)


@router.post("/runtemplate", tags=["runtemplate"], status_code=201)
def create_runtemplate(
    who: Who,
    db: Db,
    settings: Conf,
    shape: Shaped,
    body: Annotated[RunTemplateCreate | None, Body()] = None,
    runTemplateId: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Create a run template of an application for a company (operators of the company).
    Upstream's client sends only ``runTemplateId`` and no body: that answers the template."""
    from multiflexi.accounts.access import operable
    from multiflexi.catalog import get_app, get_company, get_runtemplate
    from multiflexi.errors import Invalid
    from multiflexi.runtemplates.service import create_runtemplate as create
    from multiflexi.secrets import Vault

    if body is None:
        if runTemplateId is None:
            raise Invalid("give the run template as a JSON body (app_id, company_id, ...)")
        with db.read() as s:
            data = shapes.runtemplate_wire(get_runtemplate(s, who, runTemplateId), shape)
        return render(data, "json", status=201)
    operable(who, body.company_id, f"company {body.company_id}")
    values, config = body.split()
    with db.session() as s:
        rt, _assigned = create(
            s,
            Vault.from_settings(settings, db),
            app=get_app(s, who, body.app_id),
            company=get_company(s, who, body.company_id),
            settings=values,
            config=config,
        )
        data = shapes.runtemplate_wire(rt, shape)
    return render(data, "json", status=201)


@router.post("/runtemplate/{rt_id}.{suffix}", tags=["runtemplate"], status_code=201)
def update_runtemplate(
    rt_id: PathId,
    suffix: Suffix,
    body: RunTemplateUpdate,
    who: Who,
    db: Db,
    settings: Conf,
    shape: Shaped,
) -> Response:
    """Change a run template: the body's ``id`` must be the path's (operators)."""
    from multiflexi.catalog import get_runtemplate as find
    from multiflexi.errors import Invalid
    from multiflexi.runtemplates.service import update_runtemplate as update
    from multiflexi.secrets import Vault

    if body.id != rt_id:
        raise Invalid(f"ID mismatch: expected {rt_id}, received {body.id}")
    values, config = body.split()
    with db.session() as s:
        find(s, who, rt_id, write=True)
        update(s, Vault.from_settings(settings, db), rt_id, settings=values, config=config)
        data = shapes.runtemplate_wire(find(s, who, rt_id), shape)
    return render(data, suffix, status=201)


# -- credentials ----------------------------------------------------------------------------


@router.get("/credentials.{suffix}", tags=["credential"])
def list_credentials(
    suffix: Suffix,
    who: Who,
    db: Db,
    page: Paged,
    company_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Credentials of the caller's companies: names and types, never their values."""
    from multiflexi import catalog

    with db.read() as s:
        creds = catalog.list_credentials(s, who, page, company_id=company_id)
        rows = [shapes.credential_wire(s, c) for c in creds]
    return render(rows, suffix, title="Credentials")


@router.get("/credential/{credential_id}.{suffix}", tags=["credential"])
def get_credential(
    credential_id: PathId,
    suffix: Suffix,
    who: Who,
    db: Db,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    from multiflexi import catalog

    with db.read() as s:
        data = shapes.credential_wire(s, catalog.get_credential(s, who, credential_id))
    return render(data, suffix, title=f"Credential {credential_id}")


class CredentialBody(Strict):
    name: str | None = Field(default=None, max_length=255)
    values: dict[str, str] | None = None


@router.post("/credential/{credential_id}.{suffix}", tags=["credential"], status_code=201)
def update_credential(
    credential_id: PathId,
    suffix: Suffix,
    who: Who,
    db: Db,
    settings: Conf,
    body: Annotated[CredentialBody | None, Body()] = None,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Rename a credential or set its values (operators); values are written, never read."""
    from multiflexi import catalog
    from multiflexi.credentials.service import update_credential as update
    from multiflexi.secrets import Vault

    with db.session() as s:
        catalog.get_credential(s, who, credential_id, write=True)
        if body is not None and (body.name or body.values):
            update(
                s,
                Vault.from_settings(settings, db),
                credential_id,
                name=body.name,
                values=body.values or {},
            )
        data = shapes.credential_wire(s, catalog.get_credential(s, who, credential_id))
    return render({"id": credential_id, "success": True, "credential": data}, suffix, status=201)


# -- credential types (global) ---------------------------------------------------------------


def _ctype_wire(ct: Any) -> dict[str, Any]:
    return {
        "id": ct.id,
        "name": ct.name,
        "code": ct.code,
        "uuid": ct.uuid,
        "description": ct.description or "",
        "url": ct.url or "",
        "logo": ct.logo or "",
        "company_id": ct.company_id,
        "DatCreate": ct.created,
        "DatUpdate": None,
    }


@router.get("/credential_types.{suffix}", tags=["credential"])
def list_credential_types(suffix: Suffix, who: Who, db: Db, page: Paged) -> Response:
    """Credential types: the global ones and those of the caller's companies."""
    from multiflexi import catalog

    with db.read() as s:
        rows = [_ctype_wire(t) for t in catalog.list_credential_types(s, who, page)]
    return render(rows, suffix, title="Credential types")


@router.get("/credential_type/{type_id}.{suffix}", tags=["credential"])
def get_credential_type(type_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    from multiflexi import catalog

    with db.read() as s:
        data = _ctype_wire(catalog.get_credential_type(s, who, type_id))
    return render(data, suffix, title=f"Credential type {type_id}")


class CredentialTypeBody(Strict):
    name: str | None = Field(default=None, max_length=255)
    description: str | None = None
    url: str | None = Field(default=None, max_length=255)
    logo: str | None = None


@router.post("/credential_type/{type_id}.{suffix}", tags=["credential"], status_code=201)
def update_credential_type(
    type_id: PathId,
    suffix: Suffix,
    who: Who,
    db: Db,
    body: Annotated[CredentialTypeBody | None, Body()] = None,
) -> Response:
    """Change the name, description, URL or logo of a credential type (administrators)."""
    from multiflexi import catalog
    from multiflexi.accounts.access import require_admin
    from multiflexi.credentials.types import describe_type

    require_admin(who)
    with db.session() as s:
        ct = catalog.get_credential_type(s, who, type_id)
        describe_type(s, ct, **(body.model_dump(exclude_none=True) if body else {}))
        data = _ctype_wire(ct)
    return render(data, suffix, status=201)


# -- users and roles ------------------------------------------------------------------------


@router.get("/users.{suffix}", tags=["user"])
def list_users(suffix: Suffix, who: Who, db: Db, page: Paged) -> Response:
    """All users for an administrator; yourself for anyone else."""
    from multiflexi import catalog

    with db.read() as s:
        rows = [shapes.user_wire(u) for u in catalog.list_users(s, who, page)]
    return render(rows, suffix, title="Users")


@router.get("/user/{user_id}.{suffix}", tags=["user"])
def get_user(user_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    from multiflexi import catalog

    with db.read() as s:
        data = shapes.user_wire(catalog.get_user(s, who, user_id))
    return render(data, suffix, title=f"User {user_id}")


class UserBody(Strict):
    login: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=255)
    firstname: str | None = Field(default=None, max_length=64)
    lastname: str | None = Field(default=None, max_length=64)
    enabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.post("/user/", tags=["user"], status_code=201)
def set_user(
    who: Who,
    db: Db,
    userId: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    body: Annotated[UserBody | None, Body()] = None,
) -> Response:
    """Create a user, or change the one given by ``userId`` (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.accounts.service import create_user, get_user, update_user
    from multiflexi.errors import Invalid

    require_admin(who)
    values = body.model_dump(exclude_none=True) if body else {}
    with db.session() as s:
        if userId:
            user = get_user(s, userId)
            update_user(s, user, values)
        else:
            if not values.get("login") or not values.get("email"):
                raise Invalid("login and email are required")
            user = create_user(s, **values)
        data = shapes.user_wire(user)
    return render(data, "json", status=201)


@router.get("/user/{user_id}/roles.{suffix}", tags=["user-role"])
def get_roles(user_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    from multiflexi import catalog
    from multiflexi.accounts.service import user_roles

    with db.read() as s:
        catalog.get_user(s, who, user_id)
        rows = [{"name": r, "display_name": r.title()} for r in user_roles(s, user_id)]
    return render(rows, suffix, title=f"Roles of user {user_id}")


class RolesBody(Strict):
    roles: list[Annotated[str, Field(max_length=32)]] = Field(max_length=10)


@router.post("/user/{user_id}/roles/", tags=["user-role"], status_code=200)
def set_roles(
    user_id: PathId,
    body: RolesBody,
    who: Who,
    db: Db,
    replace: Annotated[bool, Query()] = True,
) -> Response:
    """Set the global roles of a user (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.accounts.service import get_user
    from multiflexi.accounts.service import set_roles as assign

    require_admin(who)
    with db.session() as s:
        roles = assign(
            s, get_user(s, user_id), body.roles, replace=replace, assigned_by=who.user_id
        )
    return render({"user_id": user_id, "replace": replace, "roles": roles}, "json")


# -- audit log ------------------------------------------------------------------------------


@router.get("/auditlog.{suffix}", tags=["auditlog"])
def list_auditlog(
    suffix: Suffix,
    who: Who,
    db: Db,
    page: Paged,
    user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    entity_type: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(pattern="^(create|update|delete)$")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
) -> Response:
    """Who changed what, newest first (administrators)."""
    from multiflexi.accounts.access import require_admin
    from multiflexi.audit import audit_record, list_audit

    require_admin(who)
    with db.read() as s:
        rows = [
            audit_record(r)
            for r in list_audit(
                s,
                user_id=user_id,
                entity_type=entity_type,
                entity_id=entity_id,
                action=action,
                since=as_utc(from_),
                until=as_utc(to),
                limit=page.limit,
                offset=page.offset,
                descending=page.order != "id",
            )
        ]
    return render(rows, suffix, title="Audit log")


@router.get("/auditlog/{entry_id}.{suffix}", tags=["auditlog"])
def get_auditlog(entry_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    from multiflexi.accounts.access import require_admin
    from multiflexi.audit import audit_record, get_audit

    require_admin(who)
    with db.read() as s:
        data = audit_record(get_audit(s, entry_id))
    return render(data, suffix, title=f"Audit log entry {entry_id}")

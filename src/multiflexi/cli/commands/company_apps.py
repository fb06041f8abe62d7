"""company-app:* commands: which applications a company uses."""

from __future__ import annotations

from typing import Any

import click

from multiflexi.cli.base import cli_context, command, parse_int
from multiflexi.cli.output import emit

LIST_COLUMNS = (
    "id",
    "company_id",
    "company_slug",
    "app_id",
    "app_name",
    "app_uuid",
    "runtemplate_ids",
)


def _app_options(fn: Any) -> Any:
    fn = click.option("--app_uuid", "--app-uuid", "app_uuid", default=None, help="App UUID.")(fn)
    fn = click.option("--app_id", "--app-id", "app_id", default=None, help="Application id.")(fn)
    return fn


def _company_option(required: bool) -> Any:
    return click.option(
        "--company", "--company-id", "company_id", required=required, help="Company id or slug."
    )


def _int_or_none(raw: str | None, what: str) -> int | None:
    return parse_int(raw, what) if raw is not None else None


@command("company-app:assign")
@_company_option(required=True)
@_app_options
def company_app_assign(company_id: str, app_id: str | None, app_uuid: str | None) -> None:
    """Assign an application to a company and create its default run template."""
    from multiflexi.companies.service import assign_app, find_app, resolve_company

    ctx = cli_context()
    aid = _int_or_none(app_id, "--app_id")
    with ctx.db.session() as s:
        company = resolve_company(s, company_id)
        app = find_app(s, app_id=aid, app_uuid=app_uuid)
        template = assign_app(s, company, app)
        app_name, real_app_id, cid = app.name, app.id, company.id
    if template is None:
        data: dict[str, Any] = {
            "status": "ok",
            "message": "already assigned",
            "company_id": cid,
            "app_id": real_app_id,
            "runtemplate_id": None,
        }
        text = f"Application {real_app_id} ({app_name}) is already assigned to company {cid}."
    else:
        data = {
            "status": "success",
            "message": "Application assigned to company",
            "company_id": cid,
            "app_id": real_app_id,
            "runtemplate_id": template.id,
        }
        text = (
            f"Application {real_app_id} ({app_name}) assigned to company {cid}, "
            f"RunTemplate {template.id} created."
        )
    emit(data, ctx.fmt, text=text)


@command("company-app:unassign")
@_company_option(required=True)
@_app_options
def company_app_unassign(company_id: str, app_id: str | None, app_uuid: str | None) -> None:
    """Unassign an application; its run templates for the company are deleted
    (waiting jobs cancelled, finished jobs kept). Refused while one of their jobs runs."""
    from multiflexi.companies.service import find_app, resolve_company, unassign_app

    ctx = cli_context()
    aid = _int_or_none(app_id, "--app_id")
    with ctx.db.session() as s:
        company = resolve_company(s, company_id)
        app = find_app(s, app_id=aid, app_uuid=app_uuid)
        removed = unassign_app(s, company, app)
        real_app_id, cid = app.id, company.id
    data = {
        "status": "success",
        "message": "Application unassigned from company",
        "company_id": cid,
        "app_id": real_app_id,
        "removed_runtemplates": removed,
    }
    text = f"Application {real_app_id} unassigned from company {cid}"
    if removed:
        text += f"; run templates {', '.join(map(str, removed))} deleted"
    emit(data, ctx.fmt, text=text + ".")


@command("company-app:list")
@_company_option(required=False)
@_app_options
def company_app_list(company_id: str | None, app_id: str | None, app_uuid: str | None) -> None:
    """List assignments of applications to companies, with their run templates."""
    from multiflexi.companies.service import find_app, list_company_apps, resolve_company

    ctx = cli_context()
    cid = None
    aid = _int_or_none(app_id, "--app_id")
    with ctx.db.session() as s:
        if company_id is not None:
            cid = resolve_company(s, company_id).id
        if aid is not None or app_uuid:
            aid = find_app(s, app_id=aid, app_uuid=app_uuid).id
        rows = list_company_apps(s, company_id=cid, app_id=aid)
    emit(rows, ctx.fmt, columns=LIST_COLUMNS)

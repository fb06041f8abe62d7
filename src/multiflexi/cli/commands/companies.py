"""company:* commands: list, get, create, update, remove, and the company environment."""

from __future__ import annotations

from typing import Any

import click

from multiflexi.cli.base import (
    cli_context,
    command,
    id_argument,
    parse_assignments,
    parse_bool,
    parse_int,
    resolve_id,
)
from multiflexi.cli.output import emit

LIST_COLUMNS = ("id", "name", "slug", "ic", "email", "enabled", "zabbix_host", "created")


def _company_id_option(fn: Any) -> Any:
    return click.option(
        "--id", "--company", "--company-id", "opt_id", required=True, help="Company id or slug."
    )(fn)


def _fields(**given: Any) -> dict[str, Any]:
    values = {k: v for k, v in given.items() if v is not None}
    if "enabled" in values:
        values["enabled"] = parse_bool(values["enabled"], "--enabled")
    return values


def _company_id(pos_id: str | None, opt_id: str | None) -> int:
    """The id of the company given as ID or slug, positional or ``--id``."""
    raw = opt_id if opt_id is not None else pos_id
    if raw is None or raw.strip().isdigit():
        return resolve_id(pos_id, opt_id, "company id")
    from multiflexi.companies.service import resolve_company

    with cli_context().db.read() as s:
        return resolve_company(s, raw).id


@command("company:list")
def company_list() -> None:
    """List companies."""
    from multiflexi.companies.service import company_record, list_companies

    ctx = cli_context()
    with ctx.db.session() as s:
        rows = [company_record(c, ctx.settings.timezone) for c in list_companies(s)]
    emit(rows, ctx.fmt, columns=LIST_COLUMNS)


@command("company:get", "company:show")
@id_argument(help="Company id or slug.")
@click.option("--slug", default=None, help="Company slug.")
@click.option("--name", default=None, help="Company name.")
@click.option("--ic", default=None, help="Company IC (registration number).")
def company_get(
    pos_id: str | None, opt_id: str | None, slug: str | None, name: str | None, ic: str | None
) -> None:
    """Show one company, found by id, slug, name or IC."""
    from multiflexi.companies.service import company_record, find_company

    ctx = cli_context()
    raw = opt_id if opt_id is not None else pos_id
    if raw is not None and not raw.strip().isdigit() and slug is None:
        raw, slug = None, raw  # company:get acme_corp
    company_id = parse_int(raw, "company id") if raw is not None else None
    with ctx.db.session() as s:
        company = find_company(s, company_id=company_id, ic=ic, name=name, slug=slug)
        data = company_record(company, ctx.settings.timezone)
    emit(data, ctx.fmt)


@command("company:create")
@click.option("--name", required=True, help="Company name (unique).")
@click.option("--slug", default=None, help="Short identifier; derived from the name if omitted.")
@click.option("--ic", default=None, help="Registration number.")
@click.option("--email", default=None, help="Contact e-mail.")
@click.option("--zabbix_host", "--zabbix-host", "zabbix_host", default=None, help="Zabbix host.")
@click.option("--enabled", default=None, metavar="true|false", help="Enabled (default true).")
def company_create(
    name: str,
    slug: str | None,
    ic: str | None,
    email: str | None,
    zabbix_host: str | None,
    enabled: str | None,
) -> None:
    """Create a company."""
    from multiflexi.companies.service import company_record, create_company

    ctx = cli_context()
    values = _fields(ic=ic, email=email, zabbix_host=zabbix_host, enabled=enabled)
    with ctx.db.session() as s:
        company = create_company(s, name=name, slug=slug, **values)
        record = company_record(company, ctx.settings.timezone)
    data = {"company_id": record["id"], "created": True, "company": record}
    emit(data, ctx.fmt, text=f"Company created with ID: {record['id']} (slug {record['slug']})")


@command("company:update")
@id_argument(help="Company id or slug.")
@click.option("--name", default=None, help="New name.")
@click.option("--slug", default=None, help="New slug.")
@click.option("--ic", default=None, help="Registration number.")
@click.option("--email", default=None, help="Contact e-mail.")
@click.option("--zabbix_host", "--zabbix-host", "zabbix_host", default=None, help="Zabbix host.")
@click.option("--enabled", default=None, metavar="true|false", help="Enabled.")
def company_update(
    pos_id: str | None,
    opt_id: str | None,
    name: str | None,
    slug: str | None,
    ic: str | None,
    email: str | None,
    zabbix_host: str | None,
    enabled: str | None,
) -> None:
    """Change fields of a company."""
    from multiflexi.companies.service import company_record, get_company, update_company

    ctx = cli_context()
    company_id = _company_id(pos_id, opt_id)
    values = _fields(
        name=name, slug=slug, ic=ic, email=email, zabbix_host=zabbix_host, enabled=enabled
    )
    from multiflexi.cli.changes import describe, holds_note
    from multiflexi.jobs.holds import waiting_counts

    with ctx.db.session() as s:
        before = company_record(get_company(s, company_id), ctx.settings.timezone)
        changed = update_company(s, company_id, values)
        record = company_record(get_company(s, company_id), ctx.settings.timezone)
        held, free = waiting_counts(s, company_id=company_id)
    data = {
        "company_id": company_id,
        "updated": bool(changed),
        "changes": changed,
        "changed": {k: {"from": before.get(k), "to": record.get(k)} for k in changed},
        "waiting_held": held,
        "company": record,
    }
    if changed:
        text = f"Company {company_id} updated: {describe(before, record, changed)}"
        if "enabled" in changed:
            text += holds_note("company", bool(record["enabled"]), held, free)
    else:
        data["message"] = "No changes detected"
        text = f"Company {company_id}: no changes detected"
    emit(data, ctx.fmt, text=text)


@command("company:remove", "company:delete")
@id_argument(help="Company id or slug.")
@click.option("--force", is_flag=True, help="Delete its run templates too.")
def company_remove(pos_id: str | None, opt_id: str | None, force: bool) -> None:
    """Remove a company with its environment, assignments and credentials.

    Refused while it has jobs (they are audit records), and while it has run templates
    unless --force.
    """
    from multiflexi.companies.service import remove_company

    ctx = cli_context()
    company_id = _company_id(pos_id, opt_id)
    with ctx.db.session() as s:
        removed = remove_company(s, company_id, force=force)
    data = {"company_id": company_id, "removed": True, "removed_runtemplates": removed}
    text = f"Company removed: ID={company_id}"
    if removed:
        text += f" (run templates {', '.join(map(str, removed))} deleted)"
    emit(data, ctx.fmt, text=text)


@command("company:env:set")
@_company_id_option
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def company_env_set(opt_id: str, assignments: tuple[str, ...]) -> None:
    """Set environment variables of a company."""
    from multiflexi.companies.service import resolve_company, set_env

    ctx = cli_context()
    values = parse_assignments(assignments)
    with ctx.db.session() as s:
        company = resolve_company(s, opt_id)
        company_id = company.id
        names = set_env(s, company, values)
    emit(
        {"company_id": company_id, "set": names},
        ctx.fmt,
        text=f"Company {company_id}: set {', '.join(names)}",
    )


@command("company:env:unset")
@_company_id_option
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def company_env_unset(opt_id: str, keys: tuple[str, ...]) -> None:
    """Remove environment variables of a company."""
    from multiflexi.companies.service import resolve_company, unset_env

    ctx = cli_context()
    with ctx.db.session() as s:
        company = resolve_company(s, opt_id)
        company_id = company.id
        names = unset_env(s, company, keys)
    emit(
        {"company_id": company_id, "unset": names},
        ctx.fmt,
        text=f"Company {company_id}: removed {', '.join(names)}",
    )


@command("company:env:list")
@_company_id_option
@click.option("--reveal", is_flag=True, help="Show values of secret-looking variables.")
def company_env_list(opt_id: str, reveal: bool) -> None:
    """List environment variables of a company (secret-looking values redacted)."""
    from multiflexi.companies.service import list_env, looks_secret, resolve_company
    from multiflexi.secrets import redact

    ctx = cli_context()
    with ctx.db.session() as s:
        company = resolve_company(s, opt_id)
        rows = []
        for env in list_env(s, company):
            secret = looks_secret(env.keyword)
            value = redact(env.value) if secret and not reveal else env.value
            rows.append({"name": env.keyword, "value": value, "secret": secret})
    emit(rows, ctx.fmt, columns=("name", "value", "secret"))

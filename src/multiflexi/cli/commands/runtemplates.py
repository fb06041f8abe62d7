"""run-template:* commands (also spelled runtemplate:*): list, get/show, create, update,
delete."""

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
from multiflexi.cli.output import emit, render_record, render_table, shadows_text

LIST_COLUMNS = (
    "id",
    "name",
    "company_id",
    "company_slug",
    "app_id",
    "app_name",
    "interv",
    "cron",
    "active",
    "executor",
    "next_schedule",
)
CONFIG_COLUMNS = (
    "name", "type", "value", "source", "shadows", "secret", "required", "missing", "declared",
)  # fmt: skip
ENV_COLUMNS = ("name", "value", "source", "shadows", "secret")

_INT_SETTINGS = (
    "delay", "timeout", "max_attempts", "retry_min_gap",
    "keep_success_days", "keep_failed_days", "keep_last",
)  # fmt: skip
_BOOL_SETTINGS = ("active", "mask_secrets", "keep_workdir")


def _option(*names: str, **kwargs: Any) -> Any:
    return click.option(*names, default=None, **kwargs)


#: Options shared by create and update (applied bottom-up).
_SHARED = (
    _option("--name", help="Name (default: the application's name)."),
    _option("--app_id", "--app-id", "app_id", help="Application id."),
    _option("--app_uuid", "--app-uuid", "app_uuid", help="Application UUID."),
    _option("--company_id", "--company-id", "company_id", help="Company id."),
    _option("--company", "company_ref", help="Company slug or id."),
    _option("--interv", metavar="y|m|w|d|h|i|n|c", help="Interval code."),
    _option("--cron", help="Five-field cron expression (implies --interv c)."),
    _option("--delay", metavar="SECONDS", help="Seconds added to every scheduled time."),
    _option("--executor", help="Executor (default Native)."),
    _option("--active", metavar="true|false", help="Whether it is scheduled and runnable."),
    click.option(
        "--config", "config", multiple=True, metavar="KEY=VALUE", help="Configuration value."
    ),
    _option("--timeout", metavar="SECONDS", help="Job time limit; 0 = none."),
    _option("--max_attempts", "--max-attempts", "max_attempts", help="Attempts per run."),
    _option(
        "--retry_backoff",
        "--retry-backoff",
        "retry_backoff",
        metavar="none|fixed|linear|exponential",
        help="Backoff between attempts.",
    ),
    _option(
        "--retry_min_gap", "--retry-min-gap", "retry_min_gap", help="Seconds between attempts."
    ),
    _option("--overlap", metavar="forbid|allow|skip", help="When a previous job still runs."),
    _option("--mask_secrets", "--mask-secrets", "mask_secrets", metavar="true|false"),
    _option("--keep_workdir", "--keep-workdir", "keep_workdir", metavar="true|false"),
    _option("--note", help="Free-text note."),
    _option(
        "--keep_success_days",
        "--keep-success-days",
        "keep_success_days",
        help="Retention: days to keep successful jobs (overrides the global policy).",
    ),
    _option(
        "--keep_failed_days",
        "--keep-failed-days",
        "keep_failed_days",
        help="Retention: days to keep failed jobs.",
    ),
    _option(
        "--keep_last",
        "--keep-last",
        "keep_last",
        help="Retention: always keep this many newest jobs.",
    ),
    click.option(
        "--force", is_flag=True, help="Accept configuration keys the app does not declare."
    ),
)


def _shared_options(fn: Any) -> Any:
    for decorate in reversed(_SHARED):
        fn = decorate(fn)
    return fn


def _settings(opts: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "interv", "cron", "executor", "retry_backoff", "overlap", "note")
    out: dict[str, Any] = {k: opts[k] for k in keys if opts.get(k) is not None}
    for key in _INT_SETTINGS:
        if opts.get(key) is not None:
            out[key] = parse_int(opts[key], f"--{key}")
    for key in _BOOL_SETTINGS:
        if opts.get(key) is not None:
            out[key] = parse_bool(opts[key], f"--{key}")
    return out


def _company(session: Any, company_id: str | None, ref: str | None) -> Any:
    from multiflexi.companies.service import get_company, resolve_company
    from multiflexi.errors import UsageError

    if company_id is not None and ref is not None:
        raise UsageError("give --company_id or --company, not both")
    if company_id is not None:
        return get_company(session, parse_int(company_id, "--company_id"))
    if ref is not None:
        return resolve_company(session, ref)
    return None


def _app(session: Any, app_id: str | None, app_uuid: str | None) -> Any:
    from multiflexi.companies.service import find_app

    if app_id is None and app_uuid is None:
        return None
    aid = parse_int(app_id, "--app_id") if app_id is not None else None
    return find_app(session, app_id=aid, app_uuid=app_uuid)


def _vault() -> Any:
    from multiflexi.secrets import Vault

    return Vault.from_settings(cli_context().settings)


def _warn_missing(missing: list[str]) -> None:
    if missing:
        click.echo(f"warning: required value(s) not set: {', '.join(missing)}", err=True)


@command("run-template:list", "runtemplate:list")
@_option("--company", "company_ref", help="Company slug or id.")
@_option("--company_id", "--company-id", "company_id", help="Company id.")
@_option("--app_id", "--app-id", "app_id", help="Application id.")
@_option("--app_uuid", "--app-uuid", "app_uuid", help="Application UUID.")
def rt_list(
    company_ref: str | None, company_id: str | None, app_id: str | None, app_uuid: str | None
) -> None:
    """List run templates."""
    from multiflexi.runtemplates.service import list_runtemplates

    ctx = cli_context()
    with ctx.db.session() as s:
        company = _company(s, company_id, company_ref)
        app = _app(s, app_id, app_uuid)
        rows = list_runtemplates(
            s,
            company_id=company.id if company else None,
            app_id=app.id if app else None,
        )
    emit(rows, ctx.fmt, columns=LIST_COLUMNS)


@command("run-template:get", "runtemplate:show")
@id_argument(help="Run template id.")
@_option("--name", help="Run template name (must be unique).")
def rt_get(pos_id: str | None, opt_id: str | None, name: str | None) -> None:
    """Show a run template: settings, every configuration key of its application with
    value (secrets redacted), default and source, missing required values, next runs."""
    from multiflexi.runtemplates.service import (
        find_runtemplate_by_name,
        get_runtemplate,
        show_runtemplate,
    )

    ctx = cli_context()
    tz = ctx.settings.timezone
    with ctx.db.session() as s:
        if name is not None and pos_id is None and opt_id is None:
            rt = find_runtemplate_by_name(s, name)
        else:
            rt = get_runtemplate(s, resolve_id(pos_id, opt_id, "run template id"))
        data = show_runtemplate(s, rt, tz)
    emit(data, ctx.fmt, text=_show_text(data))


def _show_text(data: dict[str, Any]) -> str:
    hidden = ("config", "environment", "missing_required", "next_runs")
    head = {k: v for k, v in data.items() if k not in hidden}
    parts = [render_record(head), "", "Configuration (the value a job gets and its source):"]
    rows = [
        {
            **row,
            "value": "(not set)" if row["value"] is None else row["value"],
            "shadows": shadows_text(row["shadowed"]),
        }
        for row in data["config"]
    ]
    parts.append(
        render_table(rows, CONFIG_COLUMNS) if rows else "  (the application declares none)"
    )
    if data["environment"]:
        others = [{**row, "shadows": shadows_text(row["shadowed"])} for row in data["environment"]]
        parts += ["", "Environment from other layers:", render_table(others, ENV_COLUMNS)]
    if data["missing_required"]:
        parts += ["", f"Missing required: {', '.join(data['missing_required'])}"]
    if data["next_runs"]:
        parts += ["", f"Next runs ({data['timezone']}):"]
        parts += [f"  {d.isoformat(sep=' ', timespec='seconds')}" for d in data["next_runs"]]
    return "\n".join(parts)


@command("run-template:create")
@_shared_options
def rt_create(**opts: Any) -> None:
    """Create a run template. The application is assigned to the company if it is not."""
    from multiflexi.errors import UsageError
    from multiflexi.runtemplates.service import create_runtemplate, describe_config

    ctx = cli_context()
    settings = _settings(opts)
    config = parse_assignments(opts["config"])
    with ctx.db.session() as s:
        company = _company(s, opts["company_id"], opts["company_ref"])
        if company is None:
            raise UsageError("missing company: give --company_id or --company")
        app = _app(s, opts["app_id"], opts["app_uuid"])
        if app is None:
            raise UsageError("missing application: give --app_id or --app_uuid")
        rt, assigned = create_runtemplate(
            s,
            _vault(),
            app=app,
            company=company,
            settings=settings,
            config=config,
            force=opts["force"],
        )
        missing = [c["name"] for c in describe_config(s, rt) if c["missing"]]
        rt_id, app_id, company_id = rt.id, app.id, company.id
    data = {
        "runtemplate_id": rt_id,
        "created": True,
        "company_app_assigned": assigned,
        "missing_required": missing,
    }
    text = f"RunTemplate created with ID: {rt_id}"
    if assigned:
        text += f"\nApplication {app_id} assigned to company {company_id}."
    _warn_missing(missing)
    emit(data, ctx.fmt, text=text)


@command("run-template:update")
@id_argument(help="Run template id.")
@_shared_options
def rt_update(pos_id: str | None, opt_id: str | None, **opts: Any) -> None:
    """Change a run template. ``--config KEY=`` removes a stored value."""
    from multiflexi.runtemplates.service import describe_config, get_runtemplate, update_runtemplate

    ctx = cli_context()
    rt_id = resolve_id(pos_id, opt_id, "run template id")
    settings = _settings(opts)
    config = parse_assignments(opts["config"])
    with ctx.db.session() as s:
        company = _company(s, opts["company_id"], opts["company_ref"])
        app = _app(s, opts["app_id"], opts["app_uuid"])
        changed = update_runtemplate(
            s,
            _vault(),
            rt_id,
            settings=settings,
            config=config,
            force=opts["force"],
            app=app,
            company=company,
        )
        missing = [c["name"] for c in describe_config(s, get_runtemplate(s, rt_id)) if c["missing"]]
    data = {
        "runtemplate_id": rt_id,
        "updated": bool(changed),
        "changes": changed,
        "missing_required": missing,
    }
    if changed:
        text = f"RunTemplate updated successfully (ID: {rt_id}): {', '.join(changed)}"
    else:
        text = f"RunTemplate {rt_id}: no changes detected"
    _warn_missing(missing)
    emit(data, ctx.fmt, text=text)


@command("run-template:delete")
@id_argument(help="Run template id.")
@click.option("--force", is_flag=True, help="Delete even while one of its jobs is running.")
def rt_delete(pos_id: str | None, opt_id: str | None, force: bool) -> None:
    """Delete a run template. Its jobs stay as audit records; its waiting jobs are
    cancelled. Refused while one of its jobs runs, unless --force."""
    from multiflexi.runtemplates.service import delete_runtemplate

    ctx = cli_context()
    rt_id = resolve_id(pos_id, opt_id, "run template id")
    with ctx.db.session() as s:
        data = delete_runtemplate(s, rt_id, force=force)
    text = f"RunTemplate deleted successfully (ID: {rt_id})"
    if data["cancelled_jobs"]:
        text += f"; cancelled waiting job(s) {', '.join(map(str, data['cancelled_jobs']))}"
    emit(data, ctx.fmt, text=text)

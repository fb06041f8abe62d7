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

WIDE_COLUMNS = (
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
    "next_run",
    "last_job_id",
    "last_status",
    "last_run",
    "schedule_error",
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
LIMIT_SETTINGS = (
    "memory_limit", "cpu_time_limit", "cpus", "max_processes", "max_open_files", "output_limit",
)  # fmt: skip
LIMIT_COLUMNS = ("name", "shown", "source")


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
    _option(
        "--on_interrupt",
        "--on-interrupt",
        "on_interrupt",
        metavar="requeue|fail",
        help="A job the platform interrupted (executor stopped or died): run it again "
        "(default) or leave it failed (for apps that must never run twice).",
    ),
    _option("--mask_secrets", "--mask-secrets", "mask_secrets", metavar="true|false"),
    _option("--keep_workdir", "--keep-workdir", "keep_workdir", metavar="true|false"),
    _option("--note", help="Free-text note."),
    _option(
        "--memory_limit",
        "--memory-limit",
        "memory_limit",
        metavar="SIZE",
        help="Memory of the job's process tree (256M, 1G); 0 = none, default = inherit.",
    ),
    _option(
        "--cpu_time_limit",
        "--cpu-time-limit",
        "cpu_time_limit",
        metavar="SECONDS",
        help="CPU seconds of the job; 0 = none, default = inherit.",
    ),
    _option("--cpus", metavar="CORES", help="CPU share in cores (0.5); 0 = none."),
    _option(
        "--max_processes",
        "--max-processes",
        "max_processes",
        metavar="N",
        help="Processes of the job at once; 0 = none.",
    ),
    _option(
        "--max_open_files",
        "--max-open-files",
        "max_open_files",
        metavar="N",
        help="Open files per process; 0 = none.",
    ),
    _option(
        "--output_limit",
        "--output-limit",
        "output_limit",
        metavar="SIZE",
        help="stdout+stderr of the job (100M); 0 = none.",
    ),
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
    keys = (
        "name",
        "interv",
        "cron",
        "executor",
        "retry_backoff",
        "overlap",
        "on_interrupt",
        "note",
    )
    keys += LIMIT_SETTINGS  # type: ignore[assignment]  # parsed with units by the service
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

    ctx = cli_context()
    return Vault.from_settings(ctx.settings, ctx.db)


def _warn_missing(missing: list[str]) -> None:
    if missing:
        click.echo(f"warning: required value(s) not set: {', '.join(missing)}", err=True)


@command("run-template:list", "runtemplate:list")
@_option("--company", "--company-id", "company_ref", help="Company id or slug.")
@_option("--app_id", "--app-id", "app_id", help="Application id.")
@_option("--app_uuid", "--app-uuid", "app_uuid", help="Application UUID.")
@click.option("--wide", "-w", is_flag=True, help="Every column.")
def rt_list(company_ref: str | None, app_id: str | None, app_uuid: str | None, wide: bool) -> None:
    """List run templates with their next and last run (like systemctl list-timers)."""
    from multiflexi.runtemplates.service import list_runtemplates

    ctx = cli_context()
    tz = ctx.settings.timezone
    with ctx.db.session() as s:
        company = _company(s, None, company_ref)
        app = _app(s, app_id, app_uuid)
        rows = list_runtemplates(
            s,
            company_id=company.id if company else None,
            app_id=app.id if app else None,
            tz=tz,
        )
    if ctx.fmt == "json" or wide:
        emit(rows, ctx.fmt, columns=WIDE_COLUMNS, tz=tz, width=100_000)
    elif not rows:
        emit(rows, ctx.fmt, text="No run templates.")
    else:
        emit(_timer_rows(rows, tz), ctx.fmt)


def _timer_rows(rows: list[dict[str, Any]], tz: str) -> list[dict[str, Any]]:
    """Name, company, schedule, next run and last run with how far away each is."""
    from datetime import UTC, datetime

    from multiflexi.cli.output import localize, shorten, when_text
    from multiflexi.scheduling.calendar import INTERVAL_NAMES

    now = datetime.now(UTC)
    out = []
    for row in localize(rows, tz):
        schedule = row["cron"] if row["interv"] == "c" else INTERVAL_NAMES.get(row["interv"], "")
        last = ""
        if row["last_job_id"] is not None:
            last = f"{row['last_status']} (job {row['last_job_id']})"
        out.append(
            {
                "id": row["id"],
                "name": shorten(row["name"], 24),
                "company": shorten(row["company_slug"], 16),
                "schedule": schedule if row["active"] else f"{schedule}, inactive",
                "next": when_text(row["next_run"], now) or "-",
                "last": when_text(row["last_run"], now) or "never",
                "last status": last,
                # why the scheduler cannot queue it (multiflexi.scheduling.problems)
                "problem": shorten(row["schedule_error"] or "", 60),
            }
        )
    if not any(row["problem"] for row in out):  # the column only when there is one
        out = [{k: v for k, v in row.items() if k != "problem"} for row in out]
    return out


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
        data = show_runtemplate(s, rt, tz, default_limits=ctx.settings.default_limits)
    emit(data, ctx.fmt, text=_show_text(data))


def _show_text(data: dict[str, Any]) -> str:
    skip = {"config", "environment", "missing_required", "next_runs", "limits", *LIMIT_SETTINGS}
    head = {k: v for k, v in data.items() if k not in skip}
    parts = [render_record(head), "", "Resource limits:"]
    parts += [render_table(data["limits"], LIMIT_COLUMNS), ""]
    parts.append("Configuration (the value a job gets and its source):")
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


def _columns(rt: Any) -> dict[str, Any]:
    """The template's own columns, as an update's confirmation compares them."""
    return {attr.key: getattr(rt, attr.key) for attr in rt.__mapper__.column_attrs}


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
    from multiflexi.cli.changes import describe, holds_note
    from multiflexi.jobs.holds import waiting_counts

    with ctx.db.session() as s:
        company = _company(s, opts["company_id"], opts["company_ref"])
        app = _app(s, opts["app_id"], opts["app_uuid"])
        before = _columns(get_runtemplate(s, rt_id))
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
        after = _columns(get_runtemplate(s, rt_id))
        missing = [c["name"] for c in describe_config(s, get_runtemplate(s, rt_id)) if c["missing"]]
        held, free = waiting_counts(s, runtemplate_id=rt_id)
    data = {
        "runtemplate_id": rt_id,
        "updated": bool(changed),
        "changes": changed,
        "changed": {
            k: {"from": before.get(k), "to": after.get(k)}
            for k in changed
            if not k.startswith("config:")
        },
        "waiting_held": held,
        "missing_required": missing,
    }
    if changed:
        text = f"RunTemplate {rt_id} updated: {describe(before, after, changed)}"
        if "active" in changed:
            text += holds_note("run template", bool(after["active"]), held, free)
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

"""Run templates: application x company x configuration x schedule x limits.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and validates
everything before it writes, so a refused change leaves the database as it was.
Configuration values of secret keys are stored sealed by the :class:`~multiflexi.secrets.Vault`
and are never returned in clear text except by :func:`config_layer` (for running a job).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from multiflexi.companies.service import ensure_assigned
from multiflexi.env.layers import Env, EnvVar
from multiflexi.errors import Conflict, Invalid, NotFound, SecretError
from multiflexi.runtemplates.values import (
    FieldSpec,
    check_settings,
    describe_value,
    resolve_schedule,
    validate_config,
)
from multiflexi.secrets import Vault
from multiflexi.storage.models import (
    App,
    Company,
    ConfField,
    Configuration,
    Job,
    JobStatus,
    RunTemplate,
    ScheduleEntry,
    table_of,
)
from multiflexi.storage.types import utcnow

WAITING = (JobStatus.LOADED.value, JobStatus.SCHEDULED.value)
DELETED_REASON = "run template deleted"

_RECORD = (
    "id", "name", "app_id", "company_id", "active", "interv", "cron", "delay", "executor",
    "timeout", "max_attempts", "retry_backoff", "retry_min_gap", "allow_late", "overlap",
    "on_interrupt", "mask_secrets", "keep_workdir", "keep_success_days", "keep_failed_days",
    "keep_last", "memory_limit", "cpu_time_limit", "cpus", "max_processes", "max_open_files",
    "output_limit",
    "deadline_offset", "note", "last_schedule",
    "next_schedule", "successfull_jobs_count", "failed_jobs_count", "created", "saved",
    "last_schedule_error", "last_schedule_error_at",
)  # fmt: skip


def get_runtemplate(session: Session, rt_id: int) -> RunTemplate:
    rt = session.get(RunTemplate, rt_id)
    if rt is None:
        raise NotFound(f"run template {rt_id} not found")
    return rt


def find_runtemplate_by_name(session: Session, name: str) -> RunTemplate:
    rows = list(session.scalars(select(RunTemplate).where(RunTemplate.name == name).limit(2)))
    if not rows:
        raise NotFound(f"no run template named {name!r}")
    if len(rows) > 1:
        raise Conflict(f"several run templates are named {name!r}; use --id")
    return rows[0]


def runtemplate_record(rt: RunTemplate) -> dict[str, Any]:
    """The run template's columns as a plain mapping (times are aware UTC)."""
    return {key: getattr(rt, key) for key in _RECORD}


def list_runtemplates(
    session: Session,
    *,
    company_id: int | None = None,
    app_id: int | None = None,
    app_uuid: str | None = None,
    tz: str = "UTC",
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Run templates by id, each with its last run (the newest job that started: its id,
    status and time) and its next run, as ``systemctl list-timers`` shows timers."""
    from sqlalchemy import func

    query = (
        select(RunTemplate, App, Company)
        .join(App, App.id == RunTemplate.app_id)
        .join(Company, Company.id == RunTemplate.company_id)
        .order_by(RunTemplate.id)
    )
    if company_id is not None:
        query = query.where(RunTemplate.company_id == company_id)
    if app_id is not None:
        query = query.where(App.id == app_id)
    if app_uuid:
        query = query.where(App.uuid == app_uuid)
    rows = session.execute(query).all()
    ids = [rt.id for rt, _app, _company in rows]
    last_ids = select(func.max(Job.id)).where(Job.runtemplate_id.in_(ids), Job.begin.is_not(None))
    last: dict[int, Job] = {
        job.runtemplate_id: job
        for job in session.scalars(
            select(Job).where(Job.id.in_(last_ids.group_by(Job.runtemplate_id)))
        )
        if job.runtemplate_id is not None
    }
    moment = now or utcnow()
    out = []
    for rt, app, company in rows:
        job = last.get(rt.id)
        out.append(
            {
                "id": rt.id,
                "name": rt.name,
                "company_id": company.id,
                "company_slug": company.slug,
                "app_id": app.id,
                "app_name": app.name,
                "app_uuid": app.uuid,
                "interv": rt.interv,
                "cron": rt.cron,
                "active": rt.active,
                "executor": rt.executor,
                "next_schedule": rt.next_schedule,
                "next_run": _next_run(rt, moment, tz),
                "last_job_id": job.id if job else None,
                "last_status": job.status if job else None,
                "last_run": (job.begin if job else None),
                # Why the scheduler could not queue its due job (scheduling.problems)
                "schedule_error": rt.last_schedule_error,
            }
        )
    return out


def _next_run(rt: RunTemplate, now: datetime, tz: str) -> datetime | None:
    """The scheduler's next time for the template, or the one its rule gives from now
    (before a scheduler has seen it); None when it is inactive or not scheduled."""
    if not rt.active or rt.interv == "n":
        return None
    if rt.next_schedule is not None and rt.next_schedule > now:
        return rt.next_schedule
    from multiflexi.scheduling.calendar import next_fire

    try:
        return next_fire(rt.interv, rt.cron, now, tz, rt.delay or 0)
    except Invalid:
        return None


# -- declarations and stored values ----------------------------------------------------


def app_fields(session: Session, app_id: int) -> list[ConfField]:
    return list(
        session.scalars(
            select(ConfField).where(ConfField.app_id == app_id).order_by(ConfField.position)
        )
    )


def field_spec(field: ConfField) -> FieldSpec:
    return FieldSpec(
        keyname=field.keyname,
        type=field.type,
        required=bool(field.required),
        secret=bool(field.secret),
        options=field.options,
        defval=field.defval,
    )


def config_rows(session: Session, rt: RunTemplate) -> list[Configuration]:
    return list(
        session.scalars(
            select(Configuration)
            .where(Configuration.runtemplate_id == rt.id)
            .order_by(Configuration.name)
        )
    )


def _same(row: Configuration, value: str, vault: Vault) -> bool:
    if not row.encrypted:
        return row.value == value
    try:
        return vault.open(row.value) == value
    except SecretError:
        return False


def _store_config(
    session: Session,
    vault: Vault,
    rt: RunTemplate,
    specs: list[FieldSpec],
    values: Mapping[str, str],
) -> list[str]:
    """Write validated values; an empty value removes the key. Returns changed keys."""
    by_key = {s.keyname: s for s in specs}
    rows = {c.name: c for c in config_rows(session, rt)}
    changed = []
    for key, value in values.items():
        spec = by_key.get(key)
        secret = spec.is_secret if spec else False
        row = rows.get(key)
        if value == "":
            if row is not None:
                session.delete(row)
                changed.append(key)
            continue
        if row is not None and _same(row, value, vault):
            continue
        stored = vault.seal(value) if secret else value
        kind = spec.kind if spec else "string"
        if row is None:
            row = Configuration(
                runtemplate_id=rt.id, app_id=rt.app_id, company_id=rt.company_id, name=key
            )
            session.add(row)
        row.value, row.encrypted, row.config_type = stored, secret, kind
        changed.append(key)
    session.flush()
    return changed


def create_runtemplate(
    session: Session,
    vault: Vault,
    *,
    app: App,
    company: Company,
    settings: Mapping[str, Any],
    config: Mapping[str, str],
    force: bool = False,
) -> tuple[RunTemplate, bool]:
    """Insert a run template; assigns the app to the company when needed. Returns the
    template and whether the assignment was made now."""
    values = check_settings(settings)
    interv, cron = resolve_schedule(
        ("n", None), values.pop("interv", None), values.pop("cron", None)
    )
    specs = [field_spec(f) for f in app_fields(session, app.id)]
    normalized = validate_config(specs, config, force=force)
    assigned = ensure_assigned(session, company, app)
    rt = RunTemplate(app_id=app.id, company_id=company.id, interv=interv, cron=cron)
    rt.name = values.pop("name", None) or app.name
    for key, value in values.items():
        setattr(rt, key, value)
    session.add(rt)
    session.flush()
    _store_config(session, vault, rt, specs, normalized)
    return rt, assigned


def update_runtemplate(
    session: Session,
    vault: Vault,
    rt_id: int,
    *,
    settings: Mapping[str, Any],
    config: Mapping[str, str],
    force: bool = False,
    app: App | None = None,
    company: Company | None = None,
) -> list[str]:
    """Change a run template; returns the changed fields (``config:KEY`` for values).
    Its application cannot change; moving it to another company assigns the app there."""
    rt = get_runtemplate(session, rt_id)
    if app is not None and app.id != rt.app_id:
        raise Invalid(
            f"the application of run template {rt.id} cannot be changed; create a new one"
        )
    values = check_settings(settings)
    interv, cron = resolve_schedule(
        (rt.interv, rt.cron), values.pop("interv", None), values.pop("cron", None)
    )
    specs = [field_spec(f) for f in app_fields(session, rt.app_id)]
    normalized = validate_config(specs, config, force=force)
    changed = []
    for key, value in {"interv": interv, "cron": cron, **values}.items():
        if getattr(rt, key) != value:
            setattr(rt, key, value)
            changed.append(key)
    if company is not None and company.id != rt.company_id:
        ensure_assigned(session, company, session.get_one(App, rt.app_id))
        rt.company_id = company.id
        session.execute(
            update(Configuration)
            .where(Configuration.runtemplate_id == rt.id)
            .values(company_id=company.id)
        )
        changed.append("company_id")
    session.flush()
    changed += [f"config:{k}" for k in _store_config(session, vault, rt, specs, normalized)]
    if changed:
        rt.saved = utcnow()
        session.flush()
    return changed


def cancel_waiting_jobs(
    session: Session, template_ids: Iterable[int], reason: str = DELETED_REASON
) -> list[int]:
    """Cancel the jobs of these templates that wait in the queue (loaded/scheduled):
    their queue rows go, their status becomes ``cancelled``. Returns their ids."""
    ids = list(template_ids)
    if not ids:
        return []
    waiting = list(
        session.scalars(select(Job.id).where(Job.runtemplate_id.in_(ids), Job.status.in_(WAITING)))
    )
    if waiting:
        session.execute(delete(ScheduleEntry).where(ScheduleEntry.job.in_(waiting)))
        session.execute(
            update(Job)
            .where(Job.id.in_(waiting), Job.status.in_(WAITING))
            .values(status=JobStatus.CANCELLED.value, reason=reason)
        )
    return waiting


def delete_runtemplates(
    session: Session, templates: Iterable[RunTemplate], *, force: bool = False
) -> list[int]:
    """Delete templates; their configuration, action configs and credential bindings go
    with them (ON DELETE CASCADE), their jobs stay as audit records (runtemplate_id
    becomes NULL) and their waiting jobs are cancelled. Refused while one of their jobs
    is running, unless ``force``. Returns the deleted ids."""
    items = list(templates)
    ids = [t.id for t in items]
    if not ids:
        return []
    running = list(
        session.scalars(
            select(Job.id).where(Job.runtemplate_id.in_(ids), Job.status == JobStatus.RUNNING.value)
        )
    )
    if running and not force:
        jobs = ", ".join(str(j) for j in running)
        raise Conflict(
            f"job(s) {jobs} of run template(s) {', '.join(map(str, ids))} are running; "
            "wait for them to finish or add --force"
        )
    cancel_waiting_jobs(session, ids)
    for rt in items:
        session.delete(rt)
    session.flush()
    return ids


def delete_runtemplate(session: Session, rt_id: int, *, force: bool = False) -> dict[str, Any]:
    rt = get_runtemplate(session, rt_id)
    cancelled = list(
        session.scalars(select(Job.id).where(Job.runtemplate_id == rt.id, Job.status.in_(WAITING)))
    )
    delete_runtemplates(session, [rt], force=force)
    return {"runtemplate_id": rt_id, "deleted": True, "cancelled_jobs": cancelled}


# -- display and environment -----------------------------------------------------------


def template_env(session: Session, rt: RunTemplate) -> Env:
    """What a job of ``rt`` gets from the layers stored in the database (global job
    environment, app defaults, company environment, credentials, configuration), each
    variable with its source and what it shadows; sealed values come back redacted (the
    master key is not needed). Without the host basics, the injected ``MULTIFLEXI_*``
    variables and one-off overrides, which only a job has; before ``{VAR}`` macros."""
    from multiflexi.jobs.environment import RedactingVault, assemble_marked, template_layers

    app = session.get_one(App, rt.app_id)
    company = session.get_one(Company, rt.company_id)
    fields = app_fields(session, app.id)
    layers = template_layers(session, app, company, rt, RedactingVault(), fields)
    return assemble_marked(layers, (f.keyname for f in fields if field_spec(f).is_secret))


def describe_config(
    session: Session, rt: RunTemplate, env: Env | None = None
) -> list[dict[str, Any]]:
    """Every declared key with the value a job gets (secrets redacted), its source and
    what it shadows, then stored keys the application does not declare. ``env``: the
    template's :func:`template_env`, when the caller has it already."""
    env = template_env(session, rt) if env is None else env
    rows = {c.name: c for c in config_rows(session, rt)}
    out = []
    for field in app_fields(session, rt.app_id):
        row = rows.pop(field.keyname, None)
        encrypted = row is not None and row.encrypted
        out.append(
            describe_value(field.keyname, field_spec(field), env.get(field.keyname), encrypted)
        )
    for row in rows.values():
        out.append(
            describe_value(row.name, None, env.get(row.name), row.encrypted, row.config_type)
        )
    return out


def describe_other_env(env: Env, config: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The variables of ``env`` that are not configuration keys (the global job
    environment, the company's, credentials'), secrets redacted."""
    from multiflexi.secrets import redact

    keys = {c["name"] for c in config}

    def shown(var: EnvVar, text: str) -> str:
        return redact(text) if var.secret else text

    return [
        {
            "name": var.name,
            "value": shown(var, var.value),
            "source": var.source,
            "shadowed": [{"source": s.source, "value": shown(var, s.value)} for s in var.shadowed],
            "secret": var.secret,
        }
        for var in env.values()
        if var.name not in keys
    ]


def _local(value: Any, tz: str) -> Any:
    from multiflexi.scheduling.calendar import zone

    return value.astimezone(zone(tz)) if isinstance(value, datetime) else value


def show_runtemplate(
    session: Session,
    rt: RunTemplate,
    tz: str,
    now: datetime | None = None,
    runs: int = 5,
    *,
    default_limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record with names, configuration, missing required keys, next runs (shown
    in time zone ``tz``) and the effective resource limits (over ``default_limits``)."""
    from multiflexi.runtemplates.limits import describe_limits
    from multiflexi.scheduling.calendar import describe, upcoming

    app = session.get_one(App, rt.app_id)
    company = session.get_one(Company, rt.company_id)
    data = {k: _local(v, tz) for k, v in runtemplate_record(rt).items()}
    data.update(
        app_name=app.name,
        app_uuid=app.uuid,
        company_name=company.name,
        company_slug=company.slug,
        schedule=describe(rt.interv, rt.cron),
        timezone=tz,
    )
    env = template_env(session, rt)
    config = describe_config(session, rt, env)
    next_runs: list[datetime] = []
    if rt.active and rt.interv != "n":
        try:
            next_runs = upcoming(rt.interv, rt.cron, now or utcnow(), tz, runs, rt.delay)
        except Invalid as exc:
            data["schedule_error"] = exc.message
    data["config"] = config
    data["environment"] = describe_other_env(env, config)
    data["missing_required"] = [c["name"] for c in config if c["missing"]]
    data["next_runs"] = [_local(d, tz) for d in next_runs]
    data["limits"] = describe_limits(default_limits or {}, app, rt)
    return data


_CONFIG_TABLE = table_of(Configuration)
_CONFIG = (
    select(_CONFIG_TABLE.c.name, _CONFIG_TABLE.c.value, _CONFIG_TABLE.c.encrypted)
    .where(_CONFIG_TABLE.c.runtemplate_id == bindparam("b_rt"))
    .order_by(_CONFIG_TABLE.c.name)
)  # Core, built once: read for every job


def config_layer(
    session: Session, rt: RunTemplate, vault: Vault, *, fields: Sequence[ConfField] | None = None
) -> list[EnvVar]:
    """The run template's configuration values, decrypted, source ``runtemplate:<id>``;
    a key is secret when the application declares it so (or it is stored sealed).
    ``fields``: the application's declarations, when the caller has them already."""
    declared = app_fields(session, rt.app_id) if fields is None else fields
    specs = {f.keyname: (field_spec(f), f.description) for f in declared}
    source = f"runtemplate:{rt.id}"
    out = []
    for name, stored, encrypted in session.connection().execute(_CONFIG, {"b_rt": rt.id}):
        spec, description = specs.get(name, (None, ""))
        value = vault.open(stored) if encrypted else stored
        secret = encrypted or bool(spec and spec.is_secret)
        out.append(EnvVar(name, value, source, secret=secret, description=description))
    return out


def app_default_layer(
    session: Session, app: App, *, fields: Sequence[ConfField] | None = None
) -> list[EnvVar]:
    """Declared keys with a default value, source ``app:<id> default``."""
    source = f"app:{app.id} default"
    declared = app_fields(session, app.id) if fields is None else fields
    return [
        EnvVar(
            f.keyname, f.defval, source, secret=field_spec(f).is_secret, description=f.description
        )
        for f in declared
        if f.defval is not None
    ]

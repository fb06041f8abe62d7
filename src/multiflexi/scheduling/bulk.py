"""Creating many jobs at once: the rows ``jobs.service.create_job`` writes, in a few
statements per batch.

``create_job`` takes a dozen queries and two transactions per job; the scheduler must
queue 10,000 templates due on the same minute in about two seconds. Here the layers that
do not depend on the job (application defaults, company environment) are read once per
application or company, configuration and credential layers only for templates that have
any, and the rows are written with executemany (Core, no unit of work per job).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, selectinload

from multiflexi import queue
from multiflexi.errors import MultiFlexiError
from multiflexi.storage.models import (
    App,
    Company,
    Configuration,
    Job,
    JobStatus,
    RunTemplate,
    RunTplCred,
    ScheduleEntry,
)
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.env.layers import EnvVar

log = logging.getLogger("multiflexi.scheduler")

_JOBS = cast(Table, Job.__table__)
_QUEUE = cast(Table, ScheduleEntry.__table__)


class Template(Protocol):
    """What job creation reads of a run template: an ORM object or a plain row."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def app_id(self) -> int: ...
    @property
    def company_id(self) -> int: ...
    @property
    def executor(self) -> str: ...


@dataclass(frozen=True)
class JobRequest:
    """One job to create: of this template, not before ``at``."""

    rt: Template
    at: datetime
    schedule_type: str


@dataclass(frozen=True)
class CreatedJob:
    id: int
    runtemplate_id: int
    schedule: datetime


@dataclass(frozen=True)
class _Planned:
    """A request that passed the checks, with the layers that do not depend on the job."""

    req: JobRequest
    rt: RunTemplate
    app: App
    company: Company
    executor: str
    layers: list[list[EnvVar]]
    secrets: set[str]


@dataclass
class _JobView:
    """The attributes of a job the environment and command-line helpers read and write,
    without the cost of an ORM object per job."""

    id: int
    attempt: int
    executor: str
    argv: list[str] = field(default_factory=list)
    command: str = ""


def bulk_create_jobs(
    session: Session,
    settings: Settings,
    requests: Sequence[JobRequest],
    on_skip: Callable[[int, str], None] | None = None,
) -> list[CreatedJob]:
    """Create and queue jobs in the caller's transaction: the same rows as
    ``jobs.service.create_job`` (status ``scheduled``, environment with provenance, argv,
    command, queue entry), with per-application and per-company layers read once and
    rows written by executemany.

    A request whose template cannot run as configured (application disabled, unknown
    executor, a secret that does not open) is skipped and reported to ``on_skip(rt_id,
    why)`` (default: a warning): the scheduler must go on with the others.
    """
    if not requests:
        return []
    from multiflexi.companies.service import company_env_layer
    from multiflexi.credentials.service import credential_layer
    from multiflexi.jobs import environment
    from multiflexi.jobs.service import _store_command, job_dir, secret_names
    from multiflexi.runtemplates.service import app_default_layer, config_layer
    from multiflexi.secrets import Vault
    from multiflexi.users import current_user

    vault = Vault.from_settings(settings)
    user_id = current_user(session).id
    rt_ids = [r.rt.id for r in requests]
    app_ids, company_ids = {r.rt.app_id for r in requests}, {r.rt.company_id for r in requests}
    load_apps = select(App).where(App.id.in_(app_ids)).options(selectinload(App.fields))
    apps = {a.id: a for a in session.scalars(load_apps)}
    companies = {
        c.id: c for c in session.scalars(select(Company).where(Company.id.in_(company_ids)))
    }
    # Only templates that have configuration or credentials need their layers read.
    with_config = set(
        session.scalars(
            select(Configuration.runtemplate_id).where(Configuration.runtemplate_id.in_(rt_ids))
        )
    )
    with_creds = set(
        session.scalars(
            select(RunTplCred.runtemplate_id).where(RunTplCred.runtemplate_id.in_(rt_ids))
        )
    )
    executors: dict[str, bool] = {}
    app_layers: dict[int, tuple[list[EnvVar], set[str]]] = {}
    company_layers: dict[int, list[EnvVar]] = {}
    plan: list[_Planned] = []
    for req in requests:
        rt = cast(RunTemplate, req.rt)  # the helpers read only the attributes of Template
        app, company = apps.get(rt.app_id), companies.get(rt.company_id)
        chosen = rt.executor or "Native"
        try:
            if app is None or company is None or not app.enabled:
                raise MultiFlexiError("application disabled or deleted")
            if chosen not in executors:
                executors[chosen] = _known_executor(chosen)
            if not executors[chosen]:
                raise MultiFlexiError(f"unknown executor {chosen!r}")
            # Everything that can fail for one template (a secret that does not open...)
            # happens before any row is written: one bad template skips only itself.
            if app.id not in app_layers:
                app_layers[app.id] = (app_default_layer(session, app), secret_names(app))
            if company.id not in company_layers:
                company_layers[company.id] = company_env_layer(session, company)
            own = [
                config_layer(session, rt, vault) if rt.id in with_config else [],
                credential_layer(session, rt.id, vault) if rt.id in with_creds else [],
            ]
        except MultiFlexiError as exc:
            (on_skip or _log_skip)(rt.id, exc.message)
            continue
        assert app is not None and company is not None
        defaults, secrets = app_layers[app.id]
        plan.append(
            _Planned(
                req, rt, app, company, chosen, [defaults, *own, company_layers[company.id]], secrets
            )
        )
    if not plan:
        return []
    now = utcnow()
    common = {
        "status": JobStatus.SCHEDULED.value,
        "created": now,
        "scheduled_at": now,
        "launched_by": user_id,
        "attempt": 1,
        "retry_of": None,
        "overrides": {},
    }
    rows = [
        {
            **common,
            "app_id": p.app.id,
            "company_id": p.company.id,
            "runtemplate_id": p.rt.id,
            "schedule": p.req.at,
            "schedule_type": p.req.schedule_type,
            "executor": p.executor,
            "app_version": p.app.version or "",
        }
        for p in plan
    ]
    # The environment holds the job's id: with ids known in advance (PostgreSQL, SQLite)
    # each row is written once; otherwise inserted first, completed after.
    reserved = queue.reserve_job_ids(session, len(plan))
    ids = reserved if reserved is not None else _insert_for_ids(session, rows)
    host = environment.host_layer()
    filled = []
    for job_id, p in zip(ids, plan, strict=True):
        view = _JobView(job_id, 1, p.executor)
        job = cast(Job, view)
        workdir = job_dir(settings, job_id)
        # The order of environment.gather_layers, whose result this must equal.
        defaults, config, credentials, company_env = p.layers
        layers = [
            host,
            defaults,
            config,
            credentials,
            company_env,
            environment.injected_layer(
                job=job, app=p.app, company=p.company, rt=p.rt, workdir=workdir
            ),
            environment.override_layer({}),
        ]
        env = environment.build_env(layers, secret_names=p.secrets, workdir=workdir)
        _store_command(job, p.app, env)
        filled.append(
            {
                "id": job_id,
                "env": environment.dump_env(env, vault),
                "workdir": str(workdir),
                "argv": view.argv,
                "command": view.command,
            }
        )
    complete = [{**row, **more} for row, more in zip(rows, filled, strict=True)]
    if reserved is not None:
        session.execute(insert(_JOBS), complete)
    else:
        _complete(session, complete)
    pairs = list(zip(ids, plan, strict=True))
    session.execute(
        insert(_QUEUE),
        [{"job": job_id, "after": p.req.at, "priority": 0, "created": now} for job_id, p in pairs],
    )
    queue.notify(session)
    return [CreatedJob(job_id, p.rt.id, p.req.at) for job_id, p in pairs]


def _insert_for_ids(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows and return their ids in order. Each row carries a token in
    ``workdir`` (completed later) so that RETURNING maps ids to rows without the
    row-at-a-time insert a "sorted" RETURNING needs on some backends."""
    token = f"pending:{uuid.uuid4().hex}:"
    inserted = session.execute(
        insert(_JOBS).returning(_JOBS.c.id, _JOBS.c.workdir),
        [{**row, "workdir": f"{token}{index}"} for index, row in enumerate(rows)],
    )
    by_token = {workdir: job_id for job_id, workdir in inserted}
    return [by_token[f"{token}{index}"] for index in range(len(rows))]


def _complete(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write environment, command line and directory of jobs inserted by id."""
    if session.get_bind().dialect.name == "mysql":
        # An executemany UPDATE is a round trip per row with PyMySQL; a multi-row
        # INSERT ... ON DUPLICATE KEY UPDATE of the same rows is a few statements.
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        upsert = mysql_insert(_JOBS)
        changed = {k: upsert.inserted[k] for k in ("env", "workdir", "argv", "command")}
        session.execute(upsert.on_duplicate_key_update(changed), rows)
        return
    c = _JOBS.c
    session.execute(
        update(_JOBS)
        .where(c.id == bindparam("b_id"))
        .values(
            env=bindparam("b_env", type_=c.env.type),
            workdir=bindparam("b_workdir"),
            argv=bindparam("b_argv", type_=c.argv.type),
            command=bindparam("b_command"),
        ),
        [{f"b_{k}": r[k] for k in ("id", "env", "workdir", "argv", "command")} for r in rows],
    )


def _known_executor(name: str) -> bool:
    from multiflexi.executors.registry import get_executor

    try:
        get_executor(name)
    except MultiFlexiError:
        return False
    return True


def _log_skip(rt_id: int, why: str) -> None:
    log.warning("action=skip_template runtemplate_id=%s error=%s", rt_id, why)

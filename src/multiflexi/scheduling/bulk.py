"""Creating many jobs at once: the rows ``jobs.service.create_job`` writes, in a few
statements per batch.

``create_job`` takes a dozen queries and two transactions per job; the scheduler must
queue 10,000 templates due on the same minute in about two seconds. Here the layers that
do not depend on the job (application defaults, company environment) are read once per
application or company, configuration and credential layers only for templates that have
any; jobs that share all their layers share the work of assembling their environment
(:mod:`.jobenv`); the job rows are written a batch per statement (:mod:`.rows`: COPY
on PostgreSQL, an executemany elsewhere; no ORM unit of work) and the queue entries
copied from them by ``INSERT ... SELECT``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Table, bindparam, delete, func, insert, literal, select, text, update
from sqlalchemy.orm import Session, selectinload

from multiflexi import queue
from multiflexi.errors import KeyMismatch, MultiFlexiError
from multiflexi.scheduling.jobenv import Identity, JobEnvShape, workdir_prefix
from multiflexi.scheduling.rows import IN_CHUNK, JSONText, among, insert_rows
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
    from multiflexi.secrets import Vault

log = logging.getLogger("multiflexi.scheduler")

_JOBS = cast(Table, Job.__table__)
_QUEUE = cast(Table, ScheduleEntry.__table__)
_TEMPLATES = cast(Table, RunTemplate.__table__)
_OnSkip = Callable[[int, str], None]


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
    """A request that passed the checks, with the shape its environment is built from."""

    req: JobRequest
    shape: JobEnvShape


def bulk_create_jobs(
    session: Session,
    settings: Settings,
    requests: Sequence[JobRequest],
    on_skip: Callable[[int, str], None] | None = None,
    *,
    vault: Vault | None = None,
) -> list[CreatedJob]:
    """Create and queue jobs in the caller's transaction: the same rows as
    ``jobs.service.create_job`` (status ``scheduled``, environment with provenance, argv,
    command, queue entry), with per-application and per-company layers read once and
    rows written a batch per statement.

    A request whose template cannot run as configured (application disabled, unknown
    executor, a secret that does not open) is skipped and reported to ``on_skip(rt_id,
    why)`` (default: a warning): the scheduler must go on with the others.
    """
    if not requests:
        return []
    from multiflexi.secrets import Vault
    from multiflexi.users import current_user

    planner = _Planner(session, requests, vault or Vault.for_session(settings, session))
    plan = planner.plan(on_skip or _log_skip)
    if not plan:
        return []
    now = utcnow()
    common = {
        "status": JobStatus.SCHEDULED.value,
        "created": now,
        "scheduled_at": now,
        "launched_by": current_user(session).id,
        "attempt": 1,
        "retry_of": None,
        "overrides": {},
    }
    rows = [
        {
            **common,
            **p.shape.columns,
            "runtemplate_id": p.req.rt.id,
            "schedule": p.req.at,
            "schedule_type": p.req.schedule_type,
        }
        for p in plan
    ]
    # The environment holds the job's id: with ids known in advance (a sequence on
    # PostgreSQL, SQLite, a reserved range or placeholder rows on MariaDB) each row is
    # written once; otherwise inserted first, completed after.
    reserved = queue.reserve_job_ids(session, len(plan))
    if reserved is None:
        reserved = _reserved_range(session, plan[0].req.rt.id, len(plan))
    if reserved is None:
        reserved = _placeholder_ids(session, [row["runtemplate_id"] for row in rows])
    ids = reserved if reserved is not None else _insert_for_ids(session, rows)
    _render(settings, plan, ids, rows)
    if reserved is not None:
        insert_rows(session, _JOBS, rows)
    else:
        _complete(session, rows)
    _enqueue(session, ids, now)
    queue.notify(session)
    return [CreatedJob(job_id, p.req.rt.id, p.req.at) for job_id, p in zip(ids, plan, strict=True)]


class _Planner:
    """Checks the requests of one batch and gives each the shape of its environment.

    What the checks and layers depend on -- application, company, executor, and the
    template's own configuration and credentials if it has any -- is the key of a shape:
    each is checked and read once per key, and one bad key skips only its templates.
    """

    def __init__(self, session: Session, requests: Sequence[JobRequest], vault: Vault) -> None:
        from multiflexi.jobs import environment
        from multiflexi.jobs.globalenv import global_env_layer

        self.session, self.requests, self.vault = session, requests, vault
        self.apps, self.companies = _apps_and_companies(session, requests)
        rt_ids = [r.rt.id for r in requests]
        # Only templates that have configuration or credentials need their layers read.
        self.with_config = _having(session, Configuration.runtemplate_id, rt_ids)
        self.with_creds = _having(session, RunTplCred.runtemplate_id, rt_ids)
        self.host = environment.host_layer()
        self.global_env = global_env_layer(session)
        self._shapes: dict[tuple[int, int, str, int], JobEnvShape | MultiFlexiError] = {}
        self._app_layers: dict[int, tuple[list[EnvVar], set[str]]] = {}
        self._company_layers: dict[int, list[EnvVar]] = {}

    def plan(self, on_skip: _OnSkip) -> list[_Planned]:
        """The requests that can run. Everything that can fail for one template (a secret
        that does not open...) happens here, before any row is written."""
        plan = []
        for req in self.requests:
            rt = req.rt
            own = rt.id in self.with_config or rt.id in self.with_creds
            key = (rt.app_id, rt.company_id, rt.executor or "Native", rt.id if own else 0)
            shape = self._shapes.get(key)
            if shape is None:
                shape = self._shapes[key] = self._shape(cast(RunTemplate, rt), key[2])
            if isinstance(shape, MultiFlexiError):
                on_skip(rt.id, shape.message)
                continue
            plan.append(_Planned(req, shape))
        return plan

    def _shape(self, rt: RunTemplate, executor: str) -> JobEnvShape | MultiFlexiError:
        from multiflexi.credentials.service import credential_layer
        from multiflexi.runtemplates.service import config_layer

        app, company = self.apps.get(rt.app_id), self.companies.get(rt.company_id)
        try:
            if app is None or company is None or not app.enabled:
                raise MultiFlexiError("application disabled or deleted")
            if not company.enabled:
                raise MultiFlexiError("company disabled")
            if not _known_executor(executor):
                raise MultiFlexiError(f"unknown executor {executor!r}")
            defaults, secrets = self._app_layer(app)
            # The order of environment.template_layers.
            layers = [
                self.host,
                self.global_env,
                defaults,
                self._company_layer(company),
                credential_layer(self.session, rt.id, self.vault)
                if rt.id in self.with_creds
                else [],
                config_layer(self.session, rt, self.vault) if rt.id in self.with_config else [],
            ]
        except KeyMismatch:
            raise  # this process's key, not the template: nothing can be created
        except MultiFlexiError as exc:
            return exc
        return JobEnvShape(
            layers=layers,
            app=app,
            company=company,
            executor=executor,
            secrets=secrets,
            vault=self.vault,
        )

    def _app_layer(self, app: App) -> tuple[list[EnvVar], set[str]]:
        from multiflexi.jobs.service import secret_names
        from multiflexi.runtemplates.service import app_default_layer

        if app.id not in self._app_layers:
            self._app_layers[app.id] = (app_default_layer(self.session, app), secret_names(app))
        return self._app_layers[app.id]

    def _company_layer(self, company: Company) -> list[EnvVar]:
        from multiflexi.companies.service import company_env_layer

        if company.id not in self._company_layers:
            self._company_layers[company.id] = company_env_layer(self.session, company)
        return self._company_layers[company.id]


def _apps_and_companies(
    session: Session, requests: Sequence[JobRequest]
) -> tuple[dict[int, App], dict[int, Company]]:
    app_ids = {r.rt.app_id for r in requests}
    company_ids = {r.rt.company_id for r in requests}
    load_apps = select(App).where(App.id.in_(app_ids)).options(selectinload(App.fields))
    apps = {a.id: a for a in session.scalars(load_apps)}
    load_companies = select(Company).where(Company.id.in_(company_ids))
    return apps, {c.id: c for c in session.scalars(load_companies)}


def _having(session: Session, column: Any, rt_ids: list[int]) -> set[int]:
    """Which of ``rt_ids`` have a row in the table of ``column``."""
    return set(session.scalars(select(column).where(among(session, column, rt_ids)).distinct()))


def _render(
    settings: Settings, plan: Sequence[_Planned], ids: Sequence[int], rows: list[dict[str, Any]]
) -> None:
    """Add id, environment, command line and directory to the row of each job."""
    from multiflexi.jobs.service import job_dir

    prefix = workdir_prefix(job_dir(settings, 0))
    for job_id, p, row in zip(ids, plan, rows, strict=True):
        workdir = prefix + str(job_id)
        env, argv, command = p.shape.render(Identity(job_id, p.req.rt, workdir))
        row["id"], row["env"], row["workdir"] = job_id, env, workdir
        row["argv"], row["command"] = argv, command


def _enqueue(session: Session, ids: Sequence[int], now: datetime) -> None:
    """The queue entries of the new jobs (``after`` = their not-before time), copied in
    the database from the job rows rather than sent again row by row."""
    c = _JOBS.c
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        entries = (
            select(
                c.id,
                c.schedule,
                literal(0, _QUEUE.c.priority.type),
                literal(now, _QUEUE.c.created.type),
            )
            .where(among(session, c.id, chunk))
            .order_by(c.id)
        )
        session.execute(
            insert(_QUEUE).from_select(["job", "after", "priority", "created"], entries)
        )


#: Serialises id reservations of every process on a MariaDB server (a named lock, not a
#: row lock: it is held for two statements, not for the batch's transaction).
RESERVE_LOCK = "multiflexi.job_ids"
#: Seconds a reservation waits for that lock before falling back to a row per job.
RESERVE_WAIT = 10


def _reserved_range(session: Session, rt_id: int, count: int) -> list[int] | None:
    """``count`` consecutive ids for new jobs from MariaDB's AUTO_INCREMENT, as two
    placeholder rows: the first takes the next id ``X`` as any insert would, the second
    is inserted with id ``X + count - 1``, which moves the counter past it. Both are
    deleted again, and no one else is given an id in between. Four small statements
    instead of a placeholder row per job, inserted and deleted (10,000 jobs: ~0.7 s of
    server time less). ``rt_id``: a template whose application and company the
    placeholders borrow.

    None (and the caller falls back to a row per job) when the named lock is not had
    within ``RESERVE_WAIT`` seconds, when ids do not step by one
    (``auto_increment_increment``, as in a Galera cluster), or when another session
    inserted a job between the two placeholders (its id is in the range: found by a
    locking read, which waits for its commit).
    """
    if session.get_bind().dialect.name != "mysql" or count < 1:
        return None
    got, step = session.execute(
        select(func.get_lock(RESERVE_LOCK, RESERVE_WAIT), text("@@auto_increment_increment"))
    ).one()
    if got != 1:
        return None
    t = _TEMPLATES.c
    columns = ["app_id", "company_id", "runtemplate_id"]
    try:
        if step != 1:
            return None
        borrowed = select(t.app_id, t.company_id, t.id).where(t.id == rt_id)
        first = session.execute(
            insert(_JOBS).from_select(columns, borrowed).returning(_JOBS.c.id)
        ).scalar()
        if first is None:  # the template is gone
            return None
        last = first + count - 1
        if last > first:
            explicit = select(literal(last), t.app_id, t.company_id, t.id).where(t.id == rt_id)
            session.execute(insert(_JOBS).from_select(["id", *columns], explicit))
    finally:
        session.execute(select(func.release_lock(RESERVE_LOCK)))
    intruder = session.execute(
        select(_JOBS.c.id)
        .where(_JOBS.c.id > first, _JOBS.c.id < last)
        .limit(1)
        .with_for_update(read=True)
    ).first()
    session.execute(delete(_JOBS).where(_JOBS.c.id.in_({first, last})))
    if intruder is not None:
        return None
    return list(range(first, last + 1))


def _placeholder_ids(session: Session, rt_ids: list[int]) -> list[int] | None:
    """Ids for new jobs of these templates, in order, from the job table's own id
    generator (MariaDB's AUTO_INCREMENT): placeholder rows made in the database, one per
    template, no values sent, then deleted again. No one else is ever given these ids,
    so the real rows can take them. None if this cannot be done here (no RETURNING, a
    template twice, a template gone)."""
    dialect = session.get_bind().dialect
    if not dialect.insert_returning or len(set(rt_ids)) != len(rt_ids):
        return None
    t = _TEMPLATES.c
    made = insert(_JOBS).from_select(
        ["app_id", "company_id", "runtemplate_id"],
        select(t.app_id, t.company_id, t.id).where(among(session, t.id, rt_ids)).order_by(t.id),
    )
    rows = session.execute(made.returning(_JOBS.c.id, _JOBS.c.runtemplate_id)).all()
    by_template = {rt_id: job_id for job_id, rt_id in rows}
    session.execute(delete(_JOBS).where(among(session, _JOBS.c.id, list(by_template.values()))))
    if len(by_template) != len(rt_ids):
        return None
    return [by_template[rt_id] for rt_id in rt_ids]


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
    completed = ("env", "workdir", "argv", "command")
    if session.get_bind().dialect.name == "mysql":
        # An executemany UPDATE is a round trip per row with PyMySQL; a multi-row
        # INSERT ... ON DUPLICATE KEY UPDATE of the same rows is a few statements.
        insert_rows(session, _JOBS, rows, on_duplicate_update=completed)
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
        [{"b_id": r["id"], **{f"b_{k}": _plain(r[k]) for k in completed}} for r in rows],
    )


def _plain(value: Any) -> Any:
    return json.loads(value.text) if isinstance(value, JSONText) else value


def _known_executor(name: str) -> bool:
    from multiflexi.executors.registry import get_executor

    try:
        get_executor(name)
    except MultiFlexiError:
        return False
    return True


def _log_skip(rt_id: int, why: str) -> None:
    log.warning("action=skip_template runtemplate_id=%s error=%s", rt_id, why)

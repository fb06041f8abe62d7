"""Create, find, list and delete jobs. Running them is in :mod:`multiflexi.jobs.runner`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from multiflexi.env.layers import Env
from multiflexi.errors import Conflict, Invalid, NotFound
from multiflexi.jobs import environment
from multiflexi.jobs.context import AppFactsCache, read_template_context
from multiflexi.jobs.lifecycle import (
    ExitMeaning,
    describe_exit,
    is_final,
    is_interruption,
    origin,
)
from multiflexi.queue import enqueue, notify, reserve_job_ids
from multiflexi.secrets import Vault
from multiflexi.storage.models import (
    App,
    AppExitCode,
    Artifact,
    Company,
    Job,
    JobAction,
    JobStatus,
    RunTemplate,
    ScheduleEntry,
    table_of,
)
from multiflexi.storage.types import utcnow
from multiflexi.users import current_user

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.jobs")


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def job_dir(settings: Settings, job_id: int) -> Path:
    return settings.job_root / str(job_id)


def secret_names(app: App) -> set[str]:
    from multiflexi.secrets import is_secret

    return {f.keyname for f in app.fields if is_secret(f.type, f.secret)}


def check_overrides(overrides: Mapping[str, str]) -> None:
    from multiflexi.env.names import name_problem

    for key, value in overrides.items():
        problem = name_problem(key)
        if problem is not None:
            raise Invalid(f"invalid variable name {key!r} in --env: it {problem}")
        if "\x00" in value:
            raise Invalid(f"value of {key} contains a NUL byte, which no environment can carry")


#: The applications' declarations, per version (what create_job reads of them).
_APP_FACTS = AppFactsCache()
_JOB_TABLE, _QUEUE_TABLE = table_of(Job), table_of(ScheduleEntry)


def create_job(
    db: Database,
    settings: Settings,
    *,
    runtemplate_id: int,
    company_id: int | None = None,
    overrides: Mapping[str, str] | None = None,
    at: datetime | None = None,
    schedule_type: str = "adhoc-cli",
    executor: str | None = None,
    attempt: int = 1,
    retry_of: int | None = None,
    queue: bool = True,
    priority: int = 0,
) -> Job:
    """Create a job of a run template and queue it (status ``scheduled``); with
    ``queue=False`` leave it ``loaded``.

    One write transaction: the template, its application and company and which
    environment layers have rows come in one query, the declarations from a cache per
    application version, only layers with rows are read, and the job row is written once
    (its id reserved first where the database allows), with its queue entry. When a hook
    watches the ``created`` phase (Zabbix discovery must precede the job's start), the job
    is committed ``loaded`` first, the hook told, and then queued, as the lifecycle
    describes it. Returns the job as written (not attached to a session).
    """
    overrides = dict(overrides or {})
    check_overrides(overrides)
    from multiflexi.jobs import hooks

    vault = Vault.from_settings(settings, db)
    job_hooks = hooks.load_hooks(settings)
    staged = not queue or hooks.watch(job_hooks, "created")

    def initialise(session: Session) -> Job:
        conn = session.connection()
        ctx = read_template_context(conn, runtemplate_id)
        if ctx is None:
            raise NotFound(f"run template {runtemplate_id} not found")
        rt, app, company = ctx.rt, ctx.app, ctx.company
        if company_id is not None and rt.company_id != company_id:
            raise Invalid(
                f"run template {rt.id} belongs to company {rt.company_id}, not to company "
                f"{company_id}"
            )
        if not rt.active:
            raise Conflict(f"run template {rt.id} is not active; activate it to run jobs")
        if app is None or company is None:
            raise NotFound(f"run template {rt.id} refers to a deleted application or company")
        if not company.enabled:
            raise Conflict(
                f"company {company.id} ({company.name}) is disabled; enable it to run its jobs"
            )
        if not app.enabled:
            raise Conflict(f"application {app.id} ({app.name}) is disabled")
        from multiflexi.executors.registry import get_executor

        chosen = executor or rt.executor or "Native"
        get_executor(chosen)  # unknown executor: refuse now, not at 3 a.m.
        facts = _APP_FACTS.get(session, app)
        now = utcnow()
        row: dict[str, Any] = {
            "app_id": app.id,
            "company_id": company.id,
            "runtemplate_id": rt.id,
            "status": JobStatus.LOADED if staged else JobStatus.SCHEDULED,
            "created": now,
            "scheduled_at": None if staged else now,
            "schedule": at if staged else at or now,
            "schedule_type": schedule_type,
            "executor": chosen,
            "app_version": app.version or "",
            "launched_by": current_user(session).id,
            "attempt": attempt,
            "retry_of": retry_of,
            "overrides": environment.seal_overrides(overrides, facts.secret_names, vault),
        }
        reserved = reserve_job_ids(session, 1)
        if reserved is None:  # MariaDB: the insert picks the id
            made = conn.execute(insert(_JOB_TABLE).values(row)).inserted_primary_key
            assert made is not None
            row["id"] = made[0]
        else:
            row["id"] = reserved[0]
        workdir = job_dir(settings, row["id"])
        view = SimpleNamespace(id=row["id"], attempt=attempt, executor=chosen)
        env = environment.build_env(
            environment.gather_layers(
                session,
                job=view,  # type: ignore[arg-type]
                app=app,
                company=company,
                rt=rt,
                vault=vault,
                workdir=workdir,
                overrides=overrides,
                fields=facts.fields,
                empty=ctx.empty_layers,
            ),
            secret_names=facts.secret_names,
            workdir=workdir,
        )
        row["env"] = environment.dump_env(env, vault)
        row["workdir"] = str(workdir)
        row["argv"], row["command"] = command_of(app, env)
        if reserved is None:
            conn.execute(
                update(_JOB_TABLE)
                .where(_JOB_TABLE.c.id == row["id"])
                .values({k: row[k] for k in ("env", "workdir", "argv", "command")})
            )
        else:
            conn.execute(insert(_JOB_TABLE).values(row))
        if not staged:
            conn.execute(
                insert(_QUEUE_TABLE).values(
                    job=row["id"], after=row["schedule"], priority=priority, created=now
                )
            )
            notify(session)
        return Job(**row)

    job = db.run(initialise)
    from multiflexi.monitoring import counters

    counters.inc("multiflexi_jobs_created", origin(schedule_type))
    log.info(
        "action=create job_id=%s runtemplate_id=%s company_id=%s by=%s attempt=%s retry_of=%s",
        job.id,
        runtemplate_id,
        job.company_id,
        origin(schedule_type),
        attempt,
        retry_of,
    )
    if job_hooks:
        hooks.emit(job_hooks, hooks.JobEvent("created", job.id, db, settings))
    if queue and staged:

        def schedule(session: Session) -> Job:
            fresh = get_job(session, job.id)
            enqueue(session, fresh, at or utcnow(), priority)
            return fresh

        job = db.run(schedule)
    return job


def command_of(app: Any, env: Env) -> tuple[list[str], str]:
    """The argv a job records (secrets redacted) and its display. A bare executable name
    is resolved in the job's ``PATH`` now, as the executor will resolve it: the executor
    then finds the same command line and has nothing to write back. A template that
    cannot be built is recorded as written, not raised: the job fails when it starts."""
    from multiflexi.env.cmdline import build_argv, display, redact_argv, resolve_executable

    values = env.as_dict()
    try:
        argv = build_argv(app.executable, app.cmdparams or "", values)
    except Invalid:
        return [], f"{app.executable} {app.cmdparams}".strip()
    if "/" not in argv[0]:
        argv[0] = resolve_executable(argv[0], values.get("PATH")) or argv[0]
    shown = redact_argv(argv, env.secret_values())
    return shown, display(shown)


def exit_meanings(session: Session, app_id: int) -> list[ExitMeaning]:
    rows = session.scalars(select(AppExitCode).where(AppExitCode.app_id == app_id))
    return [ExitMeaning(r.exit_code, r.description, r.severity, r.retry) for r in rows]


def job_record(session: Session, job: Job) -> dict[str, Any]:
    """Everything ``job:show`` prints, JSON-ready (environment excluded)."""
    app = session.get(App, job.app_id)
    company = session.get(Company, job.company_id)
    rt = session.get(RunTemplate, job.runtemplate_id) if job.runtemplate_id else None
    meanings = exit_meanings(session, job.app_id)
    duration = job.wall_seconds
    if duration is None and job.begin and job.end:
        duration = (job.end - job.begin).total_seconds()
    artifacts = session.scalars(
        select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.id)
    ).all()
    actions = session.scalars(
        select(JobAction).where(JobAction.job_id == job.id).order_by(JobAction.id)
    ).all()
    return {
        "id": job.id,
        "status": job.status,
        "reason": job.reason,
        "exitcode": job.exitcode,
        "exit_meaning": describe_exit(job.exitcode, job.signal, meanings)
        if is_final(job.status)
        else "",
        "runtemplate_id": job.runtemplate_id,
        "runtemplate": rt.name if rt else None,
        "app_id": job.app_id,
        "app": app.name if app else None,
        "company_id": job.company_id,
        "company": company.slug if company else None,
        "executor": job.executor,
        "schedule_type": job.schedule_type,
        "attempt": job.attempt,
        "retry_of": job.retry_of,
        "retried_by": session.scalar(
            select(Job.id).where(Job.retry_of == job.id).order_by(Job.id).limit(1)
        ),
        "interrupted": is_final(job.status) and is_interruption(job.status, job.reason),
        "created": job.created,
        "scheduled_at": job.scheduled_at,
        "not_before": job.schedule,
        "begin": job.begin,
        "end": job.end,
        "duration": duration,
        "signal": job.signal,
        "command": job.command,
        "host": job.host,
        "pid": job.pid,
        "worker": job.worker,
        "cpu_user": job.cpu_user,
        "cpu_system": job.cpu_system,
        "max_rss_kb": job.max_rss_kb,
        "limits_mechanism": job.limits_mechanism,
        "artifacts_pruned": job.artifacts_pruned,
        **(
            {"cancel_requested": job.cancel_requested, "cancel_by": job.cancel_by}
            if job.cancel_by
            else {}
        ),
        "artifacts": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "state": a.state,
                "note": a.note,
            }
            for a in artifacts
        ],
        "actions": [
            {
                "mode": a.mode,
                "action": a.action,
                "ok": a.ok,
                "message": a.message,
                "duration": a.duration,
            }
            for a in actions
        ],
    }


def env_rows(job: Job, vault: Vault | None) -> list[dict[str, Any]]:
    """The job's variables with their sources and the values each shadowed (an earlier
    layer's, nearest first); secrets redacted unless a vault is given."""
    env = environment.load_env(job.env or [], vault)
    return [
        {
            "name": v.name,
            "value": v.value,
            "source": v.source,
            "shadowed": [{"source": s.source, "value": s.value} for s in v.shadowed],
            "secret": v.secret,
        }
        for v in env.values()
    ]


def delete_job(
    db: Database,
    settings: Settings,
    job_id: int,
    *,
    force: bool = False,
    wait: float | None = None,
) -> str | None:
    """Remove a job with its output and artifacts. A running job is refused unless
    ``force``: it is then cancelled first (its executor stops its processes) and deleted
    once it has ended, so that no process of it is left running; ``wait`` seconds at most
    (default: :func:`~multiflexi.jobs.cancel.stop_wait`). Returns the reason it was
    cancelled with, when it had to be."""
    from multiflexi.jobs.cancel import cancel_job, stop_wait, wait_final

    patience = stop_wait(settings.lease_seconds, settings.kill_grace) if wait is None else wait
    stopped: str | None = None

    def drop(session: Session) -> bool:
        job = get_job(session, job_id)
        if job.status == JobStatus.RUNNING:
            return False  # claimed since we looked, or being stopped: look again
        session.execute(delete(ScheduleEntry).where(ScheduleEntry.job == job_id))
        from multiflexi.storage.models import ArtifactChunk

        art_ids = select(Artifact.id).where(Artifact.job_id == job_id)
        session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id.in_(art_ids)))
        session.execute(delete(Artifact).where(Artifact.job_id == job_id))
        session.execute(delete(JobAction).where(JobAction.job_id == job_id))
        session.delete(job)
        return True

    for _ in range(3):
        with db.read() as session:
            job = get_job(session, job_id)
            running, where = job.status == JobStatus.RUNNING, job.host
        if running:
            if not force:
                raise Conflict(
                    f"job {job_id} is running on {where or 'an executor'}; stop it with "
                    f"`job:cancel {job_id}`, or delete it with --force (which cancels it first)"
                )
            cancel_job(db, job_id)
            if wait_final(db, job_id, patience) is None:
                from multiflexi.errors import ExecutionError

                raise ExecutionError(
                    f"job {job_id} did not stop within {patience:g} s after its cancel was "
                    f"asked for (its executor on {where or '?'} has not acted); not deleted"
                )
            with db.read() as session:
                ended = get_job(session, job_id)
            stopped = (
                ended.reason
                if ended.status == JobStatus.CANCELLED
                else f"it ended {ended.status} first"
            )
        if db.run(drop):
            break
    else:
        raise Conflict(f"job {job_id} keeps being started again; not deleted")
    import shutil

    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
    return stopped


def count_jobs(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def job_outcomes(session: Session, job_ids: list[int]) -> list[dict[str, Any]]:
    """Id, template, status, duration, exit code and reason of the given jobs, in their
    order: what a foreground run (``queue:process``) reports as each job ends."""
    if not job_ids:
        return []
    rows = session.execute(
        select(Job.id, RunTemplate.name, Job.status, Job.wall_seconds, Job.exitcode, Job.reason)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .where(Job.id.in_(job_ids))
    ).all()
    found = {
        r[0]: {
            "job_id": r[0],
            "runtemplate": r[1],
            "status": r[2],
            "duration": r[3],
            "exitcode": r[4],
            "reason": r[5],
        }
        for r in rows
    }
    return [found[i] for i in job_ids if i in found]

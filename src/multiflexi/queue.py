"""The job queue: enqueue, claim, heartbeat, finish, and recovery of lost jobs.

This is the only module with backend-specific queue SQL. A claim is atomic on every
backend: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, and the
``BEGIN IMMEDIATE`` write lock on SQLite. Every state change is a conditional UPDATE whose
row count tells whether we won; losing a race is a normal result, not an error.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Integer,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased

from multiflexi.errors import Conflict, NotFound
from multiflexi.jobs.holds import job_hold, runnable
from multiflexi.storage import pipeline
from multiflexi.storage.models import (
    App,
    Company,
    Job,
    JobStatus,
    RunTemplate,
    ScheduleEntry,
    table_of,
)
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.storage.database import Database
    from multiflexi.storage.pipeline import Executes

log = logging.getLogger("multiflexi.queue")

HOSTNAME = socket.gethostname()
#: Another job of the same template. Built once: an alias of the wide job table is
#: expensive to construct, and the claim runs for every job.
_OTHER_JOB = aliased(Job, name="other_job")


def new_worker_id(kind: str = "cli") -> str:
    return f"{kind}@{HOSTNAME}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Claim:
    """A job this worker now owns, until its lease runs out."""

    job_id: int
    worker: str
    lease_until: datetime
    #: What ``claim_next(then=...)`` read on the claim's connection, if anything: a
    #: cache of rows, not part of what the claim is.
    preread: Any = field(default=None, compare=False, repr=False)


def enqueue(session: Session, job: Job, after: datetime, priority: int = 0) -> None:
    """Put a loaded job in the queue (status ``scheduled``)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.LOADED)
        .values(status=JobStatus.SCHEDULED, scheduled_at=utcnow(), schedule=after)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"job {job.id} is {job.status}, only a loaded job can be queued")
    session.add(ScheduleEntry(job=job.id, after=after, priority=priority))
    session.flush()
    session.refresh(job)
    notify(session)


def _overlap_blocked(session: Session, job: Job) -> Job | None:
    """The running job of the same run template, when the template forbids overlap."""
    if job.runtemplate_id is None:
        return None
    stmt = select(RunTemplate.overlap).where(RunTemplate.id == job.runtemplate_id)
    if session.get_bind().dialect.name != "sqlite":
        # Serialise claims of one template across workers and hosts.
        stmt = stmt.with_for_update()
    policy = session.scalar(stmt)
    if policy == "allow":
        return None
    return session.scalar(
        select(Job).where(
            Job.runtemplate_id == job.runtemplate_id,
            Job.status == JobStatus.RUNNING,
            Job.id != job.id,
        )
    )


def claim_job(db: Database, job_id: int, worker: str, lease_seconds: float) -> Claim:
    """Claim one given job now (``job:run``), whatever its not-before time."""

    def attempt(session: Session) -> Claim:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if job.status != JobStatus.SCHEDULED:
            who = f" by {job.worker}" if job.status == JobStatus.RUNNING and job.worker else ""
            raise Conflict(f"job {job_id} is {job.status}{who}; only a scheduled job can be run")
        held = job_hold(session, job_id)
        if held is not None:
            raise Conflict(f"job {job_id} is {held}; enable it to run the job")
        running = _overlap_blocked(session, job)
        if running is not None:
            raise Conflict(
                f"run template {job.runtemplate_id} already has job {running.id} running "
                "and its overlap policy forbids another"
            )
        conn = session.connection()
        claim = _take_row(conn, _sql(conn), job.id, worker, lease_seconds)
        if claim is None:
            raise Conflict(f"job {job_id} was claimed by another worker")
        return claim

    return db.run(attempt)


class _ClaimSql:
    """The claim's statements, built once per dialect: the executor claims every job
    through them, and building SQLAlchemy statements costs more than running them."""

    def __init__(self, dialect: str) -> None:
        sched, job, rt = table_of(ScheduleEntry), table_of(Job), table_of(RunTemplate)
        company, app = table_of(Company), table_of(App)
        other = job.alias("other_job")
        busy_template = exists().where(
            other.c.runtemplate_id == job.c.runtemplate_id,
            other.c.status == JobStatus.RUNNING,
        )
        candidates = (
            select(sched.c.id, sched.c.job, job.c.runtemplate_id, rt.c.overlap)
            .join(job, job.c.id == sched.c.job)
            .outerjoin(rt, rt.c.id == job.c.runtemplate_id)
            # Held jobs (company or application disabled, template not active) wait in
            # their place: two primary-key lookups for the row the claim takes.
            .outerjoin(company, company.c.id == job.c.company_id)
            .outerjoin(app, app.c.id == job.c.app_id)
            .where(sched.c.after <= bindparam("b_now"))
            .where(runnable(company, app, rt))
            .where(or_(rt.c.overlap == "allow", rt.c.id.is_(None), ~busy_template))
            .order_by(sched.c.priority.desc(), sched.c.after, sched.c.id)
        )
        if dialect == "postgresql":
            # LIMIT 1 written into the SQL, not bound: with a bound limit the server
            # cannot reuse a generic plan (it would guess a tenth of the queue and sort
            # it), so it planned the claim anew every time -- a third of its work per job.
            one = literal_column("1", Integer)
            self.pick = candidates.limit(one).with_for_update(skip_locked=True, of=sched)
        else:
            # SQLite's BEGIN IMMEDIATE already serialises claims. MariaDB would lock every
            # joined row (the template too, starving the other executors): its candidates
            # are read unlocked and then only the chosen queue row is locked.
            self.pick = candidates.limit(1 if dialect == "sqlite" else CANDIDATES)
        self.lock_entry = (
            select(sched.c.id)
            .where(sched.c.id == bindparam("b_entry"))
            .with_for_update(skip_locked=True)
        )
        self.lock_template = select(rt.c.id).where(rt.c.id == bindparam("b_rt")).with_for_update()
        self.running_sibling = (
            select(job.c.id)
            .where(
                job.c.runtemplate_id == bindparam("b_rt"),
                job.c.status == JobStatus.RUNNING,
                job.c.id != bindparam("b_job"),
            )
            .limit(1)
        )
        taking = {
            "status": JobStatus.RUNNING,
            "worker": bindparam("b_worker"),
            "host": HOSTNAME,
            "begin": bindparam("b_moment"),
            "heartbeat": bindparam("b_moment"),
            "lease_until": bindparam("b_lease"),
        }
        self.take = (
            update(job)
            .where(job.c.id == bindparam("b_job"), job.c.status == JobStatus.SCHEDULED)
            .values(taking)
        )
        self.drop_entry = delete(sched).where(sched.c.job == bindparam("b_job"))
        if dialect == "postgresql":
            # The whole claim of a job whose template lets runs overlap (or that has no
            # template) as one statement; for the others it only names the candidate.
            picked = self.pick.cte("picked")
            dropped = (
                delete(sched)
                .where(
                    sched.c.id == picked.c.id,
                    or_(picked.c.overlap.is_(None), picked.c.overlap == "allow"),
                )
                .returning(sched.c.job)
                .cte("dropped")
            )
            taken = (
                update(job)
                .where(
                    job.c.id == select(dropped.c.job).scalar_subquery(),
                    # No index covers this expression: the planner cannot prefer the
                    # status index over the primary key (which, on a table not analysed
                    # yet, it did, walking every scheduled job for each claim).
                    func.coalesce(job.c.status, "") == JobStatus.SCHEDULED,
                )
                .values(taking)
                .returning(job.c.id)
                .cte("taken")
            )
            self.pick_and_take = select(
                picked.c.job, dropped.c.job.label("dropped"), taken.c.id.label("taken")
            ).select_from(picked.outerjoin(dropped, true()).outerjoin(taken, true()))
        self.finish = (
            update(job)
            .where(
                job.c.id == bindparam("b_job"),
                job.c.status == JobStatus.RUNNING,
                job.c.worker == bindparam("b_worker"),
            )
            .values(
                {name: bindparam(f"b_{name}") for name in Outcome.COLUMNS}
                | {"lease_until": None, "pid": func.coalesce(bindparam("b_pid"), job.c.pid)}
            )
        )
        self.final_of = select(job.c.worker, job.c.status, job.c.end).where(
            job.c.id == bindparam("b_job")
        )
        self.count = {
            success: update(rt)
            .where(rt.c.id == bindparam("b_rt"))
            .values({column: rt.c[column] + 1})
            for success, column in ((True, "successfull_jobs_count"), (False, "failed_jobs_count"))
        }
        self.renew = (
            update(job)
            .where(
                job.c.id == bindparam("b_job"),
                job.c.worker == bindparam("b_worker"),
                job.c.status == JobStatus.RUNNING,
            )
            .values(lease_until=bindparam("b_lease"), heartbeat=bindparam("b_moment"))
        )


#: How many due jobs a MariaDB claim looks at before it locks one of them.
CANDIDATES = 8
_SQL: dict[str, _ClaimSql] = {}


def _sql(conn: Executes) -> _ClaimSql:
    dialect = conn.dialect.name
    found = _SQL.get(dialect)
    if found is None:
        found = _SQL[dialect] = _ClaimSql(dialect)
    return found


def claim_next(
    db: Database,
    worker: str,
    lease_seconds: float,
    now: datetime | None = None,
    *,
    then: Callable[[Executes, int], Any] | None = None,
) -> Claim | None:
    """Claim the most urgent due job, or return None when nothing is due.

    On PostgreSQL one autocommit statement claims the job unless its template forbids
    overlapping runs: two round trips (pool ping, statement) instead of six. Such a job
    is claimed in a transaction that locks its template and looks for a running sibling
    in a snapshot taken after the lock, which one statement cannot do.

    ``then(conn, job_id)``: read what the job needs on the claim's connection (the
    runner would otherwise open a read transaction of its own); its result is
    ``Claim.preread``. After a one-statement claim (committed already) a failed read
    leaves it None: the claim stands, and the runner reads for itself. In a claim
    transaction (SQLite, MariaDB, templates that forbid overlapping runs) the read is
    part of it, and a failed read fails the claim, which is retried whole.
    """
    if db.dialect == "pgsql":
        found = db.statement(lambda conn: _pick_and_take(conn, worker, lease_seconds, now, then))
        if found is not _OVERLAP_CHECK:
            return found
    return db.transact(lambda conn: _claim_on(conn, worker, lease_seconds, now, then))


def claim_next_in(
    conn: Executes,
    worker: str,
    lease_seconds: float,
    now: datetime | None = None,
    *,
    then: Callable[[Executes, int], Any] | None = None,
) -> Claim | None:
    """Claim the most urgent due job in the caller's write transaction: the one that
    finishes this worker's previous job (see ``finish(then=...)``), so that a short job
    and its successor cost one write transaction, not two.

    None when nothing is due, and also when the most urgent job's template forbids
    overlapping runs on PostgreSQL or MariaDB: checking that locks the template's row,
    and a transaction that has counted a finished job on another template's row must
    not wait for a second one (two executors would wait on each other). The caller's
    own claim then takes such a job. A failed ``then`` fails the transaction: on
    PostgreSQL the error has aborted it already.
    """
    if conn.dialect.name == "postgresql":
        found = _pick_and_take(conn, worker, lease_seconds, now, then, in_transaction=True)
        return None if found is _OVERLAP_CHECK else found
    return _claim_on(conn, worker, lease_seconds, now, then, lock_templates=False)


def _claim_on(
    conn: Executes,
    worker: str,
    lease_seconds: float,
    now: datetime | None,
    then: Callable[[Executes, int], Any] | None,
    *,
    lock_templates: bool = True,
) -> Claim | None:
    """A claim in a write transaction (SQLite, MariaDB, templates that forbid overlap)."""
    sql = _sql(conn)
    rows = conn.execute(sql.pick, {"b_now": now or utcnow()}).all()
    locking = conn.dialect.name not in ("sqlite", "postgresql")
    for row in rows:
        if locking and conn.execute(sql.lock_entry, {"b_entry": row.id}).first() is None:
            continue  # another executor is taking it
        if row.runtemplate_id is not None and row.overlap not in (None, "allow"):
            if conn.dialect.name != "sqlite":  # serialise claims of one template
                if not lock_templates:
                    return None
                conn.execute(sql.lock_template, {"b_rt": row.runtemplate_id})
            sibling = {"b_rt": row.runtemplate_id, "b_job": row.job}
            if conn.execute(sql.running_sibling, sibling).first() is not None:
                continue
        claim = _take_row(conn, sql, row.job, worker, lease_seconds)
        if claim is not None and then is not None:
            claim = Claim(claim.job_id, worker, claim.lease_until, then(conn, claim.job_id))
        return claim
    return None


#: The most urgent due job belongs to a template that forbids overlapping runs.
_OVERLAP_CHECK = Claim(0, "", datetime.min)


def _pick_and_take(
    conn: Executes,
    worker: str,
    lease_seconds: float,
    now: datetime | None,
    then: Callable[[Executes, int], Any] | None = None,
    *,
    in_transaction: bool = False,
) -> Claim | None:
    moment = utcnow()
    lease = moment + timedelta(seconds=lease_seconds)
    params = {"b_now": now or moment, "b_worker": worker, "b_moment": moment, "b_lease": lease}
    row = conn.execute(_sql(conn).pick_and_take, params).first()
    if row is None:
        return None
    if row.taken is not None:
        if in_transaction:  # a failed read has aborted the transaction: it fails whole
            preread = then(conn, row.taken) if then is not None else None
        else:
            preread = _read_after(conn, then, row.taken)
        return Claim(row.taken, worker, lease, preread)
    # Dropped but not taken: the job was no longer ``scheduled``; its queue row is gone.
    return None if row.dropped is not None else _OVERLAP_CHECK


def _read_after(conn: Executes, then: Callable[[Executes, int], Any] | None, job_id: int) -> Any:
    if then is None:
        return None
    try:
        return then(conn, job_id)
    except DBAPIError:  # not retried here: a retry would claim another job
        log.debug("action=preread_failed job_id=%s", job_id, exc_info=True)
        return None


def _take_row(
    conn: Executes, sql: _ClaimSql, job_id: int, worker: str, lease_seconds: float
) -> Claim | None:
    moment = utcnow()
    lease = moment + timedelta(seconds=lease_seconds)
    taken = conn.execute(
        sql.take, {"b_job": job_id, "b_worker": worker, "b_moment": moment, "b_lease": lease}
    )
    # Either way the queue row goes: a job that is no longer ``scheduled`` (cancelled,
    # deleted) must not block the head of the queue.
    conn.execute(sql.drop_entry, {"b_job": job_id})
    if taken.rowcount != 1:
        return None
    return Claim(job_id, worker, lease)


def claimed_since(session: Session, worker: str, since: datetime) -> list[int]:
    """The jobs ``worker`` has claimed at or after ``since`` that are still running."""
    stmt = select(Job.id).where(
        Job.status == JobStatus.RUNNING, Job.worker == worker, Job.begin >= since
    )
    return list(session.scalars(stmt.order_by(Job.id)))


def give_back(db: Database, job_id: int, worker: str, *, reason: str = "") -> bool:
    """Put a job claimed by ``worker`` but never started back in the queue, due at its
    planned time (priority 0: the job row does not keep it), with ``reason`` on the job
    (until its next run ends). False when the job is not ``worker``'s running job any
    more."""

    def attempt(session: Session) -> bool:
        taken = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == worker, Job.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.SCHEDULED,
                reason=reason,
                worker="",
                host="",
                begin=None,
                heartbeat=None,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return False
        now = utcnow()
        planned = session.scalar(select(Job.schedule).where(Job.id == job_id))
        session.add(ScheduleEntry(job=job_id, after=planned or now, priority=0, created=now))
        notify(session)
        return True

    return db.run(attempt)


def heartbeat(db: Database, claim: Claim, lease_seconds: float) -> bool:
    """Renew the lease; False means the job is no longer ours (declared lost, deleted)."""
    moment = utcnow()
    values = {
        "b_job": claim.job_id,
        "b_worker": claim.worker,
        "b_lease": moment + timedelta(seconds=lease_seconds),
        "b_moment": moment,
    }

    def attempt(conn: Connection) -> bool:
        return bool(conn.execute(_sql(conn).renew, values).rowcount == 1)

    return db.transact(attempt)


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as its final write records it."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "status", "reason", "end", "exitcode", "signal", "wall_seconds", "cpu_user",
        "cpu_system", "max_rss_kb", "limits_mechanism",
    )  # fmt: skip

    status: JobStatus
    reason: str
    end: datetime
    exitcode: int | None = None
    signal: int | None = None
    pid: int | None = None
    wall_seconds: float | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss_kb: int | None = None
    limits_mechanism: str | None = None


def finish(
    db: Database,
    claim: Claim,
    outcome: Outcome,
    runtemplate_id: int | None,
    *,
    before: Callable[[Executes], object] | None = None,
    then: Callable[[Executes], object] | None = None,
    pipelined: bool = False,
) -> bool:
    """Write a job's final status if the job is still ours; count it on its template.
    False: it is not ours any more (marked lost meanwhile), and no status was written.
    ``before`` writes more in the same transaction (the job's output), whatever the
    outcome of the status write -- unless the job already holds exactly this outcome: a
    retry after a commit whose answer was lost (the connection broke) finds its own
    write done, and neither repeats it nor reports the job lost. ``then`` runs last in
    every attempt, whatever the outcome (the executor claims the thread's next job
    there): the attempt that commits is the last one that ran it.

    ``pipelined``: ``before`` and ``then`` only execute statements and read their
    results (nothing that needs a ``Connection`` itself), so on PostgreSQL the whole
    transaction may go through a :mod:`~multiflexi.storage.pipeline`, on the
    assumption that the job is still ours. When it is not, that attempt is rolled back
    and the transaction runs again statement by statement, as without the flag.
    """
    values = {f"b_{name}": getattr(outcome, name) for name in (*Outcome.COLUMNS, "pid")}
    values |= {"b_job": claim.job_id, "b_worker": claim.worker}
    success = outcome.status == JobStatus.SUCCESS

    def write(conn: Connection) -> bool:
        sql = _sql(conn)
        if conn.execute(sql.finish, values).rowcount == 1:
            if before is not None:
                before(conn)
            if runtemplate_id is not None:
                conn.execute(sql.count[success], {"b_rt": runtemplate_id})
            return True
        now = conn.execute(sql.final_of, {"b_job": claim.job_id}).first()
        if now is not None and tuple(now) == (claim.worker, outcome.status, outcome.end):
            return True
        if before is not None:
            before(conn)
        return False

    def write_then(conn: Connection) -> bool:
        won = write(conn)
        if then is not None:
            then(conn)
        return won

    def write_pipelined(conn: Connection) -> bool:
        sql = _sql(conn)
        with pipeline.transaction(conn) as pipe:
            finished = pipe.execute(sql.finish, values)
            if before is not None:
                before(pipe)
            if runtemplate_id is not None:  # rolled back with the rest if not ours
                pipe.execute(sql.count[success], {"b_rt": runtemplate_id})
            if then is not None:
                then(pipe)
            if finished.rowcount != 1:
                raise _NotOurs
        return True

    if pipelined and db.dialect == "pgsql" and pipeline.supported():
        try:
            return db.statement(write_pipelined)  # an autocommit connection
        except _NotOurs:
            pass  # lost meanwhile, or finished by an attempt whose answer was lost
    return db.transact(write_then)


class _NotOurs(Exception):
    """The pipelined final write found the job no longer running as ours."""


def due_count(session: Session, now: datetime | None = None) -> int:
    moment = now or utcnow()
    return int(
        session.scalar(
            select(func.count()).select_from(ScheduleEntry).where(ScheduleEntry.after <= moment)
        )
        or 0
    )


def expired_leases(session: Session, now: datetime | None = None) -> list[Job]:
    """Running jobs whose worker stopped renewing its lease."""
    moment = now or utcnow()
    return list(
        session.scalars(
            select(Job).where(
                Job.status == JobStatus.RUNNING,
                Job.lease_until.is_not(None),
                Job.lease_until < moment,
            )
        )
    )


def release_now(db: Database, job_id: int) -> None:
    """Make a queued job due now (``job:run --detach``)."""

    def attempt(session: Session) -> None:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if job.status != JobStatus.SCHEDULED:
            raise Conflict(f"job {job_id} is {job.status}; only a scheduled job can be queued")
        held = job_hold(session, job_id)
        if held is not None:
            raise Conflict(f"job {job_id} is {held}; enable it to run the job")
        now = utcnow()
        session.execute(update(ScheduleEntry).where(ScheduleEntry.job == job_id).values(after=now))
        job.schedule = now
        notify(session)

    db.run(attempt)


# -- waking executors ----------------------------------------------------------------------

#: The PostgreSQL channel an enqueue notifies; executors LISTEN on it.
CHANNEL = "multiflexi_queue"


def notify(session: Session) -> None:
    """Wake listening executors when this transaction commits (PostgreSQL only; the
    other backends are polled). NOTIFY is transactional: a rolled-back enqueue wakes no one."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def due_state(session: Session, now: datetime) -> tuple[bool, datetime | None]:
    """Whether some job is due at ``now``, and the earliest not-before time after it.

    A cheap read (no write lock on SQLite) that lets an idle executor skip the claim
    transaction and sleep exactly until the next job is due.
    """
    # Held jobs are not due for anyone: an executor would take the claim's write
    # transaction at every poll for nothing.
    due = session.scalar(
        select(ScheduleEntry.id)
        .join(Job, Job.id == ScheduleEntry.job)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .outerjoin(Company, Company.id == Job.company_id)
        .outerjoin(App, App.id == Job.app_id)
        .where(
            ScheduleEntry.after <= now,
            runnable(table_of(Company), table_of(App), table_of(RunTemplate)),
        )
        .limit(1)
    )
    upcoming = session.scalar(
        select(func.min(ScheduleEntry.after)).where(ScheduleEntry.after > now)
    )
    return due is not None, upcoming


# -- overlap policy "skip" and clearing the queue -------------------------------------------

SKIP_REASON = "skipped: previous run still running"
WAITING = (JobStatus.LOADED, JobStatus.SCHEDULED)


def _cancel(session: Session, job_ids: list[int], reason: str, now: datetime) -> list[int]:
    """Cancel waiting jobs; a job claimed meanwhile by a worker is left alone."""
    done = []
    for job_id in job_ids:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(WAITING))
            .values(status=JobStatus.CANCELLED, reason=reason, end=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            session.execute(delete(ScheduleEntry).where(ScheduleEntry.job == job_id))
            done.append(job_id)
    return done


def skip_overlapping(db: Database, now: datetime | None = None) -> list[int]:
    """Cancel due jobs of ``skip`` templates that already have a job running."""
    moment = now or utcnow()
    other = _OTHER_JOB
    running = exists().where(
        other.runtemplate_id == Job.runtemplate_id,
        other.status == JobStatus.RUNNING,
        other.id != Job.id,
    )
    stmt = (
        select(Job.id)
        .join(ScheduleEntry, ScheduleEntry.job == Job.id)
        .join(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .where(ScheduleEntry.after <= moment, RunTemplate.overlap == "skip", running)
    )
    with db.read() as session:
        candidates = list(session.scalars(stmt))
    if not candidates:
        return []
    return db.run(lambda session: _cancel(session, candidates, SKIP_REASON, moment))


def waiting_ids(
    session: Session,
    *,
    company_id: int | None = None,
    runtemplate_id: int | None = None,
    retries_only: bool = False,
) -> list[int]:
    """Ids of the waiting jobs that match; ``retries_only`` picks the queued new attempts
    of failed or lost jobs."""
    stmt = select(Job.id).where(Job.status.in_(WAITING)).order_by(Job.id)
    if company_id is not None:
        stmt = stmt.where(Job.company_id == company_id)
    if runtemplate_id is not None:
        stmt = stmt.where(Job.runtemplate_id == runtemplate_id)
    if retries_only:
        stmt = stmt.where(Job.retry_of.is_not(None))
    return list(session.scalars(stmt))


def cancel_jobs(
    db: Database, job_ids: list[int], reason: str, now: datetime | None = None
) -> list[int]:
    """Cancel these jobs if they still wait; returns the ids actually cancelled."""
    moment = now or utcnow()
    cancelled: list[int] = []
    for start in range(0, len(job_ids), 500):  # short transactions, whatever the queue
        part = job_ids[start : start + 500]

        def cancel(session: Session, part: list[int] = part) -> list[int]:
            return _cancel(session, part, reason, moment)

        cancelled += db.run(cancel)
    return cancelled


def reserve_job_ids(session: Session, count: int) -> list[int] | None:
    """Ids for ``count`` jobs about to be inserted in this write transaction, so that bulk
    creation writes each row once; None where only the insert can pick them (MariaDB).

    PostgreSQL: values of the id column's sequence. SQLite: the ids after the largest one,
    which is what SQLite itself would pick; the write lock of the caller's transaction
    (``BEGIN IMMEDIATE``) keeps anyone else from inserting meanwhile.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return [
            int(i)
            for i in session.scalars(
                text(
                    "SELECT nextval(pg_get_serial_sequence('job', 'id')) FROM generate_series(1, :n)"
                ),
                {"n": count},
            )
        ]
    if dialect == "sqlite":
        top = int(session.scalar(select(func.max(Job.id))) or 0)
        return list(range(top + 1, top + 1 + count))
    return None

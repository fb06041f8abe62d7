"""Daemons in table ``worker``, named cluster locks, and the reports ``status`` and
``queue:status`` print.

Each daemon registers a row, renews its ``heartbeat`` every :data:`BEAT_SECONDS` and marks
itself ``stopped`` on a clean exit. A daemon is alive while its last beat is younger than
three intervals; one killed with SIGKILL simply stops beating, and with no clean stop on
record it reads ``crashed``. A stopping executor that waits for its running jobs keeps
beating in state ``draining``.

A lock (table ``mf_lock``) has a holder and an expiry. Acquiring it inserts the row, or
takes over an expired one with a conditional UPDATE; the database decides who wins, so it
works across hosts on every backend.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi import __version__
from multiflexi.jobs.holds import held_expression
from multiflexi.queue import HOSTNAME
from multiflexi.storage.models import (
    App,
    Company,
    Job,
    JobStatus,
    Lock,
    RunTemplate,
    ScheduleEntry,
    Worker,
)
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

#: How often a daemon renews its heartbeat; it counts as dead after three missed beats.
BEAT_SECONDS = 5.0
ALIVE_FACTOR = 3
#: Rows of daemons gone for longer than this are removed when another daemon starts.
FORGET_AFTER = timedelta(days=7)
#: States of a daemon in table ``worker`` (column ``state``) ...
RUNNING, DRAINING = "running", "draining"
#: ... and as ``status`` reports them when it is not alive: a clean stop was recorded, or
#: the beats stopped without one (killed, host down, lost its database).
STOPPED, CRASHED = "stopped", "crashed"


# -- daemons --------------------------------------------------------------------------


def register(db: Database, worker_id: str, kind: str) -> None:
    """Record a starting daemon (``executor`` or ``scheduler``)."""
    now = utcnow()

    def write(session: Session) -> None:
        session.execute(delete(Worker).where(Worker.heartbeat < now - FORGET_AFTER))
        session.merge(
            Worker(
                id=worker_id,
                kind=kind,
                host=HOSTNAME[:255],
                pid=os.getpid(),
                version=__version__,
                started=now,
                heartbeat=now,
                stopped=None,
                state=RUNNING,
            )
        )

    db.run(write)


def beat(db: Database, worker_id: str) -> None:
    """Renew the daemon's heartbeat."""
    db.run(
        lambda s: s.execute(
            update(Worker).where(Worker.id == worker_id).values(heartbeat=utcnow(), stopped=None)
        )
    )


def mark_draining(db: Database, worker_id: str) -> None:
    """A stopping daemon waits for its running jobs (it keeps beating meanwhile)."""
    db.run(
        lambda s: s.execute(
            update(Worker).where(Worker.id == worker_id).values(heartbeat=utcnow(), state=DRAINING)
        )
    )


def daemon_state(worker: Worker, now: datetime) -> str:
    """running or draining while alive; else stopped (cleanly) or crashed."""
    if worker.stopped is not None:
        return STOPPED
    if is_alive(worker, now):
        return worker.state or RUNNING
    return CRASHED


class ErrorRecord:
    """A daemon's failures, recorded in its ``worker`` row: at once when the database
    answers, else at the next attempt (a step that failed because the database was down
    is written once it is back; meanwhile the stale heartbeat tells)."""

    def __init__(self, db: Database, worker_id: str) -> None:
        self.db, self.worker_id = db, worker_id
        self._pending: tuple[str, datetime] | None = None

    def failed(self, what: str, exc: BaseException) -> None:
        from multiflexi.daemons.loop import one_line

        self._pending = (f"{what}: {one_line(exc)}"[:2000], utcnow())
        self.flush()

    def flush(self) -> None:
        """Write the pending failure, if any; never raises."""
        pending = self._pending
        if pending is None:
            return
        message, when = pending
        try:
            # One attempt: while the database is away the daemon's loop must not wait
            # for it here (its own backoff paces the retries).
            self.db.run(
                lambda s: s.execute(
                    update(Worker)
                    .where(Worker.id == self.worker_id)
                    .values(last_error=message, last_error_at=when)
                ),
                attempts=1,
            )
        except Exception:  # the database is what failed: written at the next attempt
            return
        if self._pending == pending:
            self._pending = None


def mark_stopped(db: Database, worker_id: str) -> None:
    """Record a clean stop, so that ``status`` does not wait for the beats to age."""
    now = utcnow()
    db.run(
        lambda s: s.execute(
            update(Worker).where(Worker.id == worker_id).values(heartbeat=now, stopped=now)
        )
    )


def is_alive(worker: Worker, now: datetime) -> bool:
    return worker.stopped is None and now - worker.heartbeat < timedelta(
        seconds=ALIVE_FACTOR * BEAT_SECONDS
    )


def list_workers(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """Daemons seen in the last day, alive ones first."""
    moment = now or utcnow()
    rows = session.scalars(
        select(Worker).where(Worker.heartbeat > moment - timedelta(days=1)).order_by(Worker.started)
    )
    out = [
        {
            "id": w.id,
            "kind": w.kind,
            "host": w.host,
            "pid": w.pid,
            "version": w.version,
            "started": w.started,
            "last_beat": w.heartbeat,
            "stopped": w.stopped,
            "alive": is_alive(w, moment),
            "state": daemon_state(w, moment),
            "beat_age": round((moment - w.heartbeat).total_seconds(), 1),
            "last_error": w.last_error,
            "last_error_at": w.last_error_at,
        }
        for w in rows
    ]
    return sorted(out, key=lambda w: not w["alive"])


# -- cluster locks ----------------------------------------------------------------------


def acquire_lock(
    db: Database, name: str, holder: str, ttl: float, now: datetime | None = None
) -> bool:
    """Take lock ``name`` until ``now + ttl``; False when someone else holds it unexpired."""
    moment = now or utcnow()
    until = moment + timedelta(seconds=ttl)

    def attempt(session: Session) -> bool:
        taken = session.execute(
            update(Lock)
            .where(Lock.name == name, or_(Lock.until < moment, Lock.holder == holder))
            .values(holder=holder, until=until)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
        if session.get(Lock, name) is not None:
            return False
        try:
            with session.begin_nested():  # a concurrent insert makes ours fail: we lost
                session.add(Lock(name=name, holder=holder, until=until))
        except IntegrityError:
            return False
        return True

    return db.run(attempt)


def release_lock(db: Database, name: str, holder: str) -> None:
    """Give a lock up early (only its holder can)."""
    db.run(lambda s: s.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder)))


# -- reports ----------------------------------------------------------------------------


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def system_status(db: Database, settings: Settings) -> dict[str, Any]:
    """What ``multiflexi-cli status`` prints: version, database, counts, daemons, keys."""
    from multiflexi.storage.migrations import HEAD

    revision = db.current_revision()
    now = utcnow()
    with db.read() as session:
        statuses = dict(
            session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        )
        counts = {
            "companies": _count(session, Company),
            "apps": _count(session, App),
            "runtemplates": _count(session, RunTemplate),
            "jobs": {s.value: int(statuses.get(s.value, 0)) for s in JobStatus},
            "queue": _count(session, ScheduleEntry),
            "due_now": int(
                session.scalar(
                    select(func.count())
                    .select_from(ScheduleEntry)
                    .where(ScheduleEntry.after <= now)
                )
                or 0
            ),
        }
        daemons = list_workers(session, now)
        problems = _problems(session)
    from multiflexi.health import job_root_problem, key_state

    problem = job_root_problem(settings, create=False)
    return {
        "version": __version__,
        "database": {
            "driver": settings.db_connection,
            "location": settings.describe_database(),
            "revision": revision,
            "head": HEAD,
            "up_to_date": revision == HEAD,
        },
        "counts": counts,
        "daemons": daemons,
        "timezone": settings.timezone,
        "encryption": key_state(db, settings).as_dict(),
        "job_root": {
            "path": str(settings.job_root),
            "ok": problem is None,
            "problem": problem,
        },
        "problems": problems,
    }


#: Broken templates listed one per line by ``status`` (all are counted).
SHOWN_PROBLEMS = 10


def _problems(session: Session) -> dict[str, Any]:
    """What does not work and would otherwise only be in a log: templates the scheduler
    cannot queue (one line each, the first few) and held jobs."""
    from multiflexi.jobs.holds import waiting_counts
    from multiflexi.scheduling.problems import broken_count, broken_templates

    return {
        "unschedulable": broken_count(session),
        "templates": broken_templates(session, limit=SHOWN_PROBLEMS),
        "held_jobs": waiting_counts(session)[0],
    }


def _per_company(session: Session, stmt: Any) -> dict[int, int]:
    return {int(cid): int(n) for cid, n in session.execute(stmt.group_by(Job.company_id))}


def queue_overview(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Counts by state, due now, the oldest due job, running jobs and per-company counts."""
    moment = now or utcnow()
    statuses = {
        str(s): int(n)
        for s, n in session.execute(select(Job.status, func.count()).group_by(Job.status))
    }
    queued = select(Job.company_id, func.count()).join(ScheduleEntry, ScheduleEntry.job == Job.id)
    waiting = _per_company(session, queued)
    due = _per_company(session, queued.where(ScheduleEntry.after <= moment))
    held_by = _per_company(
        session,
        queued.join(Company, Company.id == Job.company_id)
        .join(App, App.id == Job.app_id)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .where(held_expression().is_not(None)),
    )
    running_by = _per_company(
        session, select(Job.company_id, func.count()).where(Job.status == JobStatus.RUNNING)
    )
    oldest = session.execute(
        select(ScheduleEntry.job, ScheduleEntry.after)
        .where(ScheduleEntry.after <= moment)
        .order_by(ScheduleEntry.after, ScheduleEntry.id)
        .limit(1)
    ).first()
    running = [
        {
            "job_id": r.id,
            "runtemplate_id": r.runtemplate_id,
            "runtemplate": r.rt_name,
            "app": r.app_name,
            "company": r.slug,
            "worker": r.worker,
            "host": r.host,
            "pid": r.pid,
            "begin": r.begin,
            "lease_until": r.lease_until,
        }
        for r in session.execute(
            select(
                Job.id,
                Job.runtemplate_id,
                RunTemplate.name.label("rt_name"),
                App.name.label("app_name"),
                Company.slug,
                Job.worker,
                Job.host,
                Job.pid,
                Job.begin,
                Job.lease_until,
            )
            .join(App, App.id == Job.app_id)
            .join(Company, Company.id == Job.company_id)
            .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
            .where(Job.status == JobStatus.RUNNING)
            .order_by(Job.begin, Job.id)
        )
    ]
    ids = set(waiting) | set(running_by)
    slugs = dict(session.execute(select(Company.id, Company.slug).where(Company.id.in_(ids))).all())
    return {
        "statuses": {s.value: statuses.get(s.value, 0) for s in JobStatus},
        "waiting": sum(waiting.values()),
        "due_now": sum(due.values()),
        # Waiting jobs of a disabled company or application or an inactive template:
        # they keep their place and are not claimed (multiflexi.jobs.holds).
        "held": sum(held_by.values()),
        "oldest_due": None
        if oldest is None
        else {
            "job_id": oldest.job,
            "not_before": oldest.after,
            "waiting_seconds": round((moment - oldest.after).total_seconds(), 3),
        },
        "running": running,
        "companies": [
            {
                "company_id": cid,
                "company": slugs.get(cid),
                "waiting": waiting.get(cid, 0),
                "due_now": due.get(cid, 0),
                "held": held_by.get(cid, 0),
                "running": running_by.get(cid, 0),
            }
            for cid in sorted(ids)
        ],
    }


def left_due(session: Session, moment: datetime) -> tuple[int, int]:
    """Queued jobs due at ``moment`` still waiting: (held, the others)."""
    stmt = (
        select(func.count(), func.count(held_expression()))
        .select_from(ScheduleEntry)
        .join(Job, Job.id == ScheduleEntry.job)
        .join(Company, Company.id == Job.company_id)
        .join(App, App.id == Job.app_id)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .where(ScheduleEntry.after <= moment)
    )
    total, held = session.execute(stmt).one()
    return int(held), int(total) - int(held)


def waiting_jobs(session: Session, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Queued jobs in the order they would run: not-before, template, app and company,
    and why a held one is held."""
    stmt = (
        select(
            Job.id,
            ScheduleEntry.after,
            ScheduleEntry.priority,
            Job.schedule_type,
            Job.runtemplate_id,
            RunTemplate.name.label("rt_name"),
            App.name.label("app_name"),
            Company.slug,
            Job.attempt,
            held_expression().label("held"),
        )
        .join(ScheduleEntry, ScheduleEntry.job == Job.id)
        .join(App, App.id == Job.app_id)
        .join(Company, Company.id == Job.company_id)
        .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
        .order_by(ScheduleEntry.after, ScheduleEntry.priority.desc(), ScheduleEntry.id)
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "job_id": r.id,
            "not_before": r.after,
            "priority": r.priority,
            "schedule_type": r.schedule_type,
            "runtemplate_id": r.runtemplate_id,
            "runtemplate": r.rt_name,
            "app": r.app_name,
            "company": r.slug,
            "attempt": r.attempt,
            "held": r.held,
        }
        for r in session.execute(stmt)
    ]

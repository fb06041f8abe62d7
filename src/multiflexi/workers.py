"""Daemons in table ``worker``, named cluster locks, and the reports ``status`` and
``queue:status`` print.

Each daemon registers a row, renews its ``heartbeat`` every :data:`BEAT_SECONDS` and marks
itself ``stopped`` on a clean exit. A daemon is alive while its last beat is younger than
three intervals; one killed with SIGKILL simply stops beating.

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
                "running": running_by.get(cid, 0),
            }
            for cid in sorted(ids)
        ],
    }


def waiting_jobs(session: Session, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Queued jobs in the order they would run: not-before, template, app and company."""
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
        }
        for r in session.execute(stmt)
    ]

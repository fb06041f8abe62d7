"""After a restore from backup: make the restored queue safe to run (``queue:fix
--after-restore``).

A backup is a moment; the restored database does not know what happened after it.

- Jobs ``running`` in the backup belong to daemons of the lost timeline: nothing will
  ever finish them. Those whose worker is not beating now become ``lost`` with the reason
  :data:`RESTORED_REASON` and get their ``stdout.txt``/``stderr.txt`` closed. Like any
  job the platform interrupted they run again unless their template says
  ``on_interrupt=fail``: they may have finished after the backup, and a template that
  must never run twice is not run twice.
- Queued jobs whose time has come may have run after the backup too. Those of templates
  with ``on_interrupt=fail`` are cancelled (:data:`CANCELLED_REASON`); the others stay
  queued (running them again is what ``requeue`` declares harmless). Jobs due later were
  not yet due when the backup was taken and are left alone.

Run it before the daemons start; it spares jobs of daemons beating now anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from multiflexi.housekeeping.orphans import OrphanReport
from multiflexi.storage.models import Job, JobStatus, RunTemplate, ScheduleEntry, Worker
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

RESTORED_REASON = "lost: restored from backup (it may have finished after the backup)"
CANCELLED_REASON = (
    "cancelled: restored from backup (it may have run after the backup, and its template "
    "says on_interrupt=fail)"
)
KINDS = ("restored_running_lost", "restored_requeued", "restored_due_cancelled")


def _live_workers(session: Session, now: datetime) -> set[str]:
    from multiflexi.workers import ALIVE_FACTOR, BEAT_SECONDS

    fresh = now - timedelta(seconds=ALIVE_FACTOR * BEAT_SECONDS)
    return set(
        session.scalars(select(Worker.id).where(Worker.stopped.is_(None), Worker.heartbeat > fresh))
    )


def _orphaned_running(session: Session, now: datetime) -> list[int]:
    live = _live_workers(session, now)
    rows = session.execute(
        select(Job.id, Job.worker).where(Job.status == JobStatus.RUNNING).order_by(Job.id)
    ).all()
    return [job_id for job_id, worker in rows if worker not in live]


def _due_of_fail_templates(session: Session, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Job.id)
            .join(ScheduleEntry, ScheduleEntry.job == Job.id)
            .join(RunTemplate, RunTemplate.id == Job.runtemplate_id)
            .where(
                Job.status == JobStatus.SCHEDULED,
                ScheduleEntry.after <= now,
                RunTemplate.on_interrupt == "fail",
            )
            .order_by(Job.id)
        )
    )


def _mark_restored_lost(db: Database, job_id: int, now: datetime) -> bool:
    from multiflexi.recovery import add_missing_outputs

    def write(session: Session) -> bool:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(status=JobStatus.LOST, reason=RESTORED_REASON, end=now, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False
        add_missing_outputs(session, job_id, now)
        return True

    return db.run(write)


def fix_after_restore(
    db: Database, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> OrphanReport:
    """Do what the module docstring says; returns what was done (or would be)."""
    from multiflexi import queue
    from multiflexi.recovery import close_outputs, retry_once

    moment = now or utcnow()
    report = OrphanReport(
        dry_run=dry_run,
        found={k: [] for k in KINDS},
        counts=dict.fromkeys(KINDS, 0),
    )
    with db.read() as session:
        running = _orphaned_running(session, moment)
        due = _due_of_fail_templates(session, moment)
    if dry_run:
        report.add("restored_running_lost", running)
        report.add("restored_due_cancelled", due)
        return report
    holder = queue.new_worker_id("restore")
    lost, requeued = [], []
    for job_id in running:
        if not _mark_restored_lost(db, job_id, moment):
            continue
        lost.append(job_id)
        close_outputs(db, job_id)
        retry = retry_once(db, settings, job_id, holder)
        if retry is not None:
            requeued.append(retry)
    report.add("restored_running_lost", lost)
    report.add("restored_requeued", requeued)
    report.add("restored_due_cancelled", queue.cancel_jobs(db, due, CANCELLED_REASON, moment))
    return report

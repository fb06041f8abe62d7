"""Lost jobs: running jobs whose worker stopped renewing its lease.

Every executor calls :func:`requeue_lost` every half lease. A job whose lease ran out is
marked ``lost`` by a conditional UPDATE (``status='running' AND lease_until < now``), so
that of several executors noticing it at once exactly one wins, and a presumed-dead worker
that comes back can no longer finish it: its heartbeat and its final UPDATE both require
``status='running'`` and its own worker id. The output stored so far is kept (the
streaming stdout/stderr artifacts are closed with their size and checksum), and the next
attempt is queued as the run template's retry policy says.

The same sweep queues the retries that are missing for another reason: a worker that
committed a job's final ``failed`` or ``lost`` status and died (or lost the database)
before it queued the next attempt. Executors and the sweep queue a retry only through
:func:`retry_once`, under one lock per job, so a retry is never queued twice. And it
queues retries left ``loaded``: a retry is created (``loaded``) and queued
(``scheduled``) in two transactions, and a worker that died between them left one that
nothing would ever run.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from multiflexi import queue
from multiflexi.jobs import lifecycle
from multiflexi.monitoring import counters
from multiflexi.storage import blobs
from multiflexi.storage.models import App, Artifact, Job, JobStatus, RunTemplate
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.recovery")

#: How far back failed and lost jobs are checked for a missing retry.
STRANDED_WINDOW = timedelta(days=2)
#: A retry is queued in well under this; the lock of a holder killed meanwhile frees
#: itself after it. (A holder slower than this may race another one: the later of two
#: retries is then cancelled while it still waits.)
RETRY_LOCK_SECONDS = 10
DUPLICATE_REASON = "cancelled: duplicate retry of a lost job"
#: A job's retry, built once (an alias of the wide job table is costly to construct).
_RETRY = aliased(Job, name="retry_job")


def lost_reason(worker: str, host: str) -> str:
    return f"lost: worker {worker or '?'} on {host or '?'} stopped renewing its lease"


def _mark_lost(db: Database, job_id: int, worker: str, host: str, now: datetime) -> list[int]:
    """Mark one job lost if it is still running on an expired lease; returns the ids of its
    streaming artifacts, or raises LookupError when another executor (or the worker
    itself) got there first."""

    def write(session: Session) -> list[int]:
        done = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.RUNNING,
                Job.worker == worker,
                Job.lease_until < now,
            )
            .values(
                status=JobStatus.LOST, reason=lost_reason(worker, host), end=now, lease_until=None
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise LookupError(job_id)
        rt_id = session.scalar(select(Job.runtemplate_id).where(Job.id == job_id))
        if rt_id is not None:
            session.execute(
                update(RunTemplate)
                .where(RunTemplate.id == rt_id)
                .values(failed_jobs_count=RunTemplate.failed_jobs_count + 1)
            )
        add_missing_outputs(session, job_id, now)
        return list(
            session.scalars(
                select(Artifact.id).where(Artifact.job_id == job_id, Artifact.state == "streaming")
            )
        )

    return db.run(write)


def add_missing_outputs(session: Session, job_id: int, now: datetime) -> None:
    """Give a lost job the ``stdout.txt`` and ``stderr.txt`` every job has: a stream it
    printed nothing to (or nothing its worker stored before dying) is an empty artifact,
    not a missing one."""
    from multiflexi.jobs.output import STREAMS

    have = set(
        session.scalars(
            select(Artifact.kind).where(Artifact.job_id == job_id, Artifact.kind.in_(STREAMS))
        )
    )
    for stream in STREAMS:
        if stream in have:
            continue
        session.add(
            Artifact(
                job_id=job_id,
                filename=f"{stream}.txt",
                content_type="text/plain",
                note=f"standard {'output' if stream == 'stdout' else 'error'} of the job"
                " (lost: only what was stored before its worker stopped)",
                kind=stream,
                content=None,
                size=0,
                sha256=hashlib.sha256(b"").hexdigest(),
                state="complete",
                created=now,
            )
        )


def close_outputs(db: Database, job_id: int) -> None:
    """Close every output of a job that was left streaming (its worker is gone)."""
    with db.read() as session:
        ids = list(
            session.scalars(
                select(Artifact.id).where(Artifact.job_id == job_id, Artifact.state == "streaming")
            )
        )
    for artifact_id in ids:
        try:
            _close_output(db, artifact_id)
        except Exception as exc:  # the record of the loss matters more than the checksum
            log.error("action=close_output job_id=%s error=%s", job_id, exc)


def _close_output(db: Database, artifact_id: int) -> None:
    """Record size and checksum of what a dead worker managed to store, and close it."""
    digest, size = hashlib.sha256(), 0
    for chunk in blobs.iter_content(db, artifact_id):
        digest.update(chunk)
        size += len(chunk)
    db.run(
        lambda s: s.execute(
            update(Artifact)
            .where(Artifact.id == artifact_id, Artifact.state == "streaming")
            .values(state="complete", size=size, sha256=digest.hexdigest())
        )
    )


def requeue_lost(
    db: Database,
    settings: Settings,
    now: datetime | None = None,
    *,
    job_hooks: list[Any] | None = None,
    holder: str | None = None,
) -> list[int]:
    """Mark running jobs with an expired lease ``lost`` and queue their retries; queue the
    missing retries of recently lost jobs too.

    Returns the ids of the jobs this call marked lost.
    """
    from multiflexi.jobs import hooks

    moment = now or utcnow()
    me = holder or queue.new_worker_id("recovery")
    with db.read() as session:
        expired = [(j.id, j.worker, j.host) for j in queue.expired_leases(session, moment)]
    lost: list[int] = []
    for job_id, worker, host in expired:
        try:
            streams = _mark_lost(db, job_id, worker, host, moment)
        except LookupError:
            continue  # finished, renewed, or already marked by another executor
        lost.append(job_id)
        counters.inc("multiflexi_jobs_finished", str(JobStatus.LOST))
        log.warning(
            "action=lost job_id=%s worker=%s host=%s reason=%s",
            job_id,
            worker,
            host,
            lost_reason(worker, host),
        )
        for artifact_id in streams:
            try:
                _close_output(db, artifact_id)
            except Exception as exc:  # the record of the loss matters more than the checksum
                log.error("action=close_output job_id=%s error=%s", job_id, exc)
        retry_once(db, settings, job_id, me)
        if job_hooks:
            hooks.emit(
                job_hooks,
                hooks.JobEvent("finished", job_id, db, settings, {"status": str(JobStatus.LOST)}),
            )
    for job_id in _stranded(db, settings, moment):
        retry_once(db, settings, job_id, me)
    for job_id in _unqueued_retries(db, moment):
        _queue_retry(db, job_id, moment)
    for job_id, artifact_id in _unclosed_outputs(db, moment):
        try:
            _close_output(db, artifact_id)
        except Exception as exc:
            log.error("action=close_output job_id=%s error=%s", job_id, exc)
    return lost


def _unclosed_outputs(db: Database, now: datetime) -> list[tuple[int, int]]:
    """Outputs of recently lost jobs still open: whoever marked the job lost died before
    it closed them (it does so right after)."""
    with db.read() as session:
        return [
            (job_id, artifact_id)
            for job_id, artifact_id in session.execute(
                select(Job.id, Artifact.id)
                .join(Artifact, Artifact.job_id == Job.id)
                .where(
                    Job.status == JobStatus.LOST,
                    Job.end >= now - STRANDED_WINDOW,
                    Artifact.state == "streaming",
                )
                .order_by(Artifact.id)
                .limit(100)
            )
        ]


def _unqueued_retries(db: Database, now: datetime) -> list[int]:
    """Retries still ``loaded`` well after they were created: their creator died before
    it queued them (it does so within milliseconds)."""
    with db.read() as session:
        return list(
            session.scalars(
                select(Job.id)
                .where(
                    Job.status == JobStatus.LOADED,
                    Job.retry_of.is_not(None),
                    Job.created < now - timedelta(seconds=RETRY_LOCK_SECONDS),
                    Job.created >= now - STRANDED_WINDOW,
                )
                .order_by(Job.id)
                .limit(100)
            )
        )


def _queue_retry(db: Database, job_id: int, now: datetime) -> None:
    """Queue a retry left ``loaded``, not before the time its policy gave it."""

    def put(session: Session) -> bool:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.LOADED:
            return False
        queue.enqueue(session, job, job.schedule or now)
        return True

    try:
        queued = db.run(put)
    except Exception as exc:  # queued by another executor meanwhile; else the next round
        log.debug("action=queue_retry job_id=%s error=%s", job_id, exc)
        return
    if queued:
        log.warning("action=queue_retry job_id=%s reason=%s", job_id, "created but never queued")


def _stranded(db: Database, settings: Settings, now: datetime) -> list[int]:
    """Recently failed or lost jobs whose template wants another attempt, with no retry
    yet. A job that failed within the last lease is left to its own worker, which queues
    the retry right after the final status."""
    retry = _RETRY
    grace = timedelta(seconds=settings.lease_seconds)
    with db.read() as session:
        return list(
            session.scalars(
                select(Job.id)
                .join(RunTemplate, RunTemplate.id == Job.runtemplate_id)
                .join(App, App.id == Job.app_id)
                .where(
                    Job.status.in_((JobStatus.FAILED, JobStatus.LOST)),
                    Job.end >= now - STRANDED_WINDOW,
                    or_(Job.status == JobStatus.LOST, Job.end < now - grace),
                    or_(
                        Job.attempt < RunTemplate.max_attempts,
                        and_(
                            RunTemplate.on_interrupt != "fail",
                            or_(
                                Job.status == JobStatus.LOST,
                                Job.reason == lifecycle.STOPPED_REASON,
                            ),
                        ),
                    ),
                    RunTemplate.active.is_(True),
                    App.enabled.is_(True),
                    ~exists().where(retry.retry_of == Job.id),
                )
                .order_by(Job.id)
                .limit(100)
            )
        )


def _drop_duplicates(db: Database, job_id: int) -> None:
    with db.read() as session:
        retries = list(
            session.scalars(select(Job.id).where(Job.retry_of == job_id).order_by(Job.id))
        )
    if len(retries) > 1:
        dropped = queue.cancel_jobs(db, retries[1:], DUPLICATE_REASON)
        log.warning("action=duplicate_retry job_id=%s cancelled=%s", job_id, dropped)


def retry_once(db: Database, settings: Settings, job_id: int, holder: str) -> int | None:
    """Queue the next attempt of a failed or lost job unless one exists; one caller at a
    time. Returns the new job's id, or None when none was queued (policy says stop, a
    retry exists, another caller holds the lock, or the database failed: the next sweep
    tries again)."""
    from multiflexi.jobs import runner
    from multiflexi.workers import acquire_lock, release_lock

    name = f"retry:{job_id}"
    try:
        if not acquire_lock(db, name, holder, RETRY_LOCK_SECONDS):
            return None  # another executor is on it
        try:
            with db.read() as session:
                done = session.scalar(select(Job.id).where(Job.retry_of == job_id).limit(1))
            if done is not None:
                return None
            retry = runner.schedule_retry(db, settings, job_id)
            if retry is not None:  # runner.schedule_retry logged it
                _drop_duplicates(db, job_id)
            return retry
        finally:
            release_lock(db, name, holder)
    except Exception as exc:  # the next round tries again
        log.error("action=retry_failed job_id=%s error=%s", job_id, exc)
        return None

"""Reading a job's output back, and following it while the job runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from multiflexi.errors import NotFound
from multiflexi.jobs.lifecycle import is_final
from multiflexi.storage import blobs
from multiflexi.storage.models import Artifact, Job, RunTemplate, ScheduleEntry, Worker
from multiflexi.storage.models.jobs import JobStatus
from multiflexi.storage.types import utcnow
from multiflexi.workers import is_alive

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from multiflexi.storage.database import Database

#: States of a job that has not started yet.
WAITING = ("loaded", "scheduled")

POLL_SECONDS = 0.2


def _state(db: Database, job_id: int, streams: Sequence[str]) -> tuple[str, dict[str, Artifact]]:
    with db.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        arts = session.scalars(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.kind.in_(list(streams)))
        ).all()
        return job.status, {a.kind: a for a in arts}


def why_waiting(session: Session, job_id: int, now: datetime | None = None) -> list[str]:
    """Why a waiting job has not started: its not-before time, a running job of its
    template that the overlap policy waits for, no executor alive (or none of these)."""
    moment = now or utcnow()
    job = session.get(Job, job_id)
    if job is None or job.status not in WAITING:
        return []
    reasons = []
    entry = session.scalar(select(ScheduleEntry).where(ScheduleEntry.job == job_id))
    if entry is None:
        reasons.append("it is not in the queue (`multiflexi-cli queue:fix` repairs that)")
    elif entry.after > moment:
        minutes = (entry.after - moment).total_seconds() / 60
        reasons.append(f"not before {entry.after:%Y-%m-%d %H:%M:%S} UTC (in {minutes:.0f} min)")
    if job.runtemplate_id is not None:
        policy = session.scalar(
            select(RunTemplate.overlap).where(RunTemplate.id == job.runtemplate_id)
        )
        running = session.scalar(
            select(Job.id).where(
                Job.runtemplate_id == job.runtemplate_id,
                Job.status == JobStatus.RUNNING,
                Job.id != job_id,
            )
        )
        if running is not None and policy not in (None, "allow"):
            reasons.append(f"job {running} of the same run template is running (overlap {policy})")
    executors = session.scalars(select(Worker).where(Worker.kind == "executor")).all()
    if not any(is_alive(w, moment) for w in executors):
        reasons.append(
            f"no executor is alive (start multiflexi-executor, or run it now:"
            f" multiflexi-cli job:run {job_id})"
        )
    return reasons or ["the executors are busy with other jobs"]


def follow_output(
    db: Database,
    job_id: int,
    streams: Sequence[str],
    *,
    follow: bool,
    write: Callable[[str, bytes], None],
    poll: float = POLL_SECONDS,
    max_wait: float | None = None,
    note: Callable[[str], None] | None = None,
) -> None:
    """Write the stored output; with ``follow``, keep writing new chunks until the job
    has ended and its output is complete. While the job waits to start, ``note`` is told
    why (:func:`why_waiting`), and again whenever the reasons change while following."""
    next_seq: dict[str, int] = {}
    started = time.monotonic()
    told: list[str] = []
    while True:
        status, arts = _state(db, job_id, streams)
        if note is not None and status in WAITING:
            with db.read() as session:
                reasons = why_waiting(session, job_id)
            if reasons and reasons != told:
                note(f"job {job_id} is waiting ({status}): " + "; ".join(reasons))
                told = reasons
        for stream in streams:
            art = arts.get(stream)
            if art is None:
                continue
            if stream not in next_seq:
                if art.content:
                    write(stream, art.content)
                next_seq[stream] = 0
            for chunk_seq, data in blobs.iter_chunks(db, art.id, start_seq=next_seq[stream]):
                write(stream, data)
                next_seq[stream] = chunk_seq + 1
        streaming = any(a.state == "streaming" for a in arts.values())
        if not follow or (is_final(status) and not streaming):
            return
        if max_wait is not None and time.monotonic() - started > max_wait:
            return
        time.sleep(poll)

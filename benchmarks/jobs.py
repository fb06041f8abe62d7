"""Rows to run and jobs to wait for.

Jobs are created *parked* (queued with a not-before time a day ahead), so that creating
them is not measured; :func:`release` makes them due in one commit and returns the moment
of that commit, the start of every measurement.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from benchmarks.common import BenchError
from multiflexi import queue
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Artifact,
    Company,
    CompanyApp,
    Job,
    JobStatus,
    RunTemplate,
    ScheduleEntry,
)
from multiflexi.storage.models.jobs import FINAL_STATUSES
from multiflexi.storage.types import utcnow

#: How far ahead parked jobs wait.
PARKED = timedelta(days=1)
FINAL = [str(s) for s in FINAL_STATUSES]


def make_template(
    db: Database, *, executable: str, cmdparams: str = "", overlap: str = "allow"
) -> int:
    """An application, a company and one run template; returns the template's id.

    ``overlap="allow"``: jobs of the one template may run side by side, as jobs of many
    templates would.
    """
    tag = uuid.uuid4().hex[:8]
    with db.session() as session:
        app = App(
            name=f"bench {tag}",
            executable=executable,
            cmdparams=cmdparams,
            uuid=str(uuid.uuid4()),
            code=tag[:6].upper(),
            version="1.0",
        )
        company = Company(name=f"Bench {tag}", slug=f"bench_{tag}")
        session.add_all([app, company])
        session.flush()
        session.add(CompanyApp(company_id=company.id, app_id=app.id))
        rt = RunTemplate(
            app_id=app.id, company_id=company.id, name="bench", overlap=overlap, interv="n"
        )
        session.add(rt)
        session.flush()
        return rt.id


def _bulk_module() -> Any:
    """The module with ``JobRequest`` and ``bulk_create_jobs``, None if there is none."""
    import importlib

    for name in ("multiflexi.scheduling.bulk", "multiflexi.scheduling.scheduler"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "JobRequest") and hasattr(module, "bulk_create_jobs"):
            return module
    return None


def park_jobs(db: Database, rt_id: int, count: int, *, batch: int = 500) -> list[int]:
    """Create ``count`` queued jobs of a template, due only in a day (see :data:`PARKED`).

    Uses the scheduler's bulk creation (the same rows as ``create_job``, few queries per
    batch) when it exists, else ``create_job`` one by one.
    """
    at = utcnow() + PARKED
    bulk = _bulk_module()
    if bulk is None:
        from multiflexi.jobs.service import create_job

        return [create_job(db, db.settings, runtemplate_id=rt_id, at=at).id for _ in range(count)]
    ids: list[int] = []
    while len(ids) < count:
        size = min(batch, count - len(ids))

        def create(session: Session, size: int = size) -> list[int]:
            rt = session.get(RunTemplate, rt_id)
            assert rt is not None
            requests = [bulk.JobRequest(rt, at, "adhoc-cli") for _ in range(size)]
            return [job.id for job in bulk.bulk_create_jobs(session, db.settings, requests)]

        ids += db.run(create)
    return ids


def _id_filter(column: Any, ids: Sequence[int]) -> Any:
    low, high = min(ids), max(ids)
    if high - low + 1 == len(ids):  # the usual case: created in one go
        return column.between(low, high)
    return column.in_(list(ids))


def release(db: Database, job_ids: Sequence[int]) -> float:
    """Make parked jobs due now, in one transaction; returns ``time.time()`` after commit."""
    now = utcnow()

    def due(session: Session) -> None:
        session.execute(
            update(ScheduleEntry)
            .where(_id_filter(ScheduleEntry.job, job_ids))
            .values(after=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Job)
            .where(_id_filter(Job.id, job_ids))
            .values(schedule=now)
            .execution_options(synchronize_session=False)
        )
        queue.notify(session)

    db.run(due)
    return time.time()


def cancel_waiting(db: Database, job_ids: Sequence[int]) -> int:
    """Cancel the jobs that still wait (call it with the executors stopped)."""
    waiting = [str(JobStatus.LOADED), str(JobStatus.SCHEDULED)]

    def cancel(session: Session) -> int:
        session.execute(
            delete(ScheduleEntry)
            .where(_id_filter(ScheduleEntry.job, job_ids))
            .execution_options(synchronize_session=False)
        )
        done = session.execute(
            update(Job)
            .where(_id_filter(Job.id, job_ids), Job.status.in_(waiting))
            .values(status=JobStatus.CANCELLED, reason="benchmark step over", end=utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(done.rowcount)  # type: ignore[attr-defined]

    return db.run(cancel)


def finished_count(db: Database, job_ids: Sequence[int]) -> int:
    with db.read() as session:
        stmt = select(func.count()).where(_id_filter(Job.id, job_ids), Job.status.in_(FINAL))
        return int(session.scalar(stmt) or 0)


def wait_final(
    db: Database,
    job_ids: Sequence[int],
    *,
    timeout: float,
    poll: float = 0.02,
    alive: Callable[[], None] | None = None,
) -> float:
    """Wait until every job has a final status; returns ``time.time()`` when seen.

    Polls every ``poll`` seconds near the end, less often before: the count is a query,
    and a query every 20 ms for the whole run took CPU from the executors it measured
    (up to a tenth of a core on PostgreSQL). While many jobs remain, the next look is
    half the time the remaining jobs need at the rate seen so far (at most a second), so
    the end is still seen within ``poll``. ``alive`` is called on every poll and may
    raise (an executor died).
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        done = finished_count(db, job_ids)
        if done >= len(job_ids):
            return time.time()
        if alive is not None:
            alive()
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"only {done} of {len(job_ids)} jobs finished within {timeout:.0f} s")
        time.sleep(next_look(done, len(job_ids), now - start, poll))


def next_look(done: int, total: int, elapsed: float, poll: float) -> float:
    """How long to wait before counting again: half the time the ``total - done`` jobs
    left need at the rate seen so far, between ``poll`` and one second."""
    if done <= 0 or elapsed <= 0:
        return poll
    remaining = (total - done) * elapsed / done
    return min(1.0, max(poll, remaining / 2))


def status_counts(db: Database, job_ids: Sequence[int]) -> dict[str, int]:
    with db.read() as session:
        rows = session.execute(
            select(Job.status, func.count()).where(_id_filter(Job.id, job_ids)).group_by(Job.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def read_output(db: Database, job_id: int, kind: str = "stdout") -> bytes:
    from multiflexi.storage.blobs import iter_content

    with db.read() as session:
        art_id = session.scalar(
            select(Artifact.id).where(Artifact.job_id == job_id, Artifact.kind == kind)
        )
    if art_id is None:
        return b""
    return b"".join(iter_content(db, art_id))


def artifact_sizes(db: Database, job_ids: Sequence[int]) -> dict[str, int]:
    """Total stored size per artifact kind over the given jobs."""
    with db.read() as session:
        rows = session.execute(
            select(Artifact.kind, func.sum(Artifact.size))
            .where(_id_filter(Artifact.job_id, job_ids), Artifact.state == "complete")
            .group_by(Artifact.kind)
        ).all()
    return {str(kind): int(size or 0) for kind, size in rows}


def handover_gaps(db: Database, job_ids: Sequence[int]) -> tuple[list[float], list[float]]:
    """For each job that followed another on the same worker: milliseconds from the end of
    the previous job's process to the claim (``job.begin``), and from the claim to the
    job's own process start (its end minus its wall time)."""
    with db.read() as session:
        rows = session.execute(
            select(Job.worker, Job.begin, Job.end, Job.wall_seconds)
            .where(_id_filter(Job.id, job_ids), Job.status == JobStatus.SUCCESS)
            .order_by(Job.worker, Job.begin)
        ).all()
    to_claim: list[float] = []
    to_start: list[float] = []
    for before, after in pairwise(rows):
        if before.worker != after.worker or after.wall_seconds is None:
            continue
        started = after.end - timedelta(seconds=after.wall_seconds)
        to_claim.append((after.begin - before.end).total_seconds() * 1000)
        to_start.append((started - after.begin).total_seconds() * 1000)
    return to_claim, to_start

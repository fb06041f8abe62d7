"""Orphan repair (``queue:fix``): put the queue and the job records back in agreement.

What it fixes, each with a conditional statement so that a race with a live executor is
lost harmlessly rather than won wrongly:

- ``lost_jobs``: running jobs whose lease expired (their worker died) become ``lost``.
  When :mod:`multiflexi.recovery` exists its ``requeue_lost`` does this (it also retries
  them), so the executor and housekeeping share one recovery path.
- ``queue_rows_without_job`` / ``queue_rows_of_unqueued_jobs``: queue rows whose job is
  gone or no longer ``scheduled``. Left alone they would sit at the head of the queue.
- ``requeued_jobs``: ``scheduled`` jobs with no queue row get it back (not before their
  planned time, or now): they were meant to run.
- ``never_queued_jobs``: jobs still ``loaded`` an hour after creation failed before they
  were queued; they become ``failed`` with the reason "never queued".
- ``job_dirs_removed``: job directories under the job root whose job is finished (and
  does not keep its directory) or gone, after a grace period. Directories of unfinished
  jobs are never touched.
- ``handoff_dirs_removed``: folders under ``<data dir>/handoff`` in which the LaunchJob
  action left a finished job's artifact for the job it chained, once untouched for
  :data:`HANDOFF_GRACE` (the chained job and its retries have long read it by then).

The last two are local to a host: :func:`clean_local_dirs` does only them, and every
executor calls it for its own job root when it starts and every
hour (``daemons.executor.LOCAL_SWEEP_SECONDS``), whichever host wins the cluster-wide housekeeping.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi.queue import expired_leases
from multiflexi.storage.models import FINAL_STATUSES, Job, JobStatus, RunTemplate, ScheduleEntry
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

#: A job still ``loaded`` this long after creation was never queued.
LOADED_GRACE = timedelta(hours=1)
#: A finished job's directory may still be read by its actions for a while.
DIR_GRACE = timedelta(hours=1)
#: A handoff folder untouched this long has served the job it was made for.
HANDOFF_GRACE = timedelta(days=7)
#: How many ids per kind the report lists (the counts are always complete).
MAX_LISTED = 100

KINDS = (
    "lost_jobs",
    "queue_rows_without_job",
    "queue_rows_of_unqueued_jobs",
    "requeued_jobs",
    "never_queued_jobs",
    "job_dirs_removed",
    "handoff_dirs_removed",
)


@dataclass
class OrphanReport:
    """What was fixed (or, in a dry run, would be), per kind."""

    dry_run: bool = False
    recovery: str = "builtin"
    found: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in KINDS})
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    errors: list[str] = field(default_factory=list)

    def add(self, kind: str, items: Iterable[Any], count: int | None = None) -> None:
        items = list(items)
        self.counts[kind] += len(items) if count is None else count
        room = MAX_LISTED - len(self.found[kind])
        self.found[kind].extend(items[: max(room, 0)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "fixed": dict(self.counts),
            "total": sum(self.counts.values()),
            "ids": {k: list(v) for k, v in self.found.items()},
            "recovery": self.recovery,
            "errors": list(self.errors),
        }


def _recovery_hook() -> Any:
    """``multiflexi.recovery.requeue_lost`` when that module exists, else None."""
    try:
        module = importlib.import_module("multiflexi.recovery")
    except ModuleNotFoundError as exc:
        if exc.name != "multiflexi.recovery":
            raise  # a real import error inside the module must not be hidden
        return None
    return getattr(module, "requeue_lost", None)


def _ids_of(result: Any) -> tuple[list[int], int | None]:
    """Job ids (and a count when only that is known) from whatever recovery returned."""
    if result is None:
        return [], 0
    if isinstance(result, bool):
        return [], int(result)
    if isinstance(result, int):
        return [], result
    if isinstance(result, Mapping):
        for key in ("lost", "job_ids", "ids", "requeued"):
            if key in result:
                return _ids_of(result[key])
        return [], None
    ids: list[int] = []
    for item in result:
        value = item if isinstance(item, int) else getattr(item, "job_id", None)
        value = value if value is not None else getattr(item, "id", None)
        if isinstance(value, int):
            ids.append(value)
    return ids, None


def _mark_lost(db: Database, now: datetime) -> list[int]:
    def mark(session: Session) -> list[int]:
        done = []
        for job in expired_leases(session, now):
            lease = job.lease_until.strftime("%Y-%m-%d %H:%M:%S") if job.lease_until else "?"
            result = session.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.status == JobStatus.RUNNING,
                    Job.lease_until < now,
                )
                .values(
                    status=JobStatus.LOST,
                    end=now,
                    lease_until=None,
                    reason=f"lost: worker {job.worker or '?'} stopped renewing its lease "
                    f"(expired {lease} UTC)",
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                done.append(job.id)
        return done

    return db.run(mark)


def _lost_jobs(db: Database, settings: Settings, now: datetime, report: OrphanReport) -> None:
    if report.dry_run:
        with db.read() as session:
            report.add("lost_jobs", [j.id for j in expired_leases(session, now)])
        return
    hook = _recovery_hook()
    if hook is None:
        report.add("lost_jobs", _mark_lost(db, now))
        return
    report.recovery = "multiflexi.recovery"
    ids, count = _ids_of(hook(db, settings, now))
    report.add("lost_jobs", ids, count)


def _queue_rows(db: Database, report: OrphanReport) -> None:
    with db.read() as session:
        rows = session.execute(
            select(ScheduleEntry.id, ScheduleEntry.job, Job.status)
            .outerjoin(Job, Job.id == ScheduleEntry.job)
            .where(Job.id.is_(None) | (Job.status != JobStatus.SCHEDULED))
        ).all()
    without = [r[0] for r in rows if r[2] is None]
    unqueued = [r[0] for r in rows if r[2] is not None]
    if not report.dry_run and rows:
        # A job never returns to ``scheduled``, so a row found stale here stays stale.
        def drop(session: Session) -> None:
            session.execute(delete(ScheduleEntry).where(ScheduleEntry.id.in_(without + unqueued)))

        db.run(drop)
    report.add("queue_rows_without_job", [r[1] for r in rows if r[2] is None])
    report.add("queue_rows_of_unqueued_jobs", [r[1] for r in rows if r[2] is not None])


def _requeue(db: Database, now: datetime, report: OrphanReport) -> None:
    with db.read() as session:
        rows = session.execute(
            select(Job.id, Job.schedule).where(
                Job.status == JobStatus.SCHEDULED,
                ~exists().where(ScheduleEntry.job == Job.id),
            )
        ).all()
    if report.dry_run:
        report.add("requeued_jobs", [r[0] for r in rows])
        return
    done = []
    for job_id, planned in rows:

        def put_back(
            session: Session, job_id: int = job_id, after: datetime = planned or now
        ) -> bool:
            still = session.scalar(
                select(Job.id).where(
                    Job.id == job_id,
                    Job.status == JobStatus.SCHEDULED,
                    ~exists().where(ScheduleEntry.job == Job.id),
                )
            )
            if still is None:
                return False
            session.add(ScheduleEntry(job=job_id, after=after, priority=0, created=now))
            session.flush()
            return True

        try:
            if db.run(put_back):
                done.append(job_id)
        except IntegrityError:  # someone queued it at the same moment: fine
            continue
    report.add("requeued_jobs", done)


def _never_queued(db: Database, now: datetime, report: OrphanReport) -> None:
    cutoff = now - LOADED_GRACE
    stale = (Job.status == JobStatus.LOADED, Job.created < cutoff)
    with db.read() as session:
        ids = list(session.scalars(select(Job.id).where(*stale)))
    changed = 0
    for start in range(0, 0 if report.dry_run else len(ids), 500):
        batch = ids[start : start + 500]

        def fail(session: Session, batch: list[int] = batch) -> int:
            # Conditional: a job queued since we looked is left alone.
            result = session.execute(
                update(Job)
                .where(Job.id.in_(batch), *stale)
                .values(status=JobStatus.FAILED, reason="never queued", end=now)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

        changed += db.run(fail)
    report.add("never_queued_jobs", ids, len(ids) if report.dry_run else changed)


def dir_is_orphan(
    *,
    status: str | None,
    finished_at: datetime | None,
    keeps_dir: bool,
    dir_mtime: datetime,
    now: datetime,
) -> bool:
    """Whether a job directory may go (pure): its job is gone, or finished and not keeping it."""
    if status is None:  # no job: the directory is leftover, once it is quiet
        return dir_mtime <= now - DIR_GRACE
    if status not in FINAL_STATUSES or keeps_dir:
        return False
    return finished_at is not None and finished_at <= now - DIR_GRACE


def _job_dirs(db: Database, settings: Settings, now: datetime, report: OrphanReport) -> None:
    root = settings.job_root
    if not root.is_dir():
        return
    dirs: dict[int, Path] = {}
    for entry in root.iterdir():
        # Only plain directories named by a job id; a symlink is someone else's business.
        if entry.name.isdigit() and entry.is_dir() and not entry.is_symlink():
            dirs[int(entry.name)] = entry
    ids = sorted(dirs)
    known: dict[int, tuple[str | None, datetime | None, bool]] = {}
    with db.read() as session:
        for start in range(0, len(ids), 500):
            rows = session.execute(
                select(Job.id, Job.status, Job.end, Job.created, RunTemplate.keep_workdir)
                .outerjoin(RunTemplate, RunTemplate.id == Job.runtemplate_id)
                .where(Job.id.in_(ids[start : start + 500]))
            ).all()
            for job_id, job_status, end, created, keep in rows:
                known[job_id] = (job_status, end or created, bool(keep) or settings.keep_job_dir)
    removed = []
    for job_id in ids:
        path = dirs[job_id]
        status, finished, keeps = known.get(job_id, (None, None, False))
        mtime = _mtime(path)
        if mtime is None or not dir_is_orphan(
            status=status, finished_at=finished, keeps_dir=keeps, dir_mtime=mtime, now=now
        ):
            continue
        if _remove_tree(path, report):
            removed.append(str(path))
    report.add("job_dirs_removed", removed)


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def _remove_tree(path: Path, report: OrphanReport) -> bool:
    """Remove ``path`` (not in a dry run); False, with the error reported, if it failed."""
    if report.dry_run:
        return True
    try:
        shutil.rmtree(path)
    except OSError as exc:
        report.errors.append(f"cannot remove {path}: {exc.strerror or exc}")
        return False
    return True


def _handoff_dirs(settings: Settings, now: datetime, report: OrphanReport) -> None:
    from multiflexi.actions.launch_job import HANDOFF_PREFIX, handoff_root

    root = handoff_root(settings)
    if not root.is_dir():
        return
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(HANDOFF_PREFIX) or entry.is_symlink() or not entry.is_dir():
            continue
        mtime = _mtime(entry)
        if mtime is None or now - mtime < HANDOFF_GRACE:
            continue
        if _remove_tree(entry, report):
            removed.append(str(entry))
    report.add("handoff_dirs_removed", removed)


def clean_local_dirs(
    db: Database, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> OrphanReport:
    """Remove this host's leftover job and handoff directories (see the module docstring)."""
    moment = now or utcnow()
    report = OrphanReport(dry_run=dry_run)
    _job_dirs(db, settings, moment, report)
    _handoff_dirs(settings, moment, report)
    return report


def fix_orphans(
    db: Database, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> OrphanReport:
    """Repair everything listed in the module docstring; returns what was fixed."""
    moment = now or utcnow()
    report = OrphanReport(dry_run=dry_run)
    _lost_jobs(db, settings, moment, report)
    _queue_rows(db, report)
    _requeue(db, moment, report)
    _never_queued(db, moment, report)
    _job_dirs(db, settings, moment, report)
    _handoff_dirs(settings, moment, report)
    return report

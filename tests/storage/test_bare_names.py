"""A bare executable name (``sh``, as real application files write it) costs a job no
extra write: the job records the command resolved in its own ``PATH`` when it is created,
and the executor, resolving it the same way, finds nothing to write back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus
from tests.factories import make_setup


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL every engine of ``db`` runs inside the block."""
    seen: list[str] = []
    engines = {id(e): e for e in (db.engine, db._write_engine)}.values()

    def record(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        seen.append(" ".join(sql.split()))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def test_a_bare_name_is_resolved_at_creation_and_never_written_back(any_db: Database) -> None:
    _, _, rt = make_setup(any_db, executable="sh", cmdparams="-c 'echo hello; echo err >&2'")
    job = create_job(any_db, any_db.settings, runtemplate_id=rt)
    path = next(v["value"] for v in job.env if v["name"] == "PATH")
    assert job.argv == [shutil.which("sh", path=path), "-c", "echo hello; echo err >&2"]
    claim = claim_job(any_db, job.id, new_worker_id("test"), any_db.settings.lease_seconds)
    with statements(any_db) as seen:
        assert JobRunner(any_db, any_db.settings, job_hooks=[]).perform_job(claim) == "success"
    rewrites = [s for s in seen if s.startswith("UPDATE job SET") and "argv" in s]
    assert rewrites == [], rewrites
    with any_db.read() as s:
        done = s.get_one(Job, job.id)
    assert (done.status, done.argv) == (JobStatus.SUCCESS, job.argv)


def test_a_name_not_found_at_creation_stays_as_written_and_fails_at_the_start(
    any_db: Database,
) -> None:
    _, _, rt = make_setup(any_db, executable="no-such-program-here", cmdparams="-x")
    job = create_job(any_db, any_db.settings, runtemplate_id=rt)
    assert job.argv == ["no-such-program-here", "-x"]
    claim = claim_job(any_db, job.id, new_worker_id("test"), any_db.settings.lease_seconds)
    assert JobRunner(any_db, any_db.settings, job_hooks=[]).perform_job(claim) == "failed"
    with any_db.read() as s:
        assert "executable not found: no-such-program-here" in s.get_one(Job, job.id).reason

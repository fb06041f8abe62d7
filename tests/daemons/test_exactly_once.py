"""Four executor daemons on one database run every job exactly once."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from tests.daemons.helpers import EXECUTOR, daemons, queue_jobs, statuses, unfinished, wait_until
from tests.factories import make_setup

JOBS = int(os.environ.get("MF_EXACTLY_ONCE_JOBS", "2000"))
EXECUTORS = 4
TEMPLATES = 20


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_four_executors_run_every_job_exactly_once(any_db: Database, tmp_path: Path) -> None:
    started_file = tmp_path / "started"
    # Each job appends its id with O_APPEND (>>): one line per process start.
    command = f"-c 'echo $MULTIFLEXI_JOB_ID >> {started_file}'"
    templates = [
        make_setup(any_db, executable="/bin/sh", cmdparams=command, overlap="allow")[2]
        for _ in range(TEMPLATES)
    ]
    argv = [EXECUTOR, "--max-parallel", "2"]
    with daemons(any_db, tmp_path, [argv] * EXECUTORS, MULTIFLEXI_LOG_LEVEL="warning") as procs:
        wait_until(
            lambda: all(p.proc.poll() is None for p in procs) and _registered(any_db),
            30,
            "the executors to register",
        )
        began = time.monotonic()
        jobs = queue_jobs(any_db, templates, JOBS)
        wait_until(lambda: unfinished(any_db) == 0, 600, "every job to finish", every=0.5)
        elapsed = time.monotonic() - began
        for proc in procs:
            proc.signal(signal.SIGTERM)
        assert [p.wait(60) for p in procs] == [0] * EXECUTORS, [p.log() for p in procs]
    print(f"\n{any_db.dialect}: {JOBS} jobs by {EXECUTORS} executors in {elapsed:.1f} s")
    starts = Counter(int(line) for line in started_file.read_text().split())
    assert set(starts) == set(jobs)
    assert [job for job, n in starts.items() if n > 1] == []
    assert set(statuses(any_db, jobs).values()) == {"success"}
    with any_db.read() as session:
        workers = Counter(session.scalars(select(Job.worker).where(Job.id.in_(jobs))))
    assert len(workers) >= 2, workers  # the executors really shared the queue


def _registered(db: Database) -> bool:
    from multiflexi.storage.models import Worker

    with db.read() as session:
        alive = session.scalar(
            select(func.count()).select_from(Worker).where(Worker.stopped.is_(None))
        )
    return int(alive or 0) >= EXECUTORS

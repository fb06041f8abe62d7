"""The database server restarted in the middle of a run: PostgreSQL
(``pg_ctlcluster ... restart``) and MariaDB (shutdown, then started again).

Two executor daemons and a scheduler work through ``MF_RESTART_JOBS`` probe jobs
(default 1,000, the issue's size: about 85 s per server). A third of the way in, the server restarts. The daemons
reconnect by themselves (they run jobs and beat in table ``worker`` after it); every job
completes exactly once, and what each finished job produced (stdout, result file) is
stored.

Restarting a shared server breaks other test runs on the machine: these tests run under
CI=true or with MF_RUN_RESTART_TESTS=1 only, and the server is brought back up in any
case.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from multiflexi.storage.database import Database
from multiflexi.storage.models import FINAL_STATUSES, Job, JobStatus, Worker
from multiflexi.storage.types import utcnow
from tests.conftest import IN_CI, ServerDatabases
from tests.daemons.helpers import EXECUTOR, SCHEDULER, daemons, queue_jobs, wait_until
from tests.factories import make_setup
from tests.reliability.helpers import (
    Probe,
    artifact_of,
    can_restart,
    database,
    ensure_server_up,
    kill_marked,
    more_templates,
    probe_output,
    probe_result,
    read_runs,
    restart_server,
    restarts_servers,
    stdout_of,
)

JOBS = int(os.environ.get("MF_RESTART_JOBS", "1000"))
#: Long enough for a heartbeat to survive the restart: no job is lost because of it.
LEASE = 20


@pytest.fixture(params=["pgsql", "mysql"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, server_databases: ServerDatabases
) -> Iterator[Database]:
    why = can_restart(request.param)
    if why is not None:
        if IN_CI:
            pytest.fail(f"cannot restart {request.param}: {why}")
        pytest.skip(f"cannot restart {request.param}: {why}")
    yield from database(request.param, tmp_path, server_databases)


def count(db: Database, *statuses: str, negate: bool = False) -> int:
    """How many jobs are in (or, with ``negate``, not in) the given states."""
    status = Job.status.not_in(statuses) if negate else Job.status.in_(statuses)
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(status)) or 0)


def beat_after(db: Database, worker: str, moment: datetime) -> bool:
    with db.read() as session:
        row = session.get(Worker, worker)
        return row is not None and row.heartbeat > moment


@restarts_servers
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_daemons_survive_a_database_restart_and_every_job_completes_exactly_once(
    db: Database, tmp_path: Path
) -> None:
    backend = db.dialect
    probe = Probe.create(tmp_path)
    setup = make_setup(db, executable="/bin/sh", cmdparams=probe.cmdparams(), overlap="allow")
    templates = more_templates(db, setup, 10, overlap="allow")
    # Minutely templates made an hour ago: the scheduler fires them at once.
    more_templates(db, setup, 4, interv="i", created=utcnow() - timedelta(hours=1))
    executors = ["restart-a", "restart-b"]
    argvs = [[EXECUTOR, "--max-parallel", "3", "--worker-id", w] for w in executors]
    argvs.append([SCHEDULER, "--worker-id", "restart-scheduler"])
    try:
        with daemons(db, tmp_path, argvs, MULTIFLEXI_LEASE_SECONDS=str(LEASE)) as procs:
            for proc in procs:
                proc.wait_for_log("action=start", timeout=60)
            first = queue_jobs(db, templates, JOBS)
            wait_until(
                lambda: count(db, JobStatus.SUCCESS) >= JOBS // 3,
                300,
                "a third of the jobs",
                every=0.2,
            )
            restart_server(backend)
            restarted = utcnow()
            done_before = count(db, JobStatus.SUCCESS)
            final = [str(s) for s in FINAL_STATUSES]
            wait_until(
                lambda: count(db, *final, negate=True) == 0,
                600,
                "every job to end after the restart",
                every=0.5,
            )
            for worker in [*executors, "restart-scheduler"]:
                wait_until(partial(beat_after, db, worker, restarted), 60, f"{worker} to beat")
            for proc in procs:
                assert proc.proc.poll() is None, proc.log()
                proc.signal(signal.SIGTERM)
            assert [p.wait(90) for p in procs] == [0] * len(procs), [p.log() for p in procs]
    finally:
        ensure_server_up(backend)
        kill_marked(probe.marker)
    print(f"\n{backend}: restarted after {done_before} of {JOBS} jobs")
    assert done_before < JOBS, "the restart came too late to matter"
    with db.read() as session:
        jobs = list(session.scalars(select(Job)))
    assert {j.status for j in jobs} == {JobStatus.SUCCESS}, [
        (j.id, j.status, j.reason) for j in jobs if j.status != JobStatus.SUCCESS
    ]
    assert set(first) <= {j.id for j in jobs}
    assert all(j.retry_of is None for j in jobs)  # nothing had to be run again
    runs = read_runs(probe.log)
    for job in jobs:
        assert len(runs.get(job.id, [])) == 1, (job.id, runs.get(job.id))
        assert stdout_of(db, job.id)[1] == probe_output(job.id, 1), job.id
        assert artifact_of(db, job.id, filename="result.txt")[1] == probe_result(job.id, 1)
    after = {j.worker for j in jobs if j.begin is not None and j.begin > restarted}
    assert after == set(executors), after  # both executors reconnected and worked

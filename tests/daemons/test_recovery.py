"""Lost workers: their jobs are marked lost, keep their output, and are retried; a
presumed-dead worker that comes back cannot overwrite the final state."""

from __future__ import annotations

import hashlib
import signal
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from multiflexi import queue
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import HOSTNAME, claim_job
from multiflexi.recovery import _mark_lost, requeue_lost
from multiflexi.storage import blobs
from multiflexi.storage.blobs import ChunkWriter, create_artifact
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Job, JobStatus
from multiflexi.storage.types import utcnow
from tests.daemons.helpers import EXECUTOR, daemons, kill_group, wait_until
from tests.factories import make_setup

#: First attempt: print, then hang (its executor gets killed); later attempts succeed.
FLAKY = (
    '-c \'import os, sys, time; n = os.environ["MULTIFLEXI_JOB_ATTEMPT"]; '
    'print("attempt", n, flush=True); n == "1" and time.sleep(120)\''
)


def stdout_of(db: Database, job_id: int) -> tuple[Artifact, bytes] | None:
    with db.read() as session:
        art = session.scalar(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == "stdout")
        )
    if art is None:
        return None
    return art, b"".join(blobs.iter_content(db, art.id))


def test_a_killed_executors_job_is_lost_keeps_its_output_and_is_retried(
    any_db: Database, tmp_path: Path
) -> None:
    _, _, rt = make_setup(any_db, cmdparams=FLAKY, max_attempts=2)
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    lease = {"MULTIFLEXI_LEASE_SECONDS": "2"}
    pid = None
    try:
        with daemons(any_db, tmp_path, [[EXECUTOR, "--worker-id", "doomed"]], **lease) as (a,):
            wait_until(
                lambda: (out := stdout_of(any_db, job_id)) is not None and b"attempt 1" in out[1],
                30,
                "the first attempt's output to be stored",
            )
            with any_db.read() as session:
                pid = session.get_one(Job, job_id).pid
            a.signal(signal.SIGKILL)
            a.wait(10)
        with daemons(any_db, tmp_path, [[EXECUTOR, "--worker-id", "rescuer"]], **lease) as (b,):

            def retry() -> Job | None:
                with any_db.read() as session:
                    return session.scalar(
                        select(Job).where(Job.retry_of == job_id, Job.status == "success")
                    )

            again = wait_until(retry, 60, "the lost job to be retried and succeed")
            b.signal(signal.SIGTERM)
            assert b.wait(30) == 0
    finally:
        kill_group(pid)
    with any_db.read() as session:
        lost = session.get_one(Job, job_id)
    assert lost.status == "lost"
    assert lost.reason == f"lost: worker doomed on {HOSTNAME} stopped renewing its lease"
    assert again.attempt == 2 and again.worker == "rescuer"
    found = stdout_of(any_db, job_id)
    assert found is not None
    art, content = found
    assert content == b"attempt 1\n"
    assert art.state == "complete" and art.size == len(content) and art.sha256
    assert "action=lost job_id=" in b.log()


def test_a_late_heartbeat_or_finish_never_overwrites_lost(any_db: Database) -> None:
    _, _, rt = make_setup(any_db, cmdparams="-c pass")
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    claim = claim_job(any_db, job_id, "sleepy", lease_seconds=60)
    with any_db.session() as session:  # the worker hangs: its lease runs out
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    assert requeue_lost(any_db, any_db.settings) == [job_id]
    assert requeue_lost(any_db, any_db.settings) == []  # marked once only
    # The worker wakes up: its heartbeat and its final write both lose.
    assert queue.heartbeat(any_db, claim, 60) is False
    runner = JobRunner(any_db, any_db.settings, job_hooks=[])
    assert runner._finish(claim, JobStatus.SUCCESS, "", None, 0) is False
    with any_db.read() as session:
        job = session.get_one(Job, job_id)
    assert job.status == "lost" and job.reason.startswith("lost: worker sleepy on ")
    assert job.exitcode is None


def test_requeue_lost_leaves_jobs_with_a_live_lease_alone(sqlite_db: Database) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams="-c pass")
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    claim_job(sqlite_db, job_id, "busy", lease_seconds=60)
    assert requeue_lost(sqlite_db, sqlite_db.settings) == []
    later = utcnow() + timedelta(seconds=61)
    assert requeue_lost(sqlite_db, sqlite_db.settings, later) == [job_id]


def test_a_lost_job_left_without_its_retry_gets_exactly_one(any_db: Database) -> None:
    import threading

    _, _, rt = make_setup(any_db, cmdparams="-c pass", max_attempts=3)
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    claim_job(any_db, job_id, "crashed", lease_seconds=60)
    with any_db.session() as session:  # marked lost, then its executor died: no retry
        session.execute(update(Job).where(Job.id == job_id).values(status="lost", end=utcnow()))
    barrier = threading.Barrier(4)

    def recover(name: str) -> None:
        barrier.wait(10)
        requeue_lost(any_db, any_db.settings, holder=name)

    threads = [threading.Thread(target=recover, args=(f"exec-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    requeue_lost(any_db, any_db.settings)
    with any_db.read() as session:
        retries = list(session.scalars(select(Job).where(Job.retry_of == job_id)))
    assert [(r.attempt, r.status) for r in retries] == [(2, "scheduled")]


def test_output_left_open_by_a_recovery_that_died_is_closed_by_the_next(
    any_db: Database,
) -> None:
    _, _, rt = make_setup(any_db, cmdparams="-c pass", max_attempts=1)
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    claim_job(any_db, job_id, "doomed", lease_seconds=60)
    values = {"job_id": job_id, "filename": "stdout.txt", "kind": "stdout", "state": "streaming"}
    values |= {"content_type": "text/plain", "note": "standard output of the job"}
    artifact_id = any_db.transact(lambda conn: create_artifact(conn, **values))
    ChunkWriter(any_db, artifact_id).append(b"half a line of out")
    moment = utcnow() + timedelta(seconds=61)  # the lease ran out
    # A recovering executor marks the job lost, then is killed before it closes the output.
    assert _mark_lost(any_db, job_id, "doomed", HOSTNAME, moment) == ([artifact_id], False)

    assert requeue_lost(any_db, any_db.settings, moment) == []  # nothing more to mark
    found = stdout_of(any_db, job_id)
    assert found is not None
    art, content = found
    assert content == b"half a line of out"
    assert (art.state, art.size) == ("complete", len(content))
    assert art.sha256 == hashlib.sha256(content).hexdigest()

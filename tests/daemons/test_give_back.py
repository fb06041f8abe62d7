"""Writes whose commit reached the database while the connection broke (a database
restart at that moment), so that their retry finds them done.

A claim leaves a job running under the executor's id that nothing runs: the executor puts
it back in the queue at its next beat and runs it once; jobs of its own and jobs of an
earlier process with the same id are left alone. A final write counts as done, an output
chunk is not stored twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from multiflexi import queue
from multiflexi.daemons.executor import ExecutorDaemon
from multiflexi.jobs.service import create_job
from multiflexi.storage import blobs
from multiflexi.storage.blobs import ChunkWriter, create_artifact
from multiflexi.storage.database import Database
from multiflexi.storage.models import ArtifactChunk, Job, JobStatus, RunTemplate, ScheduleEntry
from multiflexi.storage.types import utcnow
from tests.daemons.helpers import job
from tests.factories import make_setup


def _queued(db: Database, job_id: int) -> bool:
    with db.read() as session:
        return (
            session.scalar(select(ScheduleEntry.id).where(ScheduleEntry.job == job_id)) is not None
        )


def test_a_claim_nobody_heard_of_goes_back_to_the_queue_and_runs_once(any_db: Database) -> None:
    *_, rt = make_setup(any_db, executable="/bin/echo", cmdparams="ran", overlap="allow")
    executor = ExecutorDaemon(any_db, any_db.settings, worker_id="exec-gb", job_hooks=[])
    ghost = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    # The claim commits, but the executor's claim call "failed": it never learns of it.
    claim = queue.claim_next(any_db, "exec-gb", any_db.settings.lease_seconds)
    assert claim is not None and claim.job_id == ghost
    assert job(any_db, ghost).status == JobStatus.RUNNING

    executor._maintain(utcnow())  # the beat is due at once

    row = job(any_db, ghost)
    assert (row.status, row.worker, row.begin, row.lease_until) == (
        JobStatus.SCHEDULED,
        "",
        None,
        None,
    )
    assert _queued(any_db, ghost)
    executor.process()
    row = job(any_db, ghost)
    assert row.status == JobStatus.SUCCESS, row.reason
    assert executor.results == {"success": 1}
    assert not _queued(any_db, ghost)
    assert executor._mine == {ghost}  # until the next round sees it no longer running
    executor._give_back_unknown()
    assert executor._mine == set() and job(any_db, ghost).status == JobStatus.SUCCESS


def test_running_jobs_of_this_executor_and_of_an_earlier_one_are_left_alone(
    any_db: Database,
) -> None:
    *_, rt = make_setup(any_db, executable="/bin/echo", overlap="allow")
    # A job claimed under the same id before this process started: it may be running
    # still (its executor was killed); lease expiry and recovery decide about it.
    earlier = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    assert queue.claim_next(any_db, "exec-gb", 60) is not None
    with any_db.session() as session:
        session.execute(
            update(Job).where(Job.id == earlier).values(begin=utcnow() - timedelta(seconds=5))
        )
    executor = ExecutorDaemon(any_db, any_db.settings, worker_id="exec-gb", job_hooks=[])
    # A job this executor claimed and is running.
    own = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    assert queue.claim_next(any_db, "exec-gb", 60) is not None
    executor._mine.add(own)

    executor._give_back_unknown()

    assert job(any_db, earlier).status == JobStatus.RUNNING
    assert job(any_db, own).status == JobStatus.RUNNING
    assert not _queued(any_db, earlier) and not _queued(any_db, own)


def test_give_back_refuses_a_job_that_is_not_the_workers_running_job(any_db: Database) -> None:
    *_, rt = make_setup(any_db, executable="/bin/echo", overlap="allow")
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    assert not queue.give_back(any_db, job_id, "exec-gb")  # still queued: not taken
    assert queue.claim_next(any_db, "exec-other", 60) is not None
    assert not queue.give_back(any_db, job_id, "exec-gb")  # someone else's
    assert job(any_db, job_id).worker == "exec-other"
    assert queue.give_back(any_db, job_id, "exec-other")
    assert job(any_db, job_id).status == JobStatus.SCHEDULED and _queued(any_db, job_id)


def test_a_final_write_retried_after_its_commit_is_not_done_twice(any_db: Database) -> None:
    """The connection broke as the final write committed: its retry finds the job holding
    exactly this outcome, counts it as won, and neither stores the output again nor counts
    the job twice on its template."""
    *_, rt = make_setup(any_db, executable="/bin/echo", overlap="allow")
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    claim = queue.claim_next(any_db, "exec-gb", 60)
    assert claim is not None and claim.job_id == job_id
    outcome = queue.Outcome(status=JobStatus.SUCCESS, reason="", end=utcnow(), exitcode=0)
    outputs: list[int] = []

    def store_output(conn: object) -> None:
        outputs.append(job_id)

    assert queue.finish(any_db, claim, outcome, rt, before=store_output)
    assert queue.finish(any_db, claim, outcome, rt, before=store_output)  # the retry
    assert outputs == [job_id]
    with any_db.read() as session:
        counted = session.scalar(
            select(RunTemplate.successfull_jobs_count).where(RunTemplate.id == rt)
        )
    assert counted == 1
    # Another outcome is not ours: reported lost, the output still kept as before.
    other = queue.Outcome(status=JobStatus.FAILED, reason="", end=utcnow(), exitcode=1)
    assert not queue.finish(any_db, claim, other, rt, before=store_output)
    assert outputs == [job_id, job_id]
    assert job(any_db, job_id).status == JobStatus.SUCCESS


def test_an_output_chunk_retried_after_its_commit_is_stored_once(any_db: Database) -> None:
    """A chunk whose insert committed while the connection broke is found by the retry:
    the output goes on with the next chunk. A different chunk at that place is an error."""
    *_, rt = make_setup(any_db, executable="/bin/echo")
    job_id = create_job(any_db, any_db.settings, runtemplate_id=rt).id
    values = {"job_id": job_id, "filename": "stdout.txt", "kind": "stdout", "state": "streaming"}
    values |= {"content_type": "text/plain", "note": "standard output of the job"}
    artifact_id = any_db.transact(lambda conn: create_artifact(conn, **values))
    chunk = {"artifact_id": artifact_id, "seq": 0, "data": b"first", "created": utcnow()}
    any_db.transact(lambda conn: conn.execute(insert(ArtifactChunk), chunk))  # the lost answer
    writer = ChunkWriter(any_db, artifact_id)
    writer.append(b"first")  # its retry
    writer.append(b"second")
    writer.finish()
    assert b"".join(blobs.iter_content(any_db, artifact_id)) == b"firstsecond"
    stray = ChunkWriter(any_db, artifact_id)  # starts at seq 0 again: not the same bytes
    with pytest.raises(IntegrityError):
        stray.append(b"other")

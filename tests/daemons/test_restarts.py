"""Restarts lose nothing: jobs the platform interrupts run again, as real daemons show.

An executor stopped (SIGTERM) with a job longer than its shutdown grace, or killed
(SIGKILL) so that its job's lease runs out, interrupts a job that did nothing wrong. Such
a job is queued again whatever the template's retry policy (``max_attempts`` defaults to
1), unless the template says ``on_interrupt=fail``; the interrupted run stays on record,
linked to the one that replaced it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from multiflexi.jobs.lifecycle import STOPPED_REASON
from multiflexi.jobs.service import create_job
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Job, ScheduleEntry, Worker
from multiflexi.storage.types import utcnow
from multiflexi.workers import ALIVE_FACTOR, BEAT_SECONDS, list_workers
from tests.conftest import Cli, db_environment
from tests.daemons.helpers import EXECUTOR, daemons, job, kill_group, wait_until
from tests.factories import make_setup

#: First attempt: print to both streams, then hang; any later attempt succeeds at once.
HANGS_FIRST = (
    '-c \'import os, sys, time; n = os.environ["MULTIFLEXI_JOB_ATTEMPT"]; '
    'print("attempt", n, flush=True); print("err", n, file=sys.stderr, flush=True); '
    'n == "1" and time.sleep(120)\''
)
STOP_FAST = {"MULTIFLEXI_SHUTDOWN_GRACE": "1", "MULTIFLEXI_KILL_GRACE": "1"}


@pytest.fixture(params=["sqlite", "pgsql", "mysql"])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    yield request.getfixturevalue(f"{'pg' if request.param == 'pgsql' else request.param}_db")


@pytest.fixture
def db_cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(db_environment(db), monkeypatch)


def running(db: Database, job_id: int) -> bool:
    found = job(db, job_id)
    return found.status == "running" and found.pid is not None


def retry_of(db: Database, job_id: int) -> Job | None:
    with db.read() as session:
        return session.scalar(select(Job).where(Job.retry_of == job_id))


def stream(db: Database, job_id: int, kind: str) -> tuple[Artifact | None, bytes]:
    with db.read() as session:
        art = session.scalar(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == kind)
        )
    return art, b"" if art is None else b"".join(blobs.iter_content(db, art.id))


def test_a_job_cut_off_by_a_stopping_executor_runs_again_and_links_both_runs(
    db: Database, db_cli: Cli, tmp_path: Path
) -> None:
    _, _, rt = make_setup(db, cmdparams=HANGS_FIRST)  # max_attempts 1: no retry policy
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    with daemons(db, tmp_path, [[EXECUTOR]], **STOP_FAST) as (ex,):
        wait_until(lambda: running(db, job_id), 30, "the job to start")
        ex.signal(signal.SIGTERM)
        assert ex.wait(60) == 0, ex.log()
    cut = job(db, job_id)
    assert (cut.status, cut.reason) == ("failed", STOPPED_REASON)
    again = retry_of(db, job_id)
    assert again is not None and again.status == "scheduled" and again.attempt == 2
    # The next executor runs it.
    with daemons(db, tmp_path, [[EXECUTOR, "--once"]]) as (once,):
        assert once.wait(60) == 0, once.log()
    assert job(db, again.id).status == "success"
    shown = db_cli.ok("job:show", job_id).stdout
    assert re.search(rf"^retried by +{again.id}$", shown, re.M), shown
    assert re.search(r"^interrupted +yes$", shown, re.M), shown
    back = db_cli.ok("job:show", again.id).stdout
    assert re.search(rf"^retry of +{job_id}$", back, re.M), back
    record = db_cli.json("job:show", job_id)
    assert record["retried_by"] == again.id and record["interrupted"] is True


def test_a_template_that_must_not_run_twice_is_not_requeued(
    db: Database, db_cli: Cli, tmp_path: Path
) -> None:
    _, _, rt = make_setup(db, cmdparams=HANGS_FIRST, max_attempts=3)
    db_cli.ok("run-template:update", rt, "--on-interrupt", "fail")
    assert db_cli.json("runtemplate:show", rt)["on_interrupt"] == "fail"
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    with daemons(db, tmp_path, [[EXECUTOR]], **STOP_FAST) as (ex,):
        wait_until(lambda: running(db, job_id), 30, "the job to start")
        ex.signal(signal.SIGTERM)
        assert ex.wait(60) == 0, ex.log()
    assert job(db, job_id).status == "failed"
    assert retry_of(db, job_id) is None


def test_a_killed_executors_job_is_lost_keeps_its_stderr_and_runs_again(
    db: Database, db_cli: Cli, tmp_path: Path
) -> None:
    _, _, rt = make_setup(db, cmdparams=HANGS_FIRST)  # max_attempts 1
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    lease = {"MULTIFLEXI_LEASE_SECONDS": "2"}
    pid = None
    try:
        with daemons(db, tmp_path, [[EXECUTOR, "--worker-id", "doomed"]], **lease) as (a,):
            wait_until(
                lambda: b"err 1" in stream(db, job_id, "stderr")[1], 30, "stderr to be stored"
            )
            pid = job(db, job_id).pid
            a.signal(signal.SIGKILL)
            a.wait(10)
        kill_group(pid)  # as systemd's KillMode would
        with daemons(db, tmp_path, [[EXECUTOR, "--worker-id", "rescuer"]], **lease) as (b,):

            def done() -> Job | None:
                found = retry_of(db, job_id)
                return found if found is not None and found.status == "success" else None

            again = wait_until(done, 60, "the lost job to run again and succeed")
            b.signal(signal.SIGTERM)
            assert b.wait(30) == 0, b.log()
    finally:
        kill_group(pid)
    assert job(db, job_id).status == "lost"
    assert again.attempt == 2 and again.worker == "rescuer"
    art, content = stream(db, job_id, "stderr")
    assert art is not None and art.state == "complete" and content == b"err 1\n"
    assert db_cli.json("job:show", again.id)["retry_of"] == job_id
    # Three missed beats later, the killed one reads crashed, the stopped one stopped.
    later = utcnow() + timedelta(seconds=ALIVE_FACTOR * BEAT_SECONDS + 1)
    with db.read() as session:
        seen = {w["id"]: w["state"] for w in list_workers(session, later)}
    assert seen == {"doomed": "crashed", "rescuer": "stopped"}


def test_a_job_lost_before_it_stored_any_output_still_has_both_outputs(
    sqlite_db: Database,
) -> None:
    from multiflexi.queue import claim_job
    from multiflexi.recovery import requeue_lost

    _, _, rt = make_setup(sqlite_db, cmdparams="-c pass")
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    claim_job(sqlite_db, job_id, "gone", lease_seconds=60)
    assert requeue_lost(sqlite_db, sqlite_db.settings, utcnow() + timedelta(seconds=61)) == [job_id]
    for kind in ("stdout", "stderr"):
        art, content = stream(sqlite_db, job_id, kind)
        assert art is not None and art.filename == f"{kind}.txt"
        assert (art.state, art.size, content) == ("complete", 0, b"")


def test_a_draining_executor_keeps_beating_and_reads_draining(
    sqlite_db: Database, cli: Cli, tmp_path: Path
) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams=HANGS_FIRST)
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    extra = {"MULTIFLEXI_SHUTDOWN_GRACE": "30", "MULTIFLEXI_KILL_GRACE": "1"}
    with daemons(sqlite_db, tmp_path, [[EXECUTOR, "--worker-id", "drainer"]], **extra) as (ex,):
        wait_until(lambda: running(sqlite_db, job_id), 30, "the job to start")
        ex.signal(signal.SIGTERM)
        ex.wait_for_log("action=drain")

        def beat_after_drain() -> bool:
            with sqlite_db.read() as session:
                w = session.get_one(Worker, "drainer")
            return w.state == "draining" and w.heartbeat > w.started

        wait_until(beat_after_drain, 30, "the draining state")
        first = job(sqlite_db, job_id)
        with sqlite_db.read() as session:
            before = session.get_one(Worker, "drainer").heartbeat
        # Three beat intervals later it is still alive, and says why it is still there.
        wait_until(
            lambda: _beat(sqlite_db) > before + timedelta(seconds=2 * BEAT_SECONDS),
            4 * BEAT_SECONDS,
            "beats during the drain",
            every=0.5,
        )
        shown = cli.json("status")["daemons"]
        assert [(d["id"], d["state"], d["alive"]) for d in shown] == [("drainer", "draining", True)]
        assert "draining" in cli.ok("status").stdout
        ex.signal(signal.SIGTERM)  # a second signal: cancel now
        assert ex.wait(30) == 0, ex.log()
    assert first.status == "running"
    shown = cli.json("status")["daemons"]
    assert [(d["id"], d["state"], d["alive"]) for d in shown] == [("drainer", "stopped", False)]


def _beat(db: Database) -> datetime:
    with db.read() as session:
        return session.get_one(Worker, "drainer").heartbeat


def test_every_executor_cleans_its_own_job_root_at_start(db: Database, tmp_path: Path) -> None:
    """Two hosts (two executors, each with its own job root), housekeeping switched off:
    each removes the leftovers of its own root, and nothing of a job not yet finished."""
    _, _, rt = make_setup(db, cmdparams="-c pass")
    finished = create_job(db, db.settings, runtemplate_id=rt).id
    waiting = create_job(db, db.settings, runtemplate_id=rt, at=utcnow() + timedelta(hours=1)).id
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == finished)
            .values(status="success", end=utcnow() - timedelta(hours=2))
        )
        session.execute(delete(ScheduleEntry).where(ScheduleEntry.job == finished))
    roots = [tmp_path / "host-a" / "jobs", tmp_path / "host-b" / "jobs"]
    stale = (utcnow() - timedelta(hours=2)).timestamp()
    for root in roots:
        for name in (str(finished), str(waiting), "424242"):
            (root / name).mkdir(parents=True)
            (root / name / "half-written.csv").write_text("x")
        os.utime(root / "424242", (stale, stale))  # a job deleted long ago
    argvs = [[EXECUTOR, "--worker-id", f"host-{i}"] for i in range(2)]
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                daemons(db, tmp_path / f"host-{n}", [argv], MULTIFLEXI_JOBS_DIR=str(root))
            )[0]
            for n, argv, root in zip("ab", argvs, roots, strict=True)
        ]
        for ex in started:
            ex.wait_for_log("action=clean_job_root")
            assert "removed=2" in ex.log(), ex.log()
            ex.signal(signal.SIGTERM)
            assert ex.wait(30) == 0
    for root in roots:
        assert sorted(p.name for p in root.iterdir()) == [str(waiting)]

"""``job:cancel`` and ``job:delete --force`` with real executor daemons (and a real
``job:run`` process) on SQLite and PostgreSQL: a waiting job is cancelled at once, a
running one is stopped by whichever executor runs it within its heartbeat (at once on
PostgreSQL), recorded ``cancelled`` with who asked and when, never retried, and nothing
of it is left running.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from multiflexi import recovery
from multiflexi.jobs.cancel import requester
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus, RunTemplate
from multiflexi.storage.types import utcnow
from tests.conftest import Cli, ServerDatabases, db_environment, open_database
from tests.daemons.helpers import (
    BIN,
    EXECUTOR,
    Daemon,
    daemon_env,
    daemons,
    job,
    wait_until,
)
from tests.factories import make_script, make_setup
from tests.reliability.helpers import assert_nothing_left, kill_marked, log_problems, stdout_of

#: A heartbeat every second (a third of the lease), a short kill grace.
FAST = {"MULTIFLEXI_LEASE_SECONDS": "3", "MULTIFLEXI_KILL_GRACE": "2"}

#: Prints, starts a child in its process group, and waits for a long time.
WAITER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[1]])
print("started", flush=True)
time.sleep(300)
"""


@pytest.fixture(params=["sqlite", "pgsql"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, server_databases: ServerDatabases
) -> Iterator[Database]:
    found = open_database(request.param, tmp_path, server_databases)
    yield found
    found.dispose()


@pytest.fixture
def marker() -> str:
    return f"mfcancel-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cli_on(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(db_environment(db), monkeypatch)


def waiter(db: Database, tmp_path: Path, marker: str, **options: object) -> int:
    script = make_script(tmp_path, WAITER, "waiter.py")
    return make_setup(db, cmdparams=f"{script} {marker}", **options)[2]


def started(db: Database, job_id: int) -> bool:
    found = job(db, job_id)
    return found.status == JobStatus.RUNNING and stdout_of(db, job_id)[0] is not None


def running(db: Database, job_id: int, timeout: float = 30) -> None:
    """Wait until the job runs and its first output is stored (its process is up)."""
    wait_until(lambda: started(db, job_id), timeout, f"job {job_id} to run")


def test_a_waiting_job_is_cancelled_at_once_and_never_runs(
    db: Database, cli_on: Cli, tmp_path: Path, marker: str
) -> None:
    rt = waiter(db, tmp_path, marker)
    job_id = create_job(db, db.settings, runtemplate_id=rt, at=utcnow() + timedelta(seconds=2)).id
    res = cli_on("job:cancel", job_id)
    assert res.exit_code == 0, res.stderr
    assert "cancelled (it had not started)" in res.stdout
    found = job(db, job_id)
    assert found.status == JobStatus.CANCELLED
    assert found.reason.startswith(f"cancelled by {requester()} at ")
    with daemons(db, tmp_path, [[EXECUTOR, "--once"]]) as (executor,):
        time.sleep(2.5)
        assert executor.wait(60) == 0
    assert job(db, job_id).begin is None  # never claimed
    again = cli_on.json("job:cancel", job_id)
    assert (again["outcome"], again["status"]) == ("final", "cancelled")


def test_a_running_job_is_stopped_by_its_executor_within_a_heartbeat(
    db: Database, cli_on: Cli, tmp_path: Path, marker: str
) -> None:
    rt = waiter(db, tmp_path, marker, max_attempts=3)
    try:
        with daemons(db, tmp_path, [[EXECUTOR]], **FAST) as (executor,):
            job_id = create_job(db, db.settings, runtemplate_id=rt).id
            running(db, job_id)
            asked = time.monotonic()
            res = cli_on("job:cancel", "--id", job_id, "-f", "json")
            took = time.monotonic() - asked
            assert res.exit_code == 0, res.stderr
            assert res.json()["status"] == "cancelled"
            assert_nothing_left(marker)
        # A heartbeat (1 s), the job stops at SIGTERM, and the command sees it (it looks
        # every 0.2 s): a few seconds, with room for a loaded machine.
        assert took < 10, took
        found = job(db, job_id)
        assert found.status == JobStatus.CANCELLED
        assert found.cancel_by == requester()
        assert found.reason.startswith(f"cancelled by {requester()} at ")
        assert found.signal == signal.SIGTERM
        assert stdout_of(db, job_id)[1] == b"started\n"  # the output so far is kept
        with db.read() as session:
            assert session.scalar(select(Job.id).where(Job.retry_of == job_id)) is None
            rt_row = session.get_one(RunTemplate, rt)
            assert (rt_row.successfull_jobs_count, rt_row.failed_jobs_count) == (0, 0)
        assert "action=cancel_requested" in executor.log()
        assert log_problems(executor.log()) == []
    finally:
        kill_marked(marker)


def test_a_cancel_reaches_an_executor_on_postgresql_at_once(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, marker: str
) -> None:
    """With the default lease (60 s: a heartbeat every 20 s) the request still arrives
    at once: the executor LISTENs for it."""
    cli = Cli(db_environment(pg_db), monkeypatch)
    rt = waiter(pg_db, tmp_path, marker)
    try:
        with daemons(pg_db, tmp_path, [[EXECUTOR]], MULTIFLEXI_KILL_GRACE="2") as (executor,):
            executor.wait_for_log("action=start")
            job_id = create_job(pg_db, pg_db.settings, runtemplate_id=rt).id
            running(pg_db, job_id)
            asked = time.monotonic()
            cli.ok("job:cancel", job_id)
            # Its next heartbeat is some 19 s away.
            assert time.monotonic() - asked < 10
            assert_nothing_left(marker)
    finally:
        kill_marked(marker)
    assert job(pg_db, job_id).status == JobStatus.CANCELLED


def test_a_job_run_process_stops_its_job_when_another_process_cancels_it(
    db: Database, cli_on: Cli, tmp_path: Path, marker: str
) -> None:
    rt = waiter(db, tmp_path, marker)
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    env = daemon_env(db, **FAST)
    try:
        with (tmp_path / "run.stderr").open("wb") as err:
            proc = subprocess.Popen(
                [str(BIN / "multiflexi-cli"), "job:run", str(job_id)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                running(db, job_id)
                cli_on.ok("job:cancel", job_id)
                assert proc.wait(30) == 1
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(30)
        assert_nothing_left(marker)
    finally:
        kill_marked(marker)
    assert job(db, job_id).status == JobStatus.CANCELLED
    assert "cancelled by" in (tmp_path / "run.stderr").read_text()


def test_deleting_a_running_job_is_refused_unless_forced_and_forced_leaves_nothing_running(
    db: Database, cli_on: Cli, tmp_path: Path, marker: str
) -> None:
    rt = waiter(db, tmp_path, marker)
    try:
        with daemons(db, tmp_path, [[EXECUTOR]], **FAST) as (executor,):
            job_id = create_job(db, db.settings, runtemplate_id=rt).id
            running(db, job_id)
            refused = cli_on("job:delete", job_id)
            assert refused.exit_code == 1
            assert f"job {job_id} is running" in refused.stderr
            assert "--force" in refused.stderr
            assert job(db, job_id).status == JobStatus.RUNNING
            res = cli_on("job:delete", job_id, "--force")
            assert res.exit_code == 0, res.stderr
            assert f"Job {job_id} cancelled (cancelled by {requester()}" in res.stdout
            assert_nothing_left(marker)  # gone before the command returned
            with db.read() as session:
                assert session.get(Job, job_id) is None
            # The executor finished the job before the row went: it goes on working.
            nxt = create_job(db, db.settings, runtemplate_id=make_setup(db, cmdparams="-c 1")[2])
            wait_until(lambda: job(db, nxt.id).status == JobStatus.SUCCESS, 30, "next job")
        assert log_problems(executor.log()) == []
    finally:
        kill_marked(marker)


def test_a_cancelled_job_whose_executor_died_is_recorded_cancelled_by_recovery(
    db: Database, cli_on: Cli, tmp_path: Path, marker: str
) -> None:
    rt = waiter(db, tmp_path, marker, max_attempts=3)
    try:
        with daemons(db, tmp_path, [[EXECUTOR]], **FAST) as (executor,):
            job_id = create_job(db, db.settings, runtemplate_id=rt).id
            running(db, job_id)
            executor.signal(signal.SIGKILL)
            executor.wait(10)
        res = cli_on("job:cancel", job_id, "--timeout", "0")
        assert res.exit_code == 1
        assert "still running after 0 s" in res.stderr
        recovery.requeue_lost(db, db.settings, utcnow() + timedelta(seconds=10))
    finally:
        kill_marked(marker)
    found = job(db, job_id)
    assert found.status == JobStatus.CANCELLED
    assert found.reason.startswith(f"cancelled by {requester()} at ")
    assert "stopped renewing its lease" in found.reason
    with db.read() as session:
        assert session.scalar(select(Job.id).where(Job.retry_of == job_id)) is None


def test_two_executors_each_stop_only_the_cancelled_job(
    db: Database, cli_on: Cli, tmp_path: Path, marker: str
) -> None:
    """Two executor processes (as two hosts would run them): the one that runs the
    cancelled job stops it; the other job runs on."""
    first = waiter(db, tmp_path, f"{marker}-a")
    second = waiter(db, tmp_path, f"{marker}-b")
    env = daemon_env(db, **FAST)
    runners = [
        Daemon([EXECUTOR, "--max-parallel", "1"], env, tmp_path / f"executor-{i}.log")
        for i in range(2)
    ]
    try:
        one = create_job(db, db.settings, runtemplate_id=first).id
        two = create_job(db, db.settings, runtemplate_id=second).id
        running(db, one)
        running(db, two)
        assert job(db, one).worker != job(db, two).worker
        cli_on.ok("job:cancel", one)
        assert_nothing_left(f"{marker}-a")
        assert job(db, two).status == JobStatus.RUNNING
        assert any(r.proc.poll() is None for r in runners)
    finally:
        for runner in runners:
            runner.stop()
        kill_marked(marker)
    assert job(db, one).status == JobStatus.CANCELLED

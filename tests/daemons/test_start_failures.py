"""A claimed job the executor cannot start -- whatever the fault -- ends ``failed`` with
the reason at once, instead of staying ``running`` until its lease runs out and being
called ``lost`` with a wrong reason (issue 32, item 2)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from multiflexi import workers
from multiflexi.daemons.executor import ExecutorDaemon
from multiflexi.daemons.loop import Backoff, run_loop
from multiflexi.jobs.runner import JobRunner
from multiflexi.storage.database import Database
from multiflexi.storage.models import Worker
from tests.conftest import Cli, db_environment
from tests.daemons.helpers import job, queue_jobs
from tests.factories import make_setup


def test_a_job_whose_start_fails_unexpectedly_ends_failed_with_the_reason(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    *_, rt = make_setup(any_db, executable="/bin/true", overlap="allow")
    broken, fine = queue_jobs(any_db, [rt], 2)
    real = JobRunner.run_begin

    def run_begin(self: JobRunner, claim):  # type: ignore[no-untyped-def]
        if claim.job_id == broken:
            raise RuntimeError("the job directory's disk\nvanished")
        return real(self, claim)

    monkeypatch.setattr(JobRunner, "run_begin", run_begin)
    executor = ExecutorDaemon(any_db, any_db.settings, worker_id="exec-start", job_hooks=[])
    executor.process()

    failed = job(any_db, broken)
    assert failed.status == "failed" and failed.end is not None
    assert failed.reason == "internal error: RuntimeError: the job directory's disk vanished"
    assert job(any_db, fine).status == "success"
    assert executor.results == {"failed": 1, "success": 1}


def test_a_daemons_failed_step_or_reload_is_in_its_worker_row_and_in_status(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("MULTIFLEXI_NO_SUCH_SETTING=1\n")
    workers.register(sqlite_db, "exec-errors", "executor")
    executor = ExecutorDaemon(
        sqlite_db,
        dataclasses.replace(sqlite_db.settings, env_file=bad),
        worker_id="exec-errors",
        job_hooks=[],
    )
    executor.reload()
    with sqlite_db.read() as session:
        row = session.get_one(Worker, "exec-errors")
    assert row.last_error is not None and row.last_error_at is not None
    assert row.last_error.startswith("reload (the old settings stay): ")

    calls = iter([RuntimeError("database went away"), None])
    done = threading.Event()

    def step(now: object) -> bool:
        fault = next(calls)
        if fault is not None:
            raise fault
        done.set()
        return False

    run_loop(
        step,
        wake=threading.Event(),
        stopping=done.is_set,
        idle=lambda now: 0.0,
        backoff=Backoff(0.01, 0.01),
        on_error=lambda exc: executor.errors.failed("step", exc),
    )
    with sqlite_db.read() as session:
        assert session.get_one(Worker, "exec-errors").last_error == "step: database went away"
    [daemon] = Cli(db_environment(sqlite_db), monkeypatch).json("status")["daemons"]
    assert daemon["last_error"] == "step: database went away"

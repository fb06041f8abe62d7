"""Short jobs back to back: the thread of a finished short job claims and runs the next
one itself, within the concurrency cap and ``--limit``, each job exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from multiflexi import queue
from multiflexi.daemons.executor import ExecutorDaemon
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import JobStatus
from tests.daemons.helpers import job
from tests.factories import make_setup
from tests.reliability.helpers import stdout_of


class Watch:
    """Wraps the runner's ``perform_job``: which threads ran jobs, how many at once."""

    def __init__(self, executor: ExecutorDaemon) -> None:
        self.threads: Counter[int] = Counter()
        self.jobs: Counter[int] = Counter()
        self.now = self.most = 0
        self._lock = threading.Lock()
        inner = executor.runner.perform_job

        def perform(claim, **kw):  # type: ignore[no-untyped-def]
            with self._lock:
                self.threads[threading.get_ident()] += 1
                self.jobs[claim.job_id] += 1
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return inner(claim, **kw)
            finally:
                with self._lock:
                    self.now -= 1

        executor.runner.perform_job = perform  # type: ignore[method-assign]


def _executor(db: Database, parallel: int, limit: int | None = None) -> ExecutorDaemon:
    executor = ExecutorDaemon(
        db, db.settings, worker_id="exec-short", max_parallel=parallel, limit=limit, job_hooks=[]
    )
    executor.pool.OVERLAP_AFTER = 60.0  # every job counts as short, however slow the host
    return executor


def test_one_slot_runs_short_jobs_one_after_another_on_one_thread(any_db: Database) -> None:
    *_, rt = make_setup(any_db, executable="/bin/echo", cmdparams="ran", overlap="allow")
    ids = [create_job(any_db, any_db.settings, runtemplate_id=rt).id for _ in range(12)]
    executor = _executor(any_db, 1)
    watch = Watch(executor)
    executor.process()
    assert executor.results == {"success": 12}
    assert watch.jobs == {job_id: 1 for job_id in ids}
    assert len(watch.threads) == 1 and watch.most == 1
    assert all(job(any_db, job_id).status == JobStatus.SUCCESS for job_id in ids)


@pytest.mark.parametrize("parallel", [2, 3])
def test_refills_keep_to_the_concurrency_cap(sqlite_db: Database, parallel: int) -> None:
    *_, rt = make_setup(sqlite_db, executable="/bin/echo", cmdparams="ran", overlap="allow")
    ids = [create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id for _ in range(15)]
    executor = _executor(sqlite_db, parallel)
    watch = Watch(executor)
    executor.process()
    assert executor.results == {"success": 15}
    assert watch.jobs == {job_id: 1 for job_id in ids}
    assert 1 <= watch.most <= parallel and len(watch.threads) <= parallel


def test_refills_stop_at_the_limit(sqlite_db: Database) -> None:
    *_, rt = make_setup(sqlite_db, executable="/bin/echo", cmdparams="ran", overlap="allow")
    ids = [create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id for _ in range(8)]
    executor = _executor(sqlite_db, 1, limit=3)
    watch = Watch(executor)
    executor.process()
    assert executor.results == {"success": 3} and executor.claims == 3
    assert sorted(watch.jobs) == ids[:3]
    assert [job(sqlite_db, job_id).status for job_id in ids[3:]] == [JobStatus.SCHEDULED] * 5


def test_a_short_jobs_successor_is_claimed_with_its_final_status(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One write transaction per job: the claiming loop claims the first job, every
    later one is claimed by the transaction that finishes the job before it."""
    *_, rt = make_setup(any_db, executable="/bin/echo", cmdparams="ran", overlap="allow")
    ids = [create_job(any_db, any_db.settings, runtemplate_id=rt).id for _ in range(10)]
    calls: Counter[str] = Counter()
    for name in ("claim_next", "claim_next_in"):
        inner = getattr(queue, name)

        def counted(*args, _inner=inner, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _inner(*args, **kwargs)

        monkeypatch.setattr(queue, name, counted)
    executor = _executor(any_db, 1)
    executor.sweeper.GATHER = 30.0  # directories wait for process()'s flush
    watch = Watch(executor)
    executor.process()
    assert executor.results == {"success": 10} and executor.claims == 10
    assert [Path(job(any_db, job_id).workdir).exists() for job_id in ids] == [False] * 10
    assert watch.jobs == {job_id: 1 for job_id in ids} and len(watch.threads) == 1
    # The loop claims the first job; each job's finish claims the next, the last one's
    # finds none. A finish that meets the claiming lock taken (the loop's first give-back
    # check) leaves its successor to a claim of its own: one or two at most.
    assert calls["claim_next_in"] >= 8
    assert calls["claim_next"] <= 4
    assert executor.claimed == ids


def test_a_templates_next_job_takes_the_emptied_directory(sqlite_db: Database) -> None:
    """Each job prints its directory's inode and mode: the next job of the same template
    gets the same directory, renamed, unless the job before left it changed; a job of
    another template never gets it."""
    show = "stat -c '%i %a' .; ls -A"
    _, _, plain = make_setup(sqlite_db, executable="/bin/sh", cmdparams=f'-c "{show}"')
    _, _, other = make_setup(sqlite_db, executable="/bin/sh", cmdparams=f'-c "{show}"')
    _, _, subdir = make_setup(sqlite_db, executable="/bin/sh", cmdparams=f'-c "{show}; mkdir sub"')
    _, _, opened = make_setup(
        sqlite_db, executable="/bin/sh", cmdparams=f'-c "{show}; chmod 755 ."'
    )
    order = [plain, other] * 3 + [subdir] * 3 + [opened] * 3
    ids = [create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id for rt in order]
    executor = _executor(sqlite_db, 1)
    executor.sweeper.GATHER = 30.0  # nothing removed before process()'s flush
    executor.process()
    assert executor.results == {"success": len(ids)}
    seen = [stdout_of(sqlite_db, job_id)[1].decode().split() for job_id in ids]
    assert all(len(out) == 2 and out[1] == "700" for out in seen)  # empty and private
    inodes = [out[0] for out in seen]
    assert len(set(inodes[0:6:2])) == 1 and len(set(inodes[1:6:2])) == 1
    assert inodes[0] != inodes[1]
    assert len(set(inodes[6:9])) == 3 and len(set(inodes[9:12])) == 3
    assert not any(Path(job(sqlite_db, job_id).workdir).exists() for job_id in ids)

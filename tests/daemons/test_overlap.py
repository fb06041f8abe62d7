"""The overlap policy of a run template holds across two executor daemons."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from multiflexi.jobs.service import create_job
from multiflexi.queue import SKIP_REASON
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from tests.daemons.helpers import EXECUTOR, all_final, daemons, queue_jobs, statuses, wait_until
from tests.factories import make_setup

#: Records when it ran: "<start> <end>" in seconds since the epoch, appended atomically.
SPAN = (
    "-c 'import os, sys, time; s = time.time(); time.sleep(float(sys.argv[1])); "
    "fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT); "
    'os.write(fd, f"{{s}} {{time.time()}}\\n".encode())\' {} {}'
)


def spans(path: Path) -> list[tuple[float, float]]:
    pairs = [line.split() for line in path.read_text().splitlines()]
    return sorted((float(a), float(b)) for a, b in pairs)


def most_at_once(runs: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


TWO = [[EXECUTOR, "--max-parallel", "3"]] * 2


@pytest.mark.parametrize("policy", ["forbid", "allow"])
def test_two_executors_keep_to_the_overlap_policy(
    sqlite_db: Database, tmp_path: Path, policy: str
) -> None:
    log = tmp_path / "spans"
    _, _, rt = make_setup(sqlite_db, cmdparams=SPAN.format(0.3, log), overlap=policy)
    with daemons(sqlite_db, tmp_path, TWO) as procs:
        for proc in procs:
            proc.wait_for_log("action=start")
        jobs = queue_jobs(sqlite_db, [rt], 5)
        wait_until(lambda: all_final(sqlite_db, jobs), 60, "the jobs to finish")
        for proc in procs:
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    assert set(statuses(sqlite_db, jobs).values()) == {"success"}
    runs = spans(log)
    assert len(runs) == 5
    if policy == "forbid":
        assert most_at_once(runs) == 1, runs
    else:
        assert most_at_once(runs) >= 2, runs


def test_skip_cancels_a_due_job_while_the_previous_run_is_going(
    any_db: Database, tmp_path: Path
) -> None:
    log = tmp_path / "spans"
    _, _, rt = make_setup(any_db, cmdparams=SPAN.format(2, log), overlap="skip")
    with daemons(any_db, tmp_path, TWO) as procs:
        first = create_job(any_db, any_db.settings, runtemplate_id=rt).id
        wait_until(lambda: statuses(any_db, [first])[first] == "running", 30, "the first run")
        second = create_job(any_db, any_db.settings, runtemplate_id=rt).id
        wait_until(lambda: all_final(any_db, [first, second]), 60, "both jobs to end")
        for proc in procs:
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    with any_db.read() as session:
        skipped = session.get_one(Job, second)
    assert statuses(any_db, [first])[first] == "success"
    assert skipped.status == "cancelled" and skipped.reason == SKIP_REASON
    assert len(spans(log)) == 1

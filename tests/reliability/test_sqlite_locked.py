"""SQLite held locked by another writer for 5 s: everybody waits, nobody fails.

A separate process takes ``BEGIN EXCLUSIVE`` on the database file and holds it for
5 s while an executor daemon is streaming a job's output, jobs fall due to be claimed and
a user creates a job with the CLI. Writers wait (SQLite's busy timeout, then
``Database.run``'s retries with backoff); no error reaches the user or the daemon's log,
and no job or output is lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus
from multiflexi.storage.types import utcnow
from tests.daemons.helpers import (
    BIN,
    EXECUTOR,
    all_final,
    daemon_env,
    daemons,
    queue_jobs,
    statuses,
    wait_until,
)
from tests.factories import make_setup
from tests.reliability.helpers import log_problems, stdout_of

LOCK_SECONDS = 5.0
CLI = str(BIN / "multiflexi-cli")
#: Prints a numbered line every 0.1 s for 8 s: its output is flushed during the lock.
STREAMER = "-c 'import time\nfor i in range(80):\n print(i, flush=True); time.sleep(0.1)'"
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""


def test_a_five_second_exclusive_lock_delays_writers_but_fails_nothing(
    sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    _, _, streaming = make_setup(db, cmdparams=STREAMER)
    _, _, quick = make_setup(db, cmdparams="-c 'print(\"quick\")'", overlap="allow")
    env = daemon_env(db)
    with daemons(db, tmp_path, [[EXECUTOR, "--max-parallel", "4"]]) as (executor,):
        executor.wait_for_log("action=start")
        streamer = create_job(db, db.settings, runtemplate_id=streaming).id
        wait_until(lambda: b"3\n" in stdout_of(db, streamer)[1], 60, "the streamer's output")
        # Due in the middle of the lock: their claims must wait for it.
        waiting = queue_jobs(db, [quick], 20, at=utcnow() + timedelta(seconds=2))
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db.settings.sqlite_path), str(LOCK_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None
            assert locker.stdout.readline().strip() == "locked"
            locked_at = time.monotonic()
            created = subprocess.run(
                [CLI, "job:create", "--template", str(quick), "-f", "json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            cli_done = time.monotonic()
            listed = subprocess.run(
                [CLI, "job:list", "--limit", "5", "-f", "json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert locker.stdout.readline().strip() == "released"
            assert locker.wait(30) == 0
        finally:
            if locker.poll() is None:
                locker.kill()
            locker.wait()
            if locker.stdout is not None:
                locker.stdout.close()
        assert created.returncode == 0 and created.stderr == "", created.stderr
        # The CLI really had to wait for the lock (it started while it was held).
        assert cli_done - locked_at >= LOCK_SECONDS - 1.0
        assert listed.returncode == 0 and listed.stderr == "", listed.stderr
        cli_job = int(json.loads(created.stdout)["job_id"])
        everything = [streamer, cli_job, *waiting]
        wait_until(lambda: all_final(db, everything), 120, "every job to end", every=0.2)
    assert set(statuses(db, everything).values()) == {JobStatus.SUCCESS}
    art, content = stdout_of(db, streamer)
    assert content == "".join(f"{i}\n" for i in range(80)).encode()
    assert art is not None and art.state == "complete" and art.size == len(content)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == len(everything)
    assert log_problems(executor.log()) == []

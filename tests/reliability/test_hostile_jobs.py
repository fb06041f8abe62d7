"""Jobs that fight back, run by the real executor daemon: one ignores SIGTERM past its
timeout, one leaves a grandchild holding its stdout open, two start daemons that leave
the process group. Each still ends on time, nothing it started is left running (checked
in the process table by a marker argument), and no pipe hangs the executor: it runs the
next job at once.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus
from tests.daemons.helpers import EXECUTOR, all_final, daemons, wait_until
from tests.factories import make_script, make_setup
from tests.reliability.helpers import assert_nothing_left, kill_marked, log_problems, stdout_of

KILL_GRACE = 1.0

#: Ignores SIGTERM, and so does the child it starts in its own process group.
IGNORES_TERM = """
import signal, subprocess, sys, time
marker = sys.argv[1]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
subprocess.Popen([sys.executable, "-c", code, marker])
print("ignoring TERM", flush=True)
time.sleep(120)
"""

#: Exits at once; its grandchild (same process group) keeps stdout open for two minutes.
GRANDCHILD = """
import os, subprocess, sys
marker = sys.argv[1]
code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', sys.argv[1]])"
subprocess.run([sys.executable, "-c", code, marker], check=True)
print("parent done", flush=True)
"""

#: Starts a daemon by double fork + setsid. The daemon keeps stdout open and would
#: outlive the job unless killed. The intermediate process exits after ``linger``
#: seconds; daemon libraries exit it at once (``linger`` 0).
DOUBLE_FORK = """
import os, sys, time
marker, linger = sys.argv[1], float(sys.argv[2])
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", marker])
    time.sleep(linger)
    os._exit(0)
os.waitpid(pid, 0)
print("daemon started", flush=True)
"""


def job(db: Database, job_id: int) -> Job:
    with db.read() as session:
        return session.get_one(Job, job_id)


def seconds(found: Job) -> float:
    assert found.begin is not None and found.end is not None
    return (found.end - found.begin).total_seconds()


@pytest.fixture
def marker() -> str:
    return f"mfhostile-{uuid.uuid4().hex[:12]}"


def test_hostile_jobs_end_on_time_and_leave_nothing_running(
    sqlite_db: Database, tmp_path: Path, marker: str
) -> None:
    db = sqlite_db
    scripts = {
        name: make_script(tmp_path, body, f"{name}.py")
        for name, body in [
            ("ignores_term", IGNORES_TERM),
            ("grandchild", GRANDCHILD),
            ("double_fork", DOUBLE_FORK),
        ]
    }
    rts = {
        "ignores_term": make_setup(
            db, cmdparams=f"{scripts['ignores_term']} {marker}-term", timeout=2
        )[2],
        "grandchild": make_setup(db, cmdparams=f"{scripts['grandchild']} {marker}-grand")[2],
        # The daemon's parent lives long enough for the executor to see the daemon.
        "tracked_daemon": make_setup(
            db, cmdparams=f"{scripts['double_fork']} {marker}-tracked 1", timeout=30
        )[2],
        "quick": make_setup(db, cmdparams="-c 'print(\"next\")'")[2],
    }
    try:
        with daemons(
            db,
            tmp_path,
            [[EXECUTOR, "--max-parallel", "4"]],
            MULTIFLEXI_KILL_GRACE=str(KILL_GRACE),
        ) as (executor,):
            executor.wait_for_log("action=start")
            started = time.monotonic()
            ids = {
                name: create_job(db, db.settings, runtemplate_id=rt).id
                for name, rt in rts.items()
                if name != "quick"
            }
            wait_until(lambda: all_final(db, list(ids.values())), 60, "the hostile jobs to end")
            assert time.monotonic() - started < 30
            # No pipe or process left behind blocks the executor: the next job runs at once.
            nxt = create_job(db, db.settings, runtemplate_id=rts["quick"]).id
            wait_until(lambda: all_final(db, [nxt]), 30, "the next job")
            assert job(db, nxt).status == JobStatus.SUCCESS
        assert_nothing_left(marker)
    finally:
        kill_marked(marker)

    term = job(db, ids["ignores_term"])
    assert (term.status, term.reason) == (JobStatus.FAILED, "timeout after 2 s")
    # timeout, then TERM (ignored), KILL_GRACE, KILL: with slack for a loaded machine
    assert 2.0 <= seconds(term) < 2.0 + KILL_GRACE + 5, seconds(term)
    assert stdout_of(db, term.id)[1] == b"ignoring TERM\n"

    grand = job(db, ids["grandchild"])
    assert grand.status == JobStatus.SUCCESS, grand.reason
    assert seconds(grand) < 5
    assert stdout_of(db, grand.id)[1] == b"parent done\n"

    tracked = job(db, ids["tracked_daemon"])
    assert tracked.status == JobStatus.SUCCESS, tracked.reason
    assert seconds(tracked) < 1 + 5
    assert stdout_of(db, tracked.id)[1] == b"daemon started\n"
    assert log_problems(executor.log()) == []


def test_a_classic_double_fork_daemon_is_killed_with_its_job(
    sqlite_db: Database, tmp_path: Path, marker: str
) -> None:
    """The daemon's intermediate parent exits at once, as daemon libraries do: the job
    ends on time (the daemon's open stdout is drained for 2 s at most), but the daemon,
    reparented to init before the executor ever saw it, must not be left running: the
    executor finds it by the job's own ``MULTIFLEXI_TMP`` in its environment."""
    db = sqlite_db
    script = make_script(tmp_path, DOUBLE_FORK, "double_fork.py")
    _, _, rt = make_setup(db, cmdparams=f"{script} {marker} 0", timeout=30)
    try:
        with daemons(db, tmp_path, [[EXECUTOR]]) as (executor,):
            job_id = create_job(db, db.settings, runtemplate_id=rt).id
            wait_until(lambda: all_final(db, [job_id]), 60, "the job to end")
        found = job(db, job_id)
        assert found.status == JobStatus.SUCCESS, found.reason
        assert seconds(found) < 5
        assert_nothing_left(marker)
    finally:
        kill_marked(marker)
    assert log_problems(executor.log()) == []

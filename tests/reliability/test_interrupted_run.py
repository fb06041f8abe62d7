"""``multiflexi-cli job:run`` interrupted by a real signal (Ctrl-C, SIGTERM from a dropped
SSH session, SIGHUP) stops its job: the job's process group is terminated (SIGTERM, kill
grace, SIGKILL), the job ends ``cancelled`` with the signal's name and its output so far,
the command exits 128 + the signal's number, and the template is free for its next job.
Also: a job ended by its timeout makes ``job:run`` exit 124, and "executable not found"
names the PATH that was searched.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job, give_back, new_worker_id
from multiflexi.storage.database import Database
from multiflexi.storage.models import JobStatus
from tests.conftest import Cli
from tests.daemons.helpers import BIN, daemon_env, job
from tests.factories import make_script, make_setup
from tests.reliability.helpers import artifact_of, assert_nothing_left, kill_marked, stdout_of

CLI = str(BIN / "multiflexi-cli")
KILL_GRACE = 1.5

#: Writes a file, prints on both streams, starts a child in its group, then waits.
#: With ``ignore`` it ignores SIGTERM (and so does its child): only SIGKILL ends it.
WAITER = """
import os, signal, subprocess, sys, time
marker, ignore = sys.argv[1], sys.argv[2] == "ignore"
if ignore:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(os.environ["MULTIFLEXI_TMP"], "partial.txt"), "w").write("so far")
child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
subprocess.Popen([sys.executable, "-c", child if ignore else "import time; time.sleep(300)", marker])
print("warming up", file=sys.stderr, flush=True)
print("started", flush=True)
time.sleep(300)
"""


@pytest.fixture
def marker() -> str:
    return f"mfinterrupt-{uuid.uuid4().hex[:12]}"


@contextmanager
def job_run(db: Database, job_id: int, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``job:run`` as a real process, once the job has printed ``started``; killed at
    the end if it is still there."""
    env = daemon_env(db, MULTIFLEXI_KILL_GRACE=str(KILL_GRACE))
    with (tmp_path / "run.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [CLI, "job:run", str(job_id)], env=env, stdout=subprocess.PIPE, stderr=err
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"started\n"  # teed as it arrives
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_an_interrupted_job_run_cancels_its_job_and_leaves_nothing_running(
    sqlite_db: Database, tmp_path: Path, marker: str, signum: int, code: int
) -> None:
    db = sqlite_db
    script = make_script(tmp_path, WAITER, "waiter.py")
    _, _, rt = make_setup(db, cmdparams=f"{script} {marker} plain", overlap="forbid")
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    try:
        with job_run(db, job_id, tmp_path) as proc:
            proc.send_signal(signum)
            assert proc.wait(30) == code, (tmp_path / "run.stderr").read_text()
        assert_nothing_left(marker)
    finally:
        kill_marked(marker)
    name = signal.Signals(signum).name
    found = job(db, job_id)
    assert (found.status, found.reason) == (JobStatus.CANCELLED, f"interrupted by {name}")
    assert found.end is not None and found.lease_until is None
    assert f"Job {job_id} cancelled" in (tmp_path / "run.stderr").read_text()
    # What it had printed and written is kept.
    assert stdout_of(db, job_id)[1] == b"started\n"
    assert artifact_of(db, job_id, kind="stderr")[1] == b"warming up\n"
    assert artifact_of(db, job_id, filename="partial.txt")[1] == b"so far"
    # Neither retried nor blocking its template: the next job runs at once.
    after = create_job(db, db.settings, runtemplate_id=rt).id
    claim = claim_job(db, after, new_worker_id("test"), 60)
    assert give_back(db, claim.job_id, claim.worker)
    assert job(db, after).retry_of is None


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(
    sqlite_db: Database, tmp_path: Path, marker: str
) -> None:
    db = sqlite_db
    script = make_script(tmp_path, WAITER, "waiter.py")
    _, _, rt = make_setup(db, cmdparams=f"{script} {marker} ignore")
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    try:
        with job_run(db, job_id, tmp_path) as proc:
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)  # a second Ctrl-C changes nothing
            assert proc.wait(30) == 130
            took = time.monotonic() - sent
        assert_nothing_left(marker)
    finally:
        kill_marked(marker)
    assert KILL_GRACE <= took < KILL_GRACE + 10, took
    found = job(db, job_id)
    assert (found.status, found.reason) == (JobStatus.CANCELLED, "interrupted by SIGINT")
    assert found.signal == signal.SIGKILL


def test_an_interrupted_job_run_on_postgresql_cancels_its_job(
    pg_db: Database, tmp_path: Path, marker: str
) -> None:
    script = make_script(tmp_path, WAITER, "waiter.py")
    _, _, rt = make_setup(pg_db, cmdparams=f"{script} {marker} plain")
    job_id = create_job(pg_db, pg_db.settings, runtemplate_id=rt).id
    try:
        with job_run(pg_db, job_id, tmp_path) as proc:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 143
        assert_nothing_left(marker)
    finally:
        kill_marked(marker)
    found = job(pg_db, job_id)
    assert (found.status, found.reason) == (JobStatus.CANCELLED, "interrupted by SIGTERM")


def test_a_job_ended_by_its_timeout_makes_job_run_exit_124(
    cli: Cli, sqlite_db: Database, tmp_path: Path
) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams="-c 'import time; time.sleep(30)'", timeout=1)
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    res = cli("job:run", job_id)
    assert res.exit_code == 124, res.stderr
    assert "timeout after 1 s" in res.stderr
    assert job(sqlite_db, job_id).status == JobStatus.FAILED


def test_executable_not_found_names_the_path_that_was_searched(
    cli: Cli, sqlite_db: Database
) -> None:
    _, _, rt = make_setup(
        sqlite_db, executable="no-such-program-here", config={"PATH": "/opt/none:/usr/bin"}
    )
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    res = cli("job:run", job_id)
    assert res.exit_code == 127
    expected = "executable not found: no-such-program-here (searched PATH=/opt/none:/usr/bin)"
    assert job(sqlite_db, job_id).reason == expected
    assert expected in res.stderr

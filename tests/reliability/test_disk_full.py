"""Job directories on a full filesystem: the job fails with reason ``disk full``, the
executor keeps working and the next jobs run.

The job root (``MULTIFLEXI_JOBS_DIR``) is a 2 MiB tmpfs mounted for the test (root only;
skipped elsewhere, except under CI=true where it must work).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Job, JobStatus
from tests.conftest import IN_CI
from tests.daemons.helpers import EXECUTOR, all_final, daemons, wait_until
from tests.factories import make_setup
from tests.reliability.helpers import log_problems

#: Writes ``SIZE`` bytes into a result file in its own job directory, then says so.
WRITER = (
    "-c 'import os, sys; size = int(sys.argv[1]); "
    'path = os.path.join(os.environ["MULTIFLEXI_TMP"], "result.bin"); '
    'f = open(path, "wb"); f.write(b"x" * size); f.close(); print("wrote", size)\' {SIZE}'
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted at the end whatever happens."""
    mountpoint = tmp_path / "jobs"
    mountpoint.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        message = f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def job_of(db: Database, job_id: int) -> Job:
    with db.read() as session:
        return session.get_one(Job, job_id)


def result_files(db: Database, job_id: int) -> dict[str, int]:
    """Stored result files of a job (not its stdout and stderr): name -> size."""
    with db.read() as session:
        rows = session.execute(
            select(Artifact.filename, Artifact.size).where(
                Artifact.job_id == job_id, Artifact.kind.not_in(["stdout", "stderr"])
            )
        )
        return {str(name): int(size) for name, size in rows}


def test_a_job_that_fills_the_disk_fails_with_disk_full_and_the_next_jobs_run(
    sqlite_db: Database, tmp_path: Path, small_disk: Path
) -> None:
    db = sqlite_db
    _, _, rt = make_setup(
        db,
        cmdparams=WRITER,
        fields={"SIZE": {"type": "integer"}},
        config={"SIZE": "1000"},
        overlap="allow",
    )
    # MULTIFLEXI_MIN_FREE_MB=0: the executor starts on a 2 MiB job root.
    with daemons(
        db, tmp_path, [[EXECUTOR]], MULTIFLEXI_JOBS_DIR=str(small_disk), MULTIFLEXI_MIN_FREE_MB="0"
    ) as (executor,):
        big = create_job(db, db.settings, runtemplate_id=rt, overrides={"SIZE": str(5 << 20)}).id
        wait_until(lambda: all_final(db, [big]), 120, "the 5 MB job to end")
        after = [create_job(db, db.settings, runtemplate_id=rt).id for _ in range(3)]
        wait_until(lambda: all_final(db, after), 120, "the next jobs to end")

        # Finished jobs' directories are removed just after their end is recorded.
        wait_until(lambda: os.listdir(small_disk) == [], 30, "the job directories to go")
        # Someone else fills the disk: the job cannot write its result and says why.
        filler = small_disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        starved = create_job(db, db.settings, runtemplate_id=rt).id
        wait_until(lambda: all_final(db, [starved]), 120, "the job on a full disk to end")
        filler.unlink()
        last = create_job(db, db.settings, runtemplate_id=rt).id
        wait_until(lambda: all_final(db, [last]), 120, "the job after the disk was freed")
        assert executor.proc.poll() is None, executor.log()
    failed = job_of(db, big)
    assert (failed.status, failed.reason) == (JobStatus.FAILED, "disk full")
    assert failed.exitcode == 1
    for job_id in [*after, last]:
        done = job_of(db, job_id)
        assert done.status == JobStatus.SUCCESS, (job_id, done.reason)
        assert result_files(db, job_id) == {"result.bin": 1000}
    starving = job_of(db, starved)
    assert starving.status == JobStatus.FAILED
    assert "disk full" in starving.reason, starving.reason
    assert log_problems(executor.log()) == []
    assert os.listdir(small_disk) == []  # every job directory was removed

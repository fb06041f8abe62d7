"""``queue:process`` runs every job that was due when it started, also when the jobs of
one ``forbid`` template wait for each other, and reports exactly what it ran (issue 32,
item 8): the command in a real subprocess, on every backend."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from tests.daemons.helpers import BIN, daemon_env, queue_jobs
from tests.factories import make_setup

CLI = str(BIN / "multiflexi-cli")
JOBS = 300


def _by_status(db: Database) -> dict[str, int]:
    with db.read() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
        return {str(status): int(n) for status, n in rows}


@pytest.mark.parametrize("concurrency", ["2", "1"])
def test_queue_process_runs_every_due_job_of_one_template_and_counts_them(
    any_db: Database, tmp_path: Path, concurrency: str
) -> None:
    *_, rt = make_setup(any_db, executable="/bin/sh", cmdparams="-c 'echo hello; echo err >&2'")
    ids = queue_jobs(any_db, [rt], JOBS)
    done = subprocess.run(
        [CLI, "queue:process", "--concurrency", concurrency, "-f", "json"],
        env=daemon_env(any_db),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert _by_status(any_db) == {"success": JOBS}
    assert report["processed"] == JOBS and report["results"] == {"success": JOBS}
    assert sorted(report["jobs"]) == sorted(ids)
    assert (report["held"], report["left_due"]) == (0, 0)

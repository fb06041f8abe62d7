"""A daemon that cannot do its work refuses to start, with one line and exit 1; `status`
in the same setup reports the problem; an executor whose job root fails while it runs
gives the job back, in its first attempt, and stops (issue 39)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from multiflexi.storage.database import Database
from tests.daemons.helpers import (
    BIN,
    EXECUTOR,
    SCHEDULER,
    Daemon,
    daemon_env,
    job,
    queue_jobs,
)
from tests.factories import make_setup

CLI = str(BIN / "multiflexi-cli")


def _run(
    argv: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _unusable_home(tmp_path: Path, db: Database) -> dict[str, str]:
    """A daemon user's environment as Debian makes it (HOME=/nonexistent), without
    MULTIFLEXI_DATA_DIR: here HOME is a file, so that nothing can be made under it even
    by root."""
    home = tmp_path / "nonexistent"
    home.write_text("")
    env = daemon_env(db, HOME=str(home))
    env.pop("MULTIFLEXI_DATA_DIR")
    env.pop("XDG_DATA_HOME", None)
    return env


def test_an_executor_without_a_writable_job_root_refuses_to_start(
    pg_db: Database, tmp_path: Path
) -> None:
    env = _unusable_home(tmp_path, pg_db)
    root = tmp_path / "nonexistent" / ".local" / "share" / "multiflexi" / "jobs"
    done = _run([EXECUTOR], env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"multiflexi-executor: error: job root {root} is not writable: Not a directory "
        "(set MULTIFLEXI_DATA_DIR or MULTIFLEXI_JOBS_DIR)"
    )
    # The scheduler runs no job: it needs no job root.
    assert _run([SCHEDULER, "--once"], env).returncode == 0
    # status says what is wrong instead of dying.
    status = _run([CLI, "status"], env)
    assert status.returncode == 0 and "internal error" not in status.stderr
    assert f"job root       PROBLEM: job root {root} is not writable" in status.stdout
    data = json.loads(_run([CLI, "status", "-f", "json"], env).stdout)
    assert data["job_root"]["ok"] is False and data["encryption"]["ok"] is True


def test_without_a_data_dir_the_embedded_database_is_one_clear_line(
    sqlite_db: Database, tmp_path: Path
) -> None:
    env = _unusable_home(tmp_path, sqlite_db)
    env.pop("DB_DATABASE")
    path = tmp_path / "nonexistent" / ".local" / "share" / "multiflexi" / "multiflexi.sqlite"
    line = (
        f"error: cannot open the database {path}: Not a directory "
        "(set MULTIFLEXI_DATA_DIR or DB_DATABASE)"
    )
    status = _run([CLI, "status"], env)
    assert (status.returncode, status.stderr.strip()) == (1, line)
    done = _run([EXECUTOR], env)
    assert (done.returncode, done.stderr.strip()) == (1, f"multiflexi-executor: {line}")


def test_an_executor_refuses_to_start_without_free_disk(sqlite_db: Database) -> None:
    env = daemon_env(sqlite_db, MULTIFLEXI_MIN_FREE_MB=str(10**12))
    done = _run([EXECUTOR], env)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("multiflexi-executor: error: job root ")
    assert line.endswith(f"MB free, less than MULTIFLEXI_MIN_FREE_MB={10**12}")


@pytest.mark.parametrize("backend", ["sqlite", "pgsql"])
def test_a_job_root_that_fails_while_running_gives_the_job_back_to_another_executor(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db: Database = request.getfixturevalue("sqlite_db" if backend == "sqlite" else "pg_db")
    _app, _company, rt = make_setup(db, executable="/bin/sh", cmdparams="-c 'echo done'")
    broken = tmp_path / "jobs-b"
    env = daemon_env(db, MULTIFLEXI_JOBS_DIR=str(broken))
    executor = Daemon([EXECUTOR], env, tmp_path / "executor-b.log")
    try:
        executor.wait_for_log("action=start ")
        shutil.rmtree(broken)
        broken.write_text("not a directory any more")
        [job_id] = queue_jobs(db, [rt], 1)
        assert executor.wait(60) == 1
    finally:
        executor.stop()
    errors = [line for line in executor.log().splitlines() if not line[:4].isdigit()]
    assert errors == [
        f"multiflexi-executor: error: output directory not creatable: {broken}/{job_id}: "
        f"Not a directory (job {job_id} queued again for another executor)"
    ]
    row = job(db, job_id)
    assert (row.status, row.attempt) == ("scheduled", 1)
    assert "cannot run jobs: output directory not creatable" in row.reason
    done = _run([EXECUTOR, "--once"], daemon_env(db))
    assert done.returncode == 0, done.stderr
    row = job(db, job_id)
    assert (row.status, row.attempt, row.retry_of) == ("success", 1, None)

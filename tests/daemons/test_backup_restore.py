"""Backing up a live SQLite database, restoring it, and making the restored queue safe."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from multiflexi.housekeeping.restore import CANCELLED_REASON, RESTORED_REASON
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from multiflexi.storage.types import utcnow
from multiflexi.workers import BEAT_SECONDS
from tests.conftest import Cli, db_environment
from tests.daemons.helpers import EXECUTOR, daemons, job, kill_group, wait_until
from tests.factories import make_setup

HANG = "-c 'import time; print(\"working\", flush=True); time.sleep(120)'"


def test_a_backup_taken_while_jobs_run_is_restored_and_made_safe(
    sqlite_db: Database, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, requeue_rt = make_setup(sqlite_db, cmdparams=HANG, slug="idem")
    _, _, once_rt = make_setup(sqlite_db, cmdparams=HANG, slug="once", on_interrupt="fail")
    _, _, once_due = make_setup(sqlite_db, cmdparams="-c pass", slug="due1", on_interrupt="fail")
    _, _, again_due = make_setup(sqlite_db, cmdparams="-c pass", slug="due2")
    settings = sqlite_db.settings
    running = [
        create_job(sqlite_db, settings, runtemplate_id=rt).id for rt in (requeue_rt, once_rt)
    ]
    pids: list[int | None] = []
    backup = tmp_path / "backup.sqlite"
    try:
        with daemons(sqlite_db, tmp_path, [[EXECUTOR, "--max-parallel", "2"]]) as (ex,):
            wait_until(lambda: all(job(sqlite_db, j).pid for j in running), 30, "both jobs running")
            # Queued behind the two: due now, and one not due before tomorrow.
            waiting = {
                "once_due": create_job(sqlite_db, settings, runtemplate_id=once_due).id,
                "again_due": create_job(sqlite_db, settings, runtemplate_id=again_due).id,
                "later": create_job(
                    sqlite_db, settings, runtemplate_id=once_due, at=utcnow() + timedelta(days=1)
                ).id,
            }
            res = cli.ok("db:backup", "--output", backup)
            assert "Back up the master key separately" in res.stdout
            pids = [job(sqlite_db, j).pid for j in running]
            ex.signal(signal.SIGKILL)  # the host is gone
            ex.wait(10)
    finally:
        for pid in pids:
            kill_group(pid)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    # Restore on a new host: the backup becomes the database.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copyfile(backup, restored / "multiflexi.sqlite")
    os.chmod(restored / "multiflexi.sqlite", 0o600)
    env = {**db_environment(sqlite_db), "DB_DATABASE": str(restored / "multiflexi.sqlite")}
    there = Cli(env, monkeypatch)
    shown = there.json("job:list", "--status", "running")
    assert sorted(j["id"] for j in shown) == sorted(running)  # running until fixed
    # queue:fix spares jobs of a daemon beating now: the backup's executor is seen dead
    # three missed beats after the backup (a restore usually comes much later).
    wait_until(
        lambda: all(not d["alive"] for d in there.json("status")["daemons"]),
        4 * BEAT_SECONDS,
        "the backup's executor to look dead",
        every=0.5,
    )

    dry = there.json("queue:fix", "--after-restore", "--dry-run")
    assert sorted(dry["ids"]["restored_running_lost"]) == sorted(running)
    assert dry["ids"]["restored_due_cancelled"] == [waiting["once_due"]]
    fixed = there.json("queue:fix", "--after-restore")
    assert fixed["fixed"]["restored_running_lost"] == 2
    assert fixed["fixed"]["restored_requeued"] == 1
    assert fixed["ids"]["restored_due_cancelled"] == [waiting["once_due"]]

    db = Database(settings.__class__(**{**vars(settings), "db_database": env["DB_DATABASE"]}))
    try:
        for job_id in running:
            lost = job(db, job_id)
            assert (lost.status, lost.reason) == ("lost", RESTORED_REASON)
        with db.read() as session:
            retries = {
                r.retry_of: r.status
                for r in session.scalars(select(Job).where(Job.retry_of.is_not(None)))
            }
        # The idempotent template's job runs again; the one that must not run twice not.
        assert retries == {running[0]: "scheduled"}
        cancelled = job(db, waiting["once_due"])
        assert (cancelled.status, cancelled.reason) == ("cancelled", CANCELLED_REASON)
        assert job(db, waiting["again_due"]).status == "scheduled"
        assert job(db, waiting["later"]).status == "scheduled"
    finally:
        db.dispose()
    assert there.ok("queue:fix", "--after-restore").stdout.strip() == "Nothing to fix."


def test_db_backup_refuses_what_it_cannot_do(cli: Cli, tmp_path: Path) -> None:
    taken = tmp_path / "taken.sqlite"
    taken.write_text("")
    res = cli("db:backup", "--output", taken)
    assert (
        res.exit_code == 1 and res.stderr.strip() == f"error: {taken} exists; give a new file name"
    )
    res = cli("db:backup", "--output", tmp_path / "nope" / "b.sqlite")
    assert res.exit_code == 1 and "directory not found" in res.stderr


def test_db_backup_names_the_tool_for_a_server_database(
    pg_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = Cli(db_environment(pg_db), monkeypatch)("db:backup", "--output", tmp_path / "b")
    assert res.exit_code == 1
    assert "pg_dump" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()

"""Ids are never handed out again, on any backend, and a job starts in an empty directory
of its own: what it finds at its name is moved aside, never taken as its artifacts."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import MetaData, Table, func, insert, select

from multiflexi.config import settings_from_values
from multiflexi.housekeeping.orphans import fix_orphans
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job, delete_job
from multiflexi.jobs.workdir import LEFTOVER
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.storage.database import Database
from multiflexi.storage.migrations import alembic_config
from multiflexi.storage.models import Artifact, ArtifactChunk, Base, Company, Job
from multiflexi.storage.types import utcnow
from tests.factories import make_setup

#: Leaves a result file and prints: a job with artifacts of every kind.
WRITER = (
    '-c \'import os; print("out"); '
    'open(os.path.join(os.environ["MULTIFLEXI_TMP"], "mine.txt"), "w").write("mine")\''
)


def run(db: Database, rt: int) -> int:
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    claim = claim_job(db, job_id, new_worker_id("test"), 60)
    JobRunner(db, db.settings, job_hooks=[]).perform_job(claim)
    return job_id


def artifact_ids(db: Database, job_id: int) -> list[int]:
    with db.read() as session:
        return list(session.scalars(select(Artifact.id).where(Artifact.job_id == job_id)))


def test_the_ids_of_deleted_jobs_artifacts_and_companies_are_never_handed_out_again(
    any_db: Database,
) -> None:
    _, _, rt = make_setup(any_db, cmdparams=WRITER)
    first = run(any_db, rt)
    first_artifacts = artifact_ids(any_db, first)
    assert len(first_artifacts) == 3
    delete_job(any_db, any_db.settings, first)  # the newest job: SQLite gave its id again
    second = run(any_db, rt)
    assert second > first
    assert min(artifact_ids(any_db, second)) > max(first_artifacts)

    def new_company(slug: str) -> int:
        with any_db.session() as session:
            company = Company(name=slug, slug=slug)
            session.add(company)
            session.flush()
            return company.id

    gone = new_company("gone")
    with any_db.session() as session:
        session.delete(session.get_one(Company, gone))
    assert new_company("new") > gone


def test_a_job_never_adopts_what_it_finds_in_its_directory(sqlite_db: Database) -> None:
    db = sqlite_db
    _, _, rt = make_setup(db, cmdparams=WRITER)
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    # Left by a job of an earlier database that had the same id.
    stale = db.settings.job_root / str(job_id)
    stale.mkdir(parents=True)
    (stale / "secret-of-another-company.csv").write_text("not yours")
    claim = claim_job(db, job_id, new_worker_id("test"), 60)
    JobRunner(db, db.settings, job_hooks=[]).perform_job(claim)

    with db.read() as session:
        names = set(session.scalars(select(Artifact.filename).where(Artifact.job_id == job_id)))
    assert names == {"stdout.txt", "stderr.txt", "mine.txt"}
    (aside,) = (db.settings.job_root / LEFTOVER).iterdir()
    assert aside.name.startswith(f"{job_id}-")
    assert (aside / "secret-of-another-company.csv").read_text() == "not yours"
    # Housekeeping lists it for an operator, and removes it after a week.
    report = fix_orphans(db, db.settings).as_dict()
    assert report["leftover_dirs"] == [str(aside)]
    later = fix_orphans(db, db.settings, now=utcnow() + timedelta(days=8)).as_dict()
    assert later["ids"]["leftover_dirs_removed"] == [str(aside)]
    assert not aside.exists()


def test_every_table_whose_ids_are_never_reused_is_autoincrement_on_sqlite(
    sqlite_db: Database,
) -> None:
    """A later migration that rebuilds one of these tables on SQLite (batch mode: to alter
    or drop a column) must pass ``table_kwargs={"sqlite_autoincrement": True}``, or the
    rebuilt table hands out ids again: this test says so."""
    tables = [t.name for t in Base.metadata.sorted_tables if t.kwargs.get("sqlite_autoincrement")]
    assert {"job", "artifacts", "company", "runtemplate", "apps"} <= set(tables)
    with sqlite_db.engine.connect() as conn:
        for name in tables:
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).scalar_one()
            assert "AUTOINCREMENT" in sql, name


def _copy_rows(source: Database, target: Database) -> None:
    """Every row of ``source`` into ``target``, for the columns ``target`` has."""
    with target.engine.begin() as conn:  # parents first: sorted_tables
        reflected = MetaData()
        reflected.reflect(conn)
        with source.engine.connect() as src:
            for table in Base.metadata.sorted_tables:
                if table.name not in reflected.tables:
                    continue
                into = reflected.tables[table.name]
                rows = [
                    {k: v for k, v in row._mapping.items() if k in into.c}
                    for row in src.execute(select(Table(table.name, MetaData(), autoload_with=src)))
                ]
                if rows:
                    conn.execute(insert(into), rows)


def test_migration_0010_keeps_every_row_and_makes_sqlite_ids_permanent(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A database of the schema before (plain INTEGER PRIMARY KEY tables) with jobs,
    artifacts in chunks and templates: the migration rebuilds the tables and loses no
    row, not even of the tables that refer to them (a rebuild with foreign keys on would
    have deleted those), and the ids taken before it are never given again."""
    source = sqlite_db
    _, _, rt = make_setup(source, cmdparams="-c 'import sys; sys.stdout.write(\"x\" * 3000000)'")
    jobs = [run(source, rt) for _ in range(3)]
    with source.read() as session:
        chunks = session.scalar(select(func.count()).select_from(ArtifactChunk))
    assert chunks  # a 3 MB output is stored in chunks

    old = Database(
        settings_from_values({"MULTIFLEXI_DATA_DIR": str(tmp_path / "old")}), check_schema=False
    )
    try:
        command.upgrade(alembic_config(old.engine), "0009")
        _copy_rows(source, old)
        with old.engine.connect() as conn:
            schema = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'job'"
            ).scalar_one()
            assert "AUTOINCREMENT" not in schema
        old.migrate()
        counts: dict[str, Any] = {}
        with old.engine.connect() as conn:
            for table in ("job", "artifacts", "artifact_chunk", "runtemplate", "company"):
                counts[table] = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            seq = dict(conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all())
        assert counts == {
            "job": 3,
            "artifacts": 6,
            "artifact_chunk": chunks,
            "runtemplate": 1,
            "company": 1,
        }
        assert seq["job"] == max(jobs)
        with old.read() as session:
            assert session.scalar(select(func.count()).select_from(Company)) == 1
        delete_job(old, old.settings, max(jobs))
        again = create_job(old, old.settings, runtemplate_id=rt).id
        assert again == max(jobs) + 1
        with old.read() as session:
            assert session.get_one(Job, again).runtemplate_id == rt
    finally:
        old.dispose()


def test_a_directory_taken_from_the_sweeper_that_is_not_empty_is_not_the_jobs(
    tmp_path: Path,
) -> None:
    """The executor's reuse of an emptied directory (WorkdirSweeper.take) looks again
    once the directory has its new name; a file written meanwhile (a process of the
    job before) makes it not the new job's."""
    from multiflexi.jobs import workdir as module
    from multiflexi.jobs.workdir import WorkdirSweeper

    sweeper = WorkdirSweeper()
    spare = tmp_path / "1"
    spare.mkdir(mode=0o700)
    sweeper._pending.append((spare, 7))  # as discard() leaves it, without the thread
    real_rename = os.rename

    def rename_and_write(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        Path(dst, "late.txt").write_text("from the job before")

    module.os.rename = rename_and_write  # type: ignore[assignment]
    try:
        assert sweeper.take(tmp_path / "2", 7) is False
    finally:
        module.os.rename = real_rename
    # Files at the new name already: not taken, and nothing replaced.
    other = tmp_path / "3"
    other.mkdir(mode=0o700)
    (tmp_path / "4").mkdir(mode=0o700)
    (tmp_path / "4" / "left.txt").write_text("left")
    sweeper._pending.append((other, 7))
    assert sweeper.take(tmp_path / "4", 7) is False
    assert (tmp_path / "4" / "left.txt").read_text() == "left"
    sweeper.flush()

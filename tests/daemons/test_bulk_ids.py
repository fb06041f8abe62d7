"""Ids for jobs created in bulk on MariaDB: a range reserved from AUTO_INCREMENT with two
placeholder rows (``scheduling.bulk._reserved_range``), and the fallbacks when that
cannot be done safely."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from multiflexi.jobs.service import create_job
from multiflexi.scheduling import bulk
from multiflexi.scheduling.bulk import JobRequest, bulk_create_jobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, RunTemplate
from multiflexi.storage.types import utcnow
from tests.factories import make_setup


def _job_count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def test_a_bulk_batch_takes_consecutive_ids_and_the_next_job_comes_after_them(
    mysql_db: Database,
) -> None:
    _, _, rt_id = make_setup(mysql_db, cmdparams="-c pass")
    before = create_job(mysql_db, mysql_db.settings, runtemplate_id=rt_id).id
    with mysql_db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        at = utcnow() + timedelta(minutes=5)
        created = bulk_create_jobs(s, mysql_db.settings, [JobRequest(rt, at, "interval")] * 5)
    ids = [c.id for c in created]
    assert ids == list(range(before + 1, before + 6))
    assert _job_count(mysql_db) == 6  # no placeholder left behind
    with mysql_db.read() as s:
        envs = {job.id: job.env for job in s.scalars(select(Job).where(Job.id.in_(ids)))}
    assert all(str(job_id) in str(envs[job_id]) for job_id in ids)  # rendered with its id
    after = create_job(mysql_db, mysql_db.settings, runtemplate_id=rt_id).id
    assert after == ids[-1] + 1


def _reserve(db: Database, rt_id: int, count: int, **hooks: Any) -> list[int] | None:
    with db.session() as s:
        for name, fn in hooks.items():
            event.listen(s.connection(), name, fn)
        return bulk._reserved_range(s, rt_id, count)


def test_a_job_inserted_between_the_placeholders_makes_the_reservation_fall_back(
    mysql_db: Database,
) -> None:
    _, _, rt_id = make_setup(mysql_db, cmdparams="-c pass")
    intruders: list[int] = []

    def intrude(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Right after the first placeholder took its id, another session takes the next.
        if statement.startswith("INSERT INTO job") and not intruders:
            intruders.append(create_job(mysql_db, mysql_db.settings, runtemplate_id=rt_id).id)

    assert _reserve(mysql_db, rt_id, 10, after_cursor_execute=intrude) is None
    assert len(intruders) == 1
    assert _job_count(mysql_db) == 1  # the intruder; both placeholders are gone
    reserved = _reserve(mysql_db, rt_id, 10)
    assert reserved is not None and reserved[0] > intruders[0]


def test_ids_that_do_not_step_by_one_make_the_reservation_fall_back(mysql_db: Database) -> None:
    _, _, rt_id = make_setup(mysql_db, cmdparams="-c pass")

    def stepping(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "get_lock" in statement:
            cursor.execute("SET SESSION auto_increment_increment = 2")

    try:
        assert _reserve(mysql_db, rt_id, 10, before_cursor_execute=stepping) is None
    finally:
        mysql_db.engine.dispose()  # no pooled connection keeps the session setting
    assert _job_count(mysql_db) == 0


def test_a_reservation_waits_for_the_lock_only_so_long(
    mysql_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, rt_id = make_setup(mysql_db, cmdparams="-c pass")
    monkeypatch.setattr(bulk, "RESERVE_WAIT", 0.2)
    with mysql_db.engine.connect() as other:
        assert other.execute(select(func.get_lock(bulk.RESERVE_LOCK, 1))).scalar() == 1
        assert _reserve(mysql_db, rt_id, 10) is None
        other.execute(select(func.release_lock(bulk.RESERVE_LOCK)))
    assert _reserve(mysql_db, rt_id, 10) is not None
    assert _job_count(mysql_db) == 0


def test_the_scheduler_path_falls_back_to_a_row_per_job_when_no_range_is_had(
    mysql_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, rt_id = make_setup(mysql_db, cmdparams="-c pass")
    monkeypatch.setattr(bulk, "_reserved_range", lambda *args: None)
    with mysql_db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        created = bulk_create_jobs(s, mysql_db.settings, [JobRequest(rt, utcnow(), "interval")] * 3)
    assert len(created) == 3
    with mysql_db.read() as s:
        assert s.scalar(text("SELECT COUNT(*) FROM job")) == 3
        for c in created:
            job = s.get(Job, c.id)
            assert job is not None and str(c.id) in str(job.env)

"""job:list reads through the DB-API fast path on every backend, with every filter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from multiflexi.errors import Invalid, NotFound
from multiflexi.jobs.listing import JobFilter, list_jobs
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.fastread import Unavailable
from multiflexi.storage.types import utcnow
from tests.factories import make_setup


def test_jobs_are_listed_newest_first_with_filters(any_db: Database) -> None:
    _, company_a, rt_a = make_setup(any_db, cmdparams="-c pass", slug="alpha")
    _, _, rt_b = make_setup(any_db, cmdparams="-c pass", slug="beta")
    jobs = [create_job(any_db, any_db.settings, runtemplate_id=rt).id for rt in (rt_a, rt_b, rt_a)]
    rows = list_jobs(any_db.settings, JobFilter())
    assert [r["id"] for r in rows] == sorted(jobs, reverse=True)
    assert rows[0]["status"] == "scheduled" and rows[0]["created"].tzinfo is not None
    only_a = list_jobs(any_db.settings, JobFilter(runtemplate_id=rt_a))
    assert [r["id"] for r in only_a] == [jobs[2], jobs[0]]
    by_company = list_jobs(any_db.settings, JobFilter(company=str(company_a)))
    assert {r["id"] for r in by_company} == {jobs[0], jobs[2]}
    assert list_jobs(any_db.settings, JobFilter(status="success")) == []
    assert len(list_jobs(any_db.settings, JobFilter(limit=1, offset=1))) == 1
    later = utcnow() + timedelta(hours=1)
    assert list_jobs(any_db.settings, JobFilter(since=later)) == []
    with pytest.raises(Invalid, match="unknown status 'done'"):
        list_jobs(any_db.settings, JobFilter(status="done"))
    assert rows[0]["not_before"] is not None and rows[0]["reason"] == ""


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (JobFilter(company="nosuch"), "company 'nosuch' not found"),
        (JobFilter(company="999"), "company '999' not found"),
        (JobFilter(app="no such app"), "application 'no such app' not found"),
        (JobFilter(runtemplate_id=999), "run template 999 not found"),
    ],
)
def test_a_filter_that_names_nothing_is_not_found(
    any_db: Database, flt: JobFilter, message: str
) -> None:
    make_setup(any_db, cmdparams="-c pass")
    with pytest.raises(NotFound, match=message):
        list_jobs(any_db.settings, flt)


def test_without_a_database_file_the_fast_path_steps_aside(tmp_path: object) -> None:
    from multiflexi.config import settings_from_values

    settings = settings_from_values({"MULTIFLEXI_DATA_DIR": str(tmp_path)})
    with pytest.raises(Unavailable):
        list_jobs(settings, JobFilter())

"""Disabling a company or an application, or deactivating a run template, stops its
jobs (issue 32, item 3): the scheduler queues none, its waiting jobs are held in their
place (not claimed, shown why) until it is enabled again, and ``job:create``/``job:run``
refuse with one line. On every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from multiflexi.daemons.executor import ExecutorDaemon
from multiflexi.jobs.holds import held_jobs, waiting_counts
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job
from multiflexi.scheduling.scheduler import Scheduler
from multiflexi.storage.database import Database
from multiflexi.storage.models import App, Company, RunTemplate
from multiflexi.workers import queue_overview, waiting_jobs
from tests.daemons.helpers import queue_jobs, statuses
from tests.factories import make_setup

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
#: What is switched off, how, and the hold it causes.
SWITCHES = {
    "company": (Company, "enabled", "company {id} ({name}) is disabled"),
    "application": (App, "enabled", "application {id} ({name}) is disabled"),
    "run template": (RunTemplate, "active", "run template {id} ({name}) is not active"),
}


def _switch(db: Database, what: str, ids: tuple[int, int, int], on: bool) -> str:
    """Turn the company, application or template of ``ids`` (app, company, rt) on or
    off; the hold it causes."""
    model, column, words = SWITCHES[what]
    row_id = {"company": ids[1], "application": ids[0], "run template": ids[2]}[what]
    with db.session() as session:
        session.execute(update(model).where(model.id == row_id).values({column: on}))
        name = session.get_one(model, row_id).name
    return "held: " + words.format(id=row_id, name=name)


def _executor(db: Database) -> ExecutorDaemon:
    return ExecutorDaemon(db, db.settings, worker_id="exec-holds", max_parallel=2, job_hooks=[])


@pytest.mark.parametrize("what", list(SWITCHES))
def test_waiting_jobs_are_held_while_off_and_run_once_on_again(any_db: Database, what: str) -> None:
    ids = make_setup(any_db, executable="/bin/true", overlap="allow")
    other = make_setup(any_db, executable="/bin/true", overlap="allow", slug="other")
    mine, theirs = queue_jobs(any_db, [ids[2]], 3), queue_jobs(any_db, [other[2]], 2)
    why = _switch(any_db, what, ids, False)

    executor = _executor(any_db)
    executor.process()
    assert sorted(executor.claimed) == sorted(theirs)
    assert set(statuses(any_db, mine).values()) == {"scheduled"}
    with any_db.read() as session:
        assert held_jobs(session, mine) == {job_id: why for job_id in mine}
        assert held_jobs(session, theirs) == {}
        assert waiting_counts(session, company_id=ids[1]) == (3, 0)
        overview = queue_overview(session)
        listed = {row["job_id"]: row["held"] for row in waiting_jobs(session)}
    assert overview["held"] == 3 and overview["waiting"] == 3
    short = {"company": "company disabled", "application": "application disabled"}
    assert set(listed.values()) == {short.get(what, "run template not active")}

    _switch(any_db, what, ids, True)
    again = _executor(any_db)
    again.process()
    assert sorted(again.claimed) == sorted(mine)
    assert set(statuses(any_db, mine).values()) == {"success"}


@pytest.mark.parametrize("what", list(SWITCHES))
def test_nothing_is_scheduled_while_off(any_db: Database, what: str) -> None:
    ids = make_setup(any_db, executable="/bin/true", interv="h", created=LONG_AGO)
    _switch(any_db, what, ids, False)
    scheduler = Scheduler(any_db, any_db.settings, job_hooks=[])
    assert scheduler.step(datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)).created == []
    _switch(any_db, what, ids, True)
    assert len(scheduler.step(datetime(2026, 11, 28, 10, 0, 6, tzinfo=UTC)).created) == 1


@pytest.mark.parametrize("what", list(SWITCHES))
def test_a_held_job_cannot_be_created_or_run_by_hand(any_db: Database, what: str) -> None:
    from multiflexi.errors import Conflict

    ids = make_setup(any_db, executable="/bin/true")
    (waiting,) = queue_jobs(any_db, [ids[2]], 1)
    why = _switch(any_db, what, ids, False)
    with pytest.raises(Conflict) as refused:
        claim_job(any_db, waiting, "cli@test", 60)
    assert refused.value.message == f"job {waiting} is {why}; enable it to run the job"
    with pytest.raises(Conflict) as not_created:
        create_job(any_db, any_db.settings, runtemplate_id=ids[2])
    assert what in not_created.value.message
    assert statuses(any_db) == {waiting: "scheduled"}

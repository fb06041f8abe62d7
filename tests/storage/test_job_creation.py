"""create_job writes a queued job in one transaction, unless a hook must see it first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from multiflexi.jobs import hooks
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, ScheduleEntry
from tests.factories import make_setup
from tests.storage.test_bare_names import statements


class Watcher:
    """A hook of the created phase: what it saw of the job when it was told."""

    seen: list[tuple[str, int]] = []

    def __init__(self, _settings: Any) -> None:
        pass

    def job_created(self, event: hooks.JobEvent) -> None:
        with event.db.read() as s:
            status = s.get_one(Job, event.job_id).status
            queued = s.scalar(select(func.count()).where(ScheduleEntry.job == event.job_id))
        Watcher.seen.append((status, int(queued or 0)))


@pytest.fixture
def watcher() -> Iterator[type[Watcher]]:
    Watcher.seen = []
    hooks.register(Watcher)
    yield Watcher
    hooks._registered.remove(Watcher)


def test_a_job_is_created_and_queued_in_one_transaction(any_db: Database) -> None:
    _, _, rt = make_setup(any_db, executable="/bin/true")
    with statements(any_db) as seen:
        job = create_job(any_db, any_db.settings, runtemplate_id=rt)
    inserts = [s for s in seen if s.startswith("INSERT INTO job ")]
    updates = [s for s in seen if s.startswith("UPDATE job ")]
    assert len(inserts) == 1, seen
    assert len([s for s in seen if s.startswith("INSERT INTO schedule")]) == 1
    # The row is written once, where its id can be had first (MariaDB: the insert picks
    # it, and the environment that names it follows).
    assert len(updates) == (1 if any_db.dialect == "mysql" else 0), updates
    with any_db.read() as s:
        stored = s.get_one(Job, job.id)
        queued = s.scalars(select(ScheduleEntry).where(ScheduleEntry.job == job.id)).one()
    assert (stored.status, job.status) == ("scheduled", "scheduled")
    assert stored.env == job.env and stored.argv == job.argv and stored.workdir == job.workdir
    assert queued.after == stored.schedule == stored.scheduled_at


def test_a_hook_of_the_created_phase_sees_the_job_loaded_before_it_is_queued(
    any_db: Database, watcher: type[Watcher]
) -> None:
    _, _, rt = make_setup(any_db, executable="/bin/true")
    job = create_job(any_db, any_db.settings, runtemplate_id=rt)
    assert watcher.seen == [("loaded", 0)]
    assert job.status == "scheduled"
    unqueued = create_job(any_db, any_db.settings, runtemplate_id=rt, queue=False)
    assert unqueued.status == "loaded"

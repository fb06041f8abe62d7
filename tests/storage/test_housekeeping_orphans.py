"""Orphan repair, the housekeeping lock and the periodic run, on every backend."""

from __future__ import annotations

import os
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from multiflexi.config import Settings
from multiflexi.housekeeping.orphans import fix_orphans
from multiflexi.housekeeping.service import SKIPPED, acquire_lock, release_lock, run_housekeeping
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, Lock, ScheduleEntry
from tests.factories import make_setup
from tests.storage.test_housekeeping import (
    NOW,
    Seed,
    count,
    small_world,
    with_retention,
)

# -- orphans ----------------------------------------------------------------------------


def test_orphans_are_repaired_and_a_dry_run_only_reports_them(
    any_db: Database, tmp_path: Path
) -> None:
    rt = make_setup(any_db)
    old = NOW - timedelta(hours=3)
    seed = Seed()
    seed.job(1, rt, "running", 0)  # healthy: lease in the future
    seed.job(2, rt, "running", 0)  # its worker died
    seed.job(3, rt, "scheduled", 0)  # healthy, queued
    seed.job(4, rt, "scheduled", 0)  # lost its queue row
    seed.job(5, rt, "loaded", 0)  # created 3 h ago, never queued
    seed.job(6, rt, "loaded", 0)  # just created
    seed.job(7, rt, "success", 1)  # finished yesterday: directory leftover
    seed.job(8, rt, "success", 0.001)  # just finished: directory stays a while
    seed.insert(any_db)
    with any_db.session() as s:
        s.execute(update(Job).where(Job.id == 2).values(lease_until=old, worker="w@dead"))
        s.execute(update(Job).where(Job.id == 5).values(created=old))
        s.execute(update(Job).where(Job.id == 6).values(created=NOW))
        s.execute(text("DELETE FROM schedule WHERE job = 4"))
        s.add(ScheduleEntry(job=7, after=old))  # a queue row of a finished job
    root = any_db.settings.job_root
    for name in ("1", "2", "7", "8", "999", "notes"):
        (root / name).mkdir(parents=True)
        (root / name / "file.txt").write_text("x")
    stale = (NOW - timedelta(hours=2)).timestamp()
    for name in ("7", "999"):
        os.utime(root / name, (stale, stale))
    handoff = any_db.settings.data_dir / "handoff"
    for name, age in (("job-7", timedelta(days=8)), ("job-8", timedelta(days=1)), ("x", None)):
        (handoff / name).mkdir(parents=True)
        (handoff / name / "report.pdf").write_text("x")
        when = (NOW - (age or timedelta(days=30))).timestamp()
        os.utime(handoff / name, (when, when))

    dry = fix_orphans(any_db, any_db.settings, now=NOW, dry_run=True).as_dict()
    fixed = fix_orphans(any_db, any_db.settings, now=NOW).as_dict()

    expected = {
        "lost_jobs": 1,
        "queue_rows_without_job": 0,
        "queue_rows_of_unqueued_jobs": 1,
        "requeued_jobs": 1,
        "never_queued_jobs": 1,
        "job_dirs_removed": 2,
        "handoff_dirs_removed": 1,
    }
    assert dry["fixed"] == fixed["fixed"] == expected
    assert dry["dry_run"] is True and fixed["total"] == 7 and fixed["errors"] == []
    # A week-old handoff folder goes; a recent one, and what LaunchJob did not make, stay.
    assert fixed["ids"]["handoff_dirs_removed"] == [str(handoff / "job-7")]
    assert sorted(p.name for p in handoff.iterdir()) == ["job-8", "x"]
    assert fixed["ids"]["lost_jobs"] == [2] and fixed["ids"]["requeued_jobs"] == [4]
    assert fixed["ids"]["never_queued_jobs"] == [5]
    assert sorted(fixed["ids"]["job_dirs_removed"]) == [str(root / "7"), str(root / "999")]
    with any_db.read() as s:
        status = dict(s.execute(select(Job.id, Job.status)).all())
        lost = s.get_one(Job, 2)
        queue = dict(s.execute(select(ScheduleEntry.job, ScheduleEntry.after)).all())
        assert s.get_one(Job, 5).reason == "never queued"
    assert status == {
        1: "running",
        2: "lost",
        3: "scheduled",
        4: "scheduled",
        5: "failed",
        6: "loaded",
        7: "success",
        8: "success",
        9: "scheduled",  # the lost job runs again: its platform interrupted it
    }
    assert "stopped renewing" in lost.reason and lost.end is not None
    with any_db.read() as s:
        assert s.get_one(Job, 9).retry_of == 2
    assert set(queue) == {3, 4, 9} and queue[4] == NOW + timedelta(days=1)
    assert sorted(p.name for p in root.iterdir()) == ["1", "2", "8", "notes"]
    again = fix_orphans(any_db, any_db.settings, now=NOW).as_dict()
    assert again["total"] == 0


def test_without_the_recovery_helper_lost_jobs_are_marked_by_a_conditional_update(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiflexi.housekeeping import orphans

    monkeypatch.setattr(orphans, "_recovery_hook", lambda: None)
    rt = make_setup(any_db)
    seed = Seed()
    for job_id in (1, 2):
        seed.job(job_id, rt, "running", 0)
    seed.insert(any_db)
    with any_db.session() as s:
        s.execute(
            update(Job)
            .where(Job.id == 1)
            .values(lease_until=NOW - timedelta(minutes=1), worker="w@gone")
        )
    report = fix_orphans(any_db, any_db.settings, now=NOW).as_dict()
    assert report["recovery"] == "builtin" and report["ids"]["lost_jobs"] == [1]
    with any_db.read() as s:
        lost, alive = s.get_one(Job, 1), s.get_one(Job, 2)
    assert lost.status == "lost" and lost.lease_until is None and lost.end == NOW
    assert "w@gone stopped renewing" in lost.reason
    assert alive.status == "running"


def test_the_executor_recovery_helper_is_used_when_it_exists(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[datetime] = []

    def requeue_lost(db: Database, settings: Settings, now: datetime) -> list[int]:
        calls.append(now)
        return [41, 42]

    module = types.ModuleType("multiflexi.recovery")
    module.requeue_lost = requeue_lost  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "multiflexi.recovery", module)
    report = fix_orphans(sqlite_db, sqlite_db.settings, now=NOW).as_dict()
    assert calls == [NOW]
    assert report["recovery"] == "multiflexi.recovery"
    assert report["fixed"]["lost_jobs"] == 2 and report["ids"]["lost_jobs"] == [41, 42]


# -- the lock and the periodic run -----------------------------------------------------


def test_only_one_instance_holds_the_housekeeping_lock(any_db: Database) -> None:
    assert acquire_lock(any_db, "host-a")
    assert not acquire_lock(any_db, "host-b")
    assert run_housekeeping(any_db, any_db.settings)["skipped"] == SKIPPED
    with any_db.session() as s:  # host-a died: its lock expires
        s.execute(update(Lock).values(until=NOW - timedelta(minutes=1)))
    assert acquire_lock(any_db, "host-b")
    release_lock(any_db, "host-a")  # not a's any more: nothing happens
    assert count(any_db, Lock) == 1
    release_lock(any_db, "host-b")
    assert count(any_db, Lock) == 0


def test_run_housekeeping_repairs_then_prunes_and_gives_the_lock_back(any_db: Database) -> None:
    small_world(any_db)
    settings = with_retention(any_db, keep_last="2", keep_failures="1", artifact_days="30")
    dry = run_housekeeping(any_db, settings, now=NOW, dry_run=True)
    report = run_housekeeping(any_db, settings, now=NOW)
    assert dry["prune"]["jobs_deleted"] == report["prune"]["jobs_deleted"] == 7
    assert report["prune"]["jobs_artifacts_pruned"] == 1
    assert report["orphans"]["fixed"]["lost_jobs"] == 0
    assert set(report) == {"dry_run", "orphans", "prune", "space", "seconds"}
    assert count(any_db, Lock) == 0

"""Daemon heartbeats in table worker, cluster locks, and housekeeping once per cluster."""

from __future__ import annotations

import logging
import sys
import threading
import types
from datetime import timedelta

import pytest
from sqlalchemy import select

from multiflexi import workers
from multiflexi.config import settings_from_values
from multiflexi.daemons.executor import HOUSEKEEPING_LOCK, ExecutorDaemon
from multiflexi.storage.database import Database
from multiflexi.storage.types import utcnow


def test_a_daemon_is_alive_while_it_beats(sqlite_db: Database) -> None:
    workers.register(sqlite_db, "exec-1", "executor")
    workers.register(sqlite_db, "sched-1", "scheduler")
    workers.mark_stopped(sqlite_db, "sched-1")
    now = utcnow()
    with sqlite_db.read() as session:
        rows = {w["id"]: w for w in workers.list_workers(session, now)}
        assert rows["exec-1"]["alive"] and not rows["sched-1"]["alive"]
        later = now + timedelta(seconds=3 * workers.BEAT_SECONDS + 1)
        assert not {w["id"]: w for w in workers.list_workers(session, later)}["exec-1"]["alive"]
    workers.beat(sqlite_db, "exec-1")
    with sqlite_db.read() as session:
        assert {w["id"]: w for w in workers.list_workers(session)}["exec-1"]["alive"]


def test_a_lock_has_one_holder_until_it_expires(any_db: Database) -> None:
    now = utcnow()
    assert workers.acquire_lock(any_db, "chore", "a", 60, now)
    assert not workers.acquire_lock(any_db, "chore", "b", 60, now)
    assert workers.acquire_lock(any_db, "chore", "a", 60, now)  # the holder renews
    assert workers.acquire_lock(any_db, "chore", "b", 60, now + timedelta(seconds=61))
    workers.release_lock(any_db, "chore", "a")  # not the holder any more: no effect
    assert not workers.acquire_lock(any_db, "chore", "a", 60, now + timedelta(seconds=62))
    workers.release_lock(any_db, "chore", "b")
    assert workers.acquire_lock(any_db, "chore", "a", 60, now + timedelta(seconds=63))


def test_racing_for_a_lock_makes_exactly_one_winner(any_db: Database) -> None:
    barrier = threading.Barrier(4)
    won: list[str] = []

    def race(name: str) -> None:
        barrier.wait(10)
        if workers.acquire_lock(any_db, "race", name, 60):
            won.append(name)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1


def test_housekeeping_runs_on_one_executor_per_interval(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    finished = threading.Event()
    fake = types.ModuleType("multiflexi.housekeeping.service")

    def run_housekeeping(db: Database, settings: object) -> None:
        ran.append(threading.current_thread().name)
        finished.set()

    fake.run_housekeeping = run_housekeeping  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "multiflexi.housekeeping.service", fake)
    settings = settings_from_values(
        {**sqlite_db.settings.raw, "MULTIFLEXI_HOUSEKEEPING_INTERVAL": "3600"}
    )
    executors = [
        ExecutorDaemon(sqlite_db, settings, worker_id=f"exec-{i}", job_hooks=[]) for i in range(2)
    ]
    now = utcnow()
    for executor in executors:
        executor._maintain(now)
    assert finished.wait(10)
    for executor in executors:
        assert executor.finish_chores(10)
    assert len(ran) == 1
    # The next interval, on whichever executor gets there first.
    later = now + timedelta(seconds=3601)
    executors[1]._maintain(later)
    assert executors[1].finish_chores(10)
    assert len(ran) == 2


def test_without_the_housekeeping_module_nothing_runs(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "multiflexi.housekeeping.service", None)  # ImportError
    settings = settings_from_values(
        {**sqlite_db.settings.raw, "MULTIFLEXI_HOUSEKEEPING_INTERVAL": "60"}
    )
    executor = ExecutorDaemon(sqlite_db, settings, worker_id="exec", job_hooks=[])
    executor._maintain(utcnow())
    assert executor._housekeeper is None
    assert workers.acquire_lock(sqlite_db, HOUSEKEEPING_LOCK, "someone-else", 60)


def test_the_executor_runs_the_real_housekeeping(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_from_values(
        {**sqlite_db.settings.raw, "MULTIFLEXI_HOUSEKEEPING_INTERVAL": "3600"}
    )
    executor = ExecutorDaemon(sqlite_db, settings, worker_id="exec", job_hooks=[])
    with caplog.at_level(logging.INFO, "multiflexi.executor"):
        executor._maintain(utcnow())
        assert executor._housekeeper is not None
        assert executor.finish_chores(60)
    lines = [r.getMessage() for r in caplog.records if "action=housekeeping" in r.getMessage()]
    assert lines[-1] == "action=housekeeping phase=end", lines


def test_a_pass_over_due_jobs_returns_only_after_the_housekeeping_it_started(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``queue:process`` and ``--once`` start housekeeping on a thread like the daemon;
    returning before it ends would let the caller close the database under it."""
    release = threading.Event()
    ended: list[bool] = []
    fake = types.ModuleType("multiflexi.housekeeping.service")

    def run_housekeeping(db: Database, settings: object) -> None:
        with db.read() as session:  # holds a pooled connection while it waits
            release.wait(10)
            session.execute(select(1))
        ended.append(True)

    fake.run_housekeeping = run_housekeeping  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "multiflexi.housekeeping.service", fake)
    settings = settings_from_values(
        {**any_db.settings.raw, "MULTIFLEXI_HOUSEKEEPING_INTERVAL": "60"}
    )
    executor = ExecutorDaemon(any_db, settings, worker_id="exec", job_hooks=[])
    threading.Timer(0.3, release.set).start()
    executor.process()
    assert ended == [True]
    assert executor.finish_chores(0)

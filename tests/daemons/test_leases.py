"""The lease keeper's thread and the job threads it serves: a released job is not written
about any more once ``release`` returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from multiflexi import queue
from multiflexi.jobs.leases import LeaseKeeper
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from tests.factories import make_setup


class SlowWrites:
    """The database, with the keeper's writes held until ``go`` is set."""

    def __init__(self, db: Database) -> None:
        self.db, self.entered, self.go = db, threading.Event(), threading.Event()
        self.finished: list[float] = []

    def transact(self, fn: Callable[[Any], Any], **kwargs: Any) -> Any:
        self.entered.set()
        self.go.wait(10)
        try:
            return self.db.transact(fn, **kwargs)
        finally:
            self.finished.append(time.monotonic())


def test_release_waits_for_a_write_about_the_job_in_progress(sqlite_db: Database) -> None:
    *_, rt = make_setup(sqlite_db, executable="/bin/true", overlap="allow")
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    claim = queue.claim_next(sqlite_db, "worker-a", 60)
    assert claim is not None and claim.job_id == job_id
    slow = SlowWrites(sqlite_db)
    keeper = LeaseKeeper(slow, 60)  # type: ignore[arg-type]
    lease = keeper.watch(claim)
    lease.pid = 4242
    assert slow.entered.wait(5)  # the keeper is recording the pid

    released: list[float] = []
    releaser = threading.Thread(target=lambda: (keeper.release(lease), released.append(0)))
    releaser.start()
    time.sleep(0.3)
    assert released == []  # still waiting for the write
    slow.go.set()
    releaser.join(5)
    assert released == [0] and len(slow.finished) == 1
    with sqlite_db.read() as session:
        assert session.get(Job, job_id).pid == 4242  # type: ignore[union-attr]


def test_a_lease_released_before_its_turn_is_not_written_about(sqlite_db: Database) -> None:
    *_, rt = make_setup(sqlite_db, executable="/bin/true", overlap="allow")
    ids = [create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id for _ in range(2)]
    claims = [queue.claim_next(sqlite_db, "worker-a", 60) for _ in ids]
    slow = SlowWrites(sqlite_db)
    keeper = LeaseKeeper(slow, 60)  # type: ignore[arg-type]
    first, second = (keeper.watch(c) for c in claims)  # type: ignore[arg-type]
    first.pid, second.pid = 1111, 2222
    assert slow.entered.wait(5)  # writing about the first; the second is next in its list
    releaser = threading.Thread(target=keeper.release, args=(second,))
    releaser.start()
    releaser.join(5)
    assert not releaser.is_alive()  # nothing was being written about the second
    slow.go.set()
    keeper.release(first)
    time.sleep(0.3)  # the keeper's next look
    assert len(slow.finished) == 1
    with sqlite_db.read() as session:
        pids = [session.get(Job, i).pid for i in ids]  # type: ignore[union-attr]
    assert pids == [1111, None]

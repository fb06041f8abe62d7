"""Keeping the leases of running jobs alive: one thread per runner, not one per job.

A claimed job belongs to its worker while the lease lasts. :class:`LeaseKeeper` renews
the lease of every job its runner is running, every third of the lease, and records each
job's pid shortly after the process started (jobs that end sooner get it with their
final status). A renewal that finds the job no longer ours (marked lost by recovery,
deleted) sets the job's ``lost`` event: the runner then stops the process and does not
write a final status over the one recovery wrote. A renewal that finds the job's cancel
requested (``job:cancel``, from any host) sets its ``cancel`` event with who asked and
when: the runner stops the process and records the job ``cancelled``. On PostgreSQL the
request also arrives by NOTIFY (:meth:`LeaseKeeper.poke`), and is looked at at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection

from multiflexi import queue
from multiflexi.storage.models import Job, table_of

if TYPE_CHECKING:
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.jobs")

#: A running job's pid is written this long after it started, unless it ended already.
PID_DELAY = 0.2

_JOB = table_of(Job)
_RECORD_PID = (
    update(_JOB)
    .where(_JOB.c.id == bindparam("b_job"), _JOB.c.worker == bindparam("b_worker"))
    .values(pid=bindparam("b_pid"))
)


@dataclass(eq=False)
class Lease:
    """One job's lease, as the keeper sees it."""

    claim: queue.Claim
    since: float
    next_renewal: float
    lost: threading.Event = field(default_factory=threading.Event)
    #: Set when someone asked to cancel the job; ``cancel_reason`` says who and when.
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    pid: int | None = None
    pid_recorded: bool = False


class LeaseKeeper:
    """Renews the leases of the jobs one runner runs, from one daemon thread.

    The thread looks at its leases every :data:`PID_DELAY` seconds while there are any and
    sleeps otherwise: at hundreds of jobs a second, per-job timers would cost more than
    the jobs' own bookkeeping.
    """

    def __init__(self, db: Database, lease_seconds: float) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.interval = max(lease_seconds / 3, 0.5)
        self._leases: dict[int, Lease] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._writing: Lease | None = None  # the lease the thread is writing about

    def watch(self, claim: queue.Claim) -> Lease:
        now = time.monotonic()
        lease = Lease(claim, since=now, next_renewal=now + self.interval)
        with self._wake:
            idle = not self._leases
            self._leases[id(lease)] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            elif idle:
                self._wake.notify_all()
        return lease

    def poke(self, job_id: int) -> None:
        """Renew (and so look for a cancel request of) ``job_id``'s lease at the next
        look, within :data:`PID_DELAY`, instead of at its turn."""
        with self._wake:
            for lease in self._leases.values():
                if lease.claim.job_id == job_id:
                    lease.next_renewal = 0.0

    def release(self, lease: Lease) -> None:
        """Stop watching; returns once no write about this job is going on here, so that
        when the job's thread is done nothing of the job is left in a transaction."""
        with self._wake:
            self._leases.pop(id(lease), None)
            while self._writing is lease:
                self._wake.wait()

    def _due(self) -> list[Lease]:
        with self._wake:
            while not self._leases:
                self._wake.wait()
            leases = list(self._leases.values())
        return leases

    def _run(self) -> None:
        while True:
            time.sleep(PID_DELAY)
            now = time.monotonic()
            for lease in self._due():
                with self._wake:
                    if id(lease) not in self._leases:
                        continue  # released since _due() looked
                    self._writing = lease
                try:
                    self._look_after(lease, now)
                finally:
                    with self._wake:
                        self._writing = None
                        self._wake.notify_all()

    def _look_after(self, lease: Lease, now: float) -> None:
        if lease.pid is not None and not lease.pid_recorded and now - lease.since >= PID_DELAY:
            self._record_pid(lease, lease.pid)
        if now >= lease.next_renewal and not lease.lost.is_set():
            lease.next_renewal = now + self.interval
            self._renew(lease)

    def _record_pid(self, lease: Lease, pid: int) -> None:
        values = {"b_job": lease.claim.job_id, "b_worker": lease.claim.worker, "b_pid": pid}

        def write(conn: Connection) -> None:
            conn.execute(_RECORD_PID, values)

        lease.pid_recorded = True  # once: a failure is not worth a retry
        try:
            self.db.transact(write)
        except Exception as exc:
            log.warning("action=record_pid_failed job_id=%s error=%s", lease.claim.job_id, exc)

    def _renew(self, lease: Lease) -> None:
        try:
            renewal = queue.renew(self.db, lease.claim, self.lease_seconds)
        except Exception as exc:  # the database may come back before the lease ends
            log.warning("action=heartbeat_failed job_id=%s error=%s", lease.claim.job_id, exc)
            return
        if not renewal.ours:
            log.warning("action=lease_lost job_id=%s", lease.claim.job_id)
            lease.lost.set()
            return
        if renewal.cancel_requested is not None and not lease.cancel.is_set():
            from multiflexi.jobs.cancel import cancelled_reason

            lease.cancel_reason = cancelled_reason(renewal.cancel_by, renewal.cancel_requested)
            log.info(
                "action=cancel_requested job_id=%s by=%s", lease.claim.job_id, renewal.cancel_by
            )
            lease.cancel.set()

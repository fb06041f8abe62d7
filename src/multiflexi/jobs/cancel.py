"""Stopping jobs on purpose: ``job:cancel``, ``job:delete --force``, an interrupted
``job:run``.

* A **waiting** job (``loaded``, ``scheduled``) is cancelled at once, with who asked.
* A **running** job, on any host, gets a cancel request in its row (``cancel_requested``,
  ``cancel_by``). The executor that runs it -- a daemon or a ``job:run`` process -- sees
  it at its next heartbeat (every third of ``MULTIFLEXI_LEASE_SECONDS``), on PostgreSQL
  at once by NOTIFY, terminates the job's process group (SIGTERM,
  ``MULTIFLEXI_KILL_GRACE``, SIGKILL), keeps the output and files so far, and records
  the job ``cancelled`` with who asked and when. If that executor is dead, the recovery
  that finds its lease expired records the job ``cancelled`` instead of ``lost`` and
  queues no retry.
* A ``job:run`` interrupted by SIGINT, SIGTERM or SIGHUP stops its job the same way and
  records ``interrupted by SIGINT`` (or the signal's name).

A cancelled job is never retried and counts neither as a success nor as a failure of
its run template.
"""

from __future__ import annotations

import signal as signals
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy import select

from multiflexi.errors import NotFound
from multiflexi.storage.models import FINAL_STATUSES, Job, JobStatus

if TYPE_CHECKING:
    from multiflexi.queue import CancelState
    from multiflexi.storage.database import Database

#: What ``job:run`` stops its job for.
INTERRUPTS = (signals.SIGINT, signals.SIGTERM, signals.SIGHUP)


def requester() -> str:
    """Who asks, as ``user@host``."""
    from multiflexi.queue import HOSTNAME
    from multiflexi.users import unix_login

    return f"{unix_login()}@{HOSTNAME}"[:255]


def cancelled_reason(who: str, when: datetime | None) -> str:
    """The reason a cancelled job records."""
    at = f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when is not None else ""
    return f"cancelled by {who or '?'}{at}"


@dataclass(frozen=True)
class StopRequest:
    """How a job stopped on purpose is recorded."""

    status: JobStatus
    reason: str


class StopEvent(threading.Event):
    """A cancel event that says why: the first :meth:`request` wins."""

    def __init__(self) -> None:
        super().__init__()
        self.request: StopRequest | None = None

    def ask(self, request: StopRequest) -> None:
        if self.request is None:
            self.request = request
        self.set()


def cancel_job(db: Database, job_id: int, who: str | None = None) -> CancelState:
    """Cancel a waiting job, or ask the executor of a running one to stop it."""
    from multiflexi.queue import request_cancel
    from multiflexi.storage.types import utcnow

    asker = who or requester()
    return request_cancel(db, job_id, asker, cancelled_reason(asker, utcnow()))


def wait_final(db: Database, job_id: int, timeout: float, every: float = 0.2) -> str | None:
    """Wait until the job has a final status; returns it, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status is None:
            raise NotFound(f"job {job_id} not found")
        if JobStatus(status) in FINAL_STATUSES:
            return str(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)


def stop_wait(lease_seconds: float, kill_grace: float) -> float:
    """How long a running job may take to stop after its cancel was asked for: the
    executor's next heartbeat, the kill grace, and time to store what it left."""
    return max(lease_seconds / 3, 0.5) + kill_grace + 30.0


# -- job:run, interrupted ------------------------------------------------------------------


class Interrupts:
    """SIGINT, SIGTERM and SIGHUP for a process that runs one job in its main thread
    (``job:run``): the first asks to stop the job (``interrupted by SIGINT``) instead of
    ending the process while its job runs on; the job then ends within the kill grace,
    and later signals change nothing. Handlers only set flags and events."""

    def __init__(self, cancel: StopEvent) -> None:
        self.cancel = cancel
        self.received: int | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signum
        name = signals.Signals(signum).name
        self.cancel.request = self.cancel.request or StopRequest(
            JobStatus.CANCELLED, f"interrupted by {name}"
        )
        _set_soon(self.cancel)

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number, as a shell reports a process it ended (130 for
        SIGINT, 143 for SIGTERM, 129 for SIGHUP); None while none arrived."""
        return None if self.received is None else 128 + self.received

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """The handlers for the block, the previous ones after it (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signals.getsignal(signum) for signum in INTERRUPTS}
        for signum in INTERRUPTS:
            signals.signal(signum, self._on_signal)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signals.signal(signum, handler)


def _set_soon(event: threading.Event) -> None:
    from multiflexi.daemons.signals import set_soon

    set_soon(event)

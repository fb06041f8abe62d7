"""The executor's worker threads: at most ``limit`` job processes at once, and starts
before bookkeeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from multiflexi.queue import Claim


class Slot(Protocol):
    """What a job tells its pool: its process started (or never will), its process ended."""

    def started(self) -> None: ...

    def ended(self) -> None: ...


class JobPool:
    """Runs claimed jobs on worker threads, at most ``limit`` processes at once; the limit
    may change (SIGHUP).

    ``work(claim, slot)`` calls ``slot.started()`` once the job's process has started and
    ``slot.ended()`` once it has ended: the slot is then free for the next claim while
    this job still stores its output and final status. That bookkeeping first waits (at
    most ``HANDOVER_SECONDS``) until the claim the free slot called for has been tried
    and the jobs being started have started: the threads share one interpreter, and a
    start is what someone is waiting for (with 8 executors on 2 cores, ~2 ms per job).
    Threads are kept and reused: starting one per job cost a third of a short job's
    bookkeeping.
    """

    #: An idle worker thread above what the limit needs ends after this long.
    IDLE_SECONDS = 60.0
    #: The longest a finished job's bookkeeping waits for the next start.
    HANDOVER_SECONDS = 0.05

    def __init__(
        self,
        work: Callable[[Claim, Slot], None],
        limit: int,
        on_done: Callable[[], None],
    ):
        self.work, self.limit, self.on_done = work, limit, on_done
        self._cond = threading.Condition()
        self._waiting: list[Claim] = []
        self._slots = 0  # claims whose process may still run
        self._jobs = 0  # claims not finished with
        self._idle = 0
        self._starting = 0  # claims whose process has not started yet
        self._freed = 0  # slots freed so far
        self._looked = 0  # of those, how many the claimer had seen when it last looked

    def running(self) -> int:
        """Jobs not finished with (their process may have ended)."""
        with self._cond:
            return self._jobs

    def free(self) -> int:
        with self._cond:
            return max(0, self.limit - self._slots)

    def submit(self, claim: Claim) -> None:
        with self._cond:
            self._slots += 1
            self._jobs += 1
            self._starting += 1
            self._waiting.append(claim)
            if self._idle:
                self._cond.notify_all()  # join() may wait on the same condition
                return
        threading.Thread(target=self._serve, name="job-worker", daemon=True).start()

    def claimed(self) -> None:
        """The claimer has looked for due jobs after the slots freed so far."""
        with self._cond:
            if self._looked != self._freed:
                self._looked = self._freed
                self._cond.notify_all()

    def _count_start(self) -> None:
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()

    def _free_slot(self) -> int:
        with self._cond:
            self._slots -= 1
            self._freed += 1
            freed = self._freed
        self.on_done()
        return freed

    def _settle(self, freed: int) -> None:
        """Wait until the claimer has looked after slot number ``freed`` was freed and
        what was claimed has started."""
        deadline = time.monotonic() + self.HANDOVER_SECONDS
        with self._cond:
            while self._looked < freed or self._starting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _next(self) -> Claim | None:
        with self._cond:
            self._idle += 1
            try:
                while not self._waiting:
                    if not self._cond.wait(self.IDLE_SECONDS) and not self._waiting:
                        return None
                return self._waiting.pop(0)
            finally:
                self._idle -= 1

    def _serve(self) -> None:
        while (claim := self._next()) is not None:
            slot = _JobSlot(self)
            try:
                self.work(claim, slot)
            finally:
                with self._cond:
                    self._jobs -= 1
                    self._cond.notify_all()
                slot.ended(settle=False)
                self.on_done()

    def join(self, timeout: float | None, interrupt: threading.Event | None = None) -> bool:
        """Wait until no job runs; False on timeout or when ``interrupt`` is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs:
                if interrupt is not None and interrupt.is_set():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.2 if left is None else min(left, 0.2))
        return True


class _JobSlot:
    """One job's place in the pool; each transition counts once. Used by the job's own
    thread only."""

    def __init__(self, pool: JobPool) -> None:
        self.pool = pool
        self.is_started = self.is_ended = False

    def started(self) -> None:
        if not self.is_started:
            self.is_started = True
            self.pool._count_start()

    def ended(self, *, settle: bool = True) -> None:
        self.started()
        if self.is_ended:
            return
        self.is_ended = True
        freed = self.pool._free_slot()
        if settle:
            self.pool._settle(freed)

"""The executor's worker threads: at most ``limit`` job processes at once; a long job's
successor starts before its bookkeeping, a short job's thread runs its successor itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from multiflexi.queue import Claim


class Slot(Protocol):
    """What a job tells its pool: its process started (or never will), its process ended;
    and, for a short job, the successor its thread claimed for itself."""

    def started(self) -> None: ...

    def ended(self) -> None: ...

    def may_go_on(self) -> bool:
        """Whether this thread may run a next job in this slot: the process was short
        (the slot was not freed when it ended) and the limit allows."""
        ...

    def go_on_with(self, claim: Claim | None) -> None:
        """A successor was looked for: run ``claim`` next; None: nothing more to ask."""
        ...


class JobPool:
    """Runs claimed jobs on worker threads, at most ``limit`` processes at once; the limit
    may change (SIGHUP).

    ``work(claim, slot)`` calls ``slot.started()`` once the job's process has started and
    ``slot.ended()`` once it has ended. What happens next depends on how long the process
    ran:

    * At least ``OVERLAP_AFTER``: the slot is free at once for the next claim while this
      job still stores its output and final status. That bookkeeping first waits (at
      most ``HANDOVER_SECONDS``) until the claim the free slot called for has been tried
      and the jobs being started have started: the threads share one interpreter, and a
      start is what someone is waiting for (with 8 executors on 2 cores, ~2 ms per job).
    * Shorter: the job keeps its slot through its bookkeeping, and its thread runs the
      next claim itself: the one ``work`` passed to ``slot.go_on_with()`` (the executor
      claims it in the transaction that finishes the job), else one it asks ``refill()``
      for. Only when there is none does it free the slot (and call ``on_done``). For
      short jobs the hand-over between threads cost more than the overlap gave: a
      quarter of the executor's CPU per job (six times the context switches), measured
      side by side in benchmarks/experiments.md.

    Threads are kept and reused: starting one per job cost a third of a short job's
    bookkeeping.
    """

    #: An idle worker thread above what the limit needs ends after this long.
    IDLE_SECONDS = 60.0
    #: The longest a finished job's bookkeeping waits for the next start.
    HANDOVER_SECONDS = 0.05
    #: A process that ran this long frees its slot before its job's bookkeeping.
    OVERLAP_AFTER = 0.05

    def __init__(
        self,
        work: Callable[[Claim, Slot], None],
        limit: int,
        on_done: Callable[[], None],
        refill: Callable[[], Claim | None] | None = None,
    ):
        self.work, self.limit, self.on_done = work, limit, on_done
        self.refill = refill
        self._cond = threading.Condition()
        self._waiting: list[Claim] = []
        self._slots = 0  # claims whose process may still run
        self._jobs = 0  # claims not finished with
        self._ended = 0  # claims finished with so far (their final status is written)
        self._idle = 0
        self._starting = 0  # claims whose process has not started yet
        self._freed = 0  # slots freed so far
        self._looked = 0  # of those, how many the claimer had seen when it last looked

    def running(self) -> int:
        """Jobs not finished with (their process may have ended)."""
        with self._cond:
            return self._jobs

    def ended(self) -> int:
        """How many claims were finished with so far: a caller that saw the same number
        before and after looking for due jobs knows no job ended meanwhile (an ended job
        may have unblocked one of its template's, see ExecutorDaemon.process)."""
        with self._cond:
            return self._ended

    def free(self) -> int:
        with self._cond:
            return max(0, self.limit - self._slots)

    def _within_limit(self) -> bool:
        """No more slots taken than the limit allows (SIGHUP may have lowered it)."""
        with self._cond:
            return self._slots <= self.limit

    def submit(self, claim: Claim) -> None:
        with self._cond:
            self._slots += 1
            self._jobs += 1
            self._starting += 1
        self._hand_out(claim)

    def _hand_out(self, claim: Claim) -> None:
        """To an idle thread, or a new one; the claim's slot and counts are taken."""
        with self._cond:
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
        claim = self._next()
        while claim is not None:
            slot = _JobSlot(self)
            done = False
            try:
                self.work(claim, slot)
                done = True
            finally:
                # After an exception nothing more is claimed: the thread ends with it,
                # and a successor claimed already goes to another thread.
                follow = self._after(slot, go_on=done)
                if follow is not None and not done:
                    self._hand_out(follow)
            claim = follow or self._next()

    def _after(self, slot: _JobSlot, *, go_on: bool) -> Claim | None:
        """A job is finished with: the next claim for this thread to run, or None (the
        slot is free, the thread waits in :meth:`_next`)."""
        follow = slot.follow
        refill = self.refill if go_on and not slot.looked else None
        if follow is None and refill is not None and slot.may_go_on():
            try:
                follow = refill()
            except Exception:  # the claiming loop's turn: it logs what keeps failing
                follow = None
        if follow is not None:  # the slot and the running count pass to it
            with self._cond:
                self._starting += 1
                self._ended += 1
            return follow
        with self._cond:
            self._jobs -= 1
            self._ended += 1
            self._cond.notify_all()
        if slot.is_freed:
            self.on_done()  # freed when its process ended: now it is over too
        else:
            slot.free()  # calls on_done
        return None

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
        self.is_started = self.is_freed = False
        self.started_at = 0.0
        self.looked = False  # work looked for a successor (go_on_with)
        self.follow: Claim | None = None

    def started(self) -> None:
        if not self.is_started:
            self.is_started = True
            self.started_at = time.monotonic()
            self.pool._count_start()

    def ended(self) -> None:
        """The job's process has ended: a long one's slot is free now (see JobPool)."""
        self.started()
        if self.is_freed or time.monotonic() - self.started_at < self.pool.OVERLAP_AFTER:
            return
        self.pool._settle(self.free())

    def may_go_on(self) -> bool:
        return not self.is_freed and self.pool._within_limit()

    def go_on_with(self, claim: Claim | None) -> None:
        self.looked = True
        self.follow = claim

    def free(self) -> int:
        """Give the slot back (once); the number of slots freed so far."""
        self.started()
        if self.is_freed:
            return 0
        self.is_freed = True
        return self.pool._free_slot()

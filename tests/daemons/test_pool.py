"""The executor's pool of job threads: slots; a long job's slot free before its
bookkeeping, a short job's thread going on with the next claim itself."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from multiflexi.daemons.pool import JobPool, Slot
from multiflexi.queue import Claim


def claim(job_id: int) -> Claim:
    return Claim(job_id, "worker-a", datetime(2026, 1, 1))


def test_the_pool_bounds_jobs_and_join_has_a_deadline() -> None:
    release, done = threading.Event(), threading.Event()

    def work(_job: Claim, _slot: Slot) -> None:
        release.wait(10)

    pool = JobPool(work, 2, done.set)
    for job_id in (1, 2):
        pool.submit(claim(job_id))
    assert pool.running() == 2 and pool.free() == 0
    assert pool.join(0.05) is False
    interrupt = threading.Event()
    interrupt.set()
    assert pool.join(None, interrupt) is False
    pool.limit = 3  # SIGHUP may raise the limit while jobs run
    assert pool.free() == 1
    release.set()
    assert pool.join(10) is True and done.is_set() and pool.running() == 0


def test_a_slot_is_free_again_when_the_process_ends_before_the_job_is_finished_with() -> None:
    ended, finish = threading.Event(), threading.Event()

    def work(_claim: Claim, slot: Slot) -> None:
        slot.started()
        slot.ended()
        slot.ended()  # twice is once
        ended.set()
        finish.wait(5)

    pool = JobPool(work, limit=1, on_done=lambda: None)
    pool.HANDOVER_SECONDS = 0.0
    pool.OVERLAP_AFTER = 0.0  # every process counts as a long one
    pool.submit(claim(1))
    assert ended.wait(5)
    assert (pool.free(), pool.running()) == (1, 1)
    assert pool.join(0.05) is False  # still storing: a drain waits for it
    finish.set()
    assert pool.join(5)
    assert (pool.free(), pool.running()) == (1, 0)


def test_bookkeeping_of_a_finished_job_waits_for_the_next_job_to_start() -> None:
    events: list[str] = []
    go = threading.Event()

    def work(job: Claim, slot: Slot) -> None:
        if job.job_id == 1:
            slot.started()
            slot.ended()  # waits for the claimer and for job 2's start
            events.append("bookkeeping of 1")
        else:
            go.wait(5)
            events.append("start of 2")
            slot.started()

    pool = JobPool(work, limit=1, on_done=lambda: None)
    pool.HANDOVER_SECONDS = 5.0
    pool.OVERLAP_AFTER = 0.0
    pool.submit(claim(1))
    deadline = time.monotonic() + 5
    while pool.free() == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    pool.submit(claim(2))
    pool.claimed()
    time.sleep(0.1)
    events.append("go")
    go.set()
    assert pool.join(10)
    assert events == ["go", "start of 2", "bookkeeping of 1"]


def test_bookkeeping_goes_on_at_once_when_the_claimer_found_nothing() -> None:
    waited: list[float] = []
    pool: JobPool

    def work(_job: Claim, slot: Slot) -> None:
        slot.started()
        began = time.monotonic()
        slot.ended()
        waited.append(time.monotonic() - began)

    pool = JobPool(work, limit=1, on_done=lambda: pool.claimed())
    pool.HANDOVER_SECONDS = 5.0
    pool.submit(claim(1))
    assert pool.join(10)
    assert waited and waited[0] < 1.0


def test_bookkeeping_waits_no_longer_than_the_handover_limit() -> None:
    waited: list[float] = []

    def work(_job: Claim, slot: Slot) -> None:
        slot.started()
        began = time.monotonic()
        slot.ended()  # nobody calls claimed(): only the limit ends the wait
        waited.append(time.monotonic() - began)

    pool = JobPool(work, limit=1, on_done=lambda: None)
    pool.HANDOVER_SECONDS = 0.3
    pool.OVERLAP_AFTER = 0.0
    pool.submit(claim(1))
    assert pool.join(10)
    assert waited and 0.25 <= waited[0] < 3.0


def test_a_job_that_fails_before_its_process_starts_does_not_hold_up_the_others() -> None:
    waited: list[float] = []
    failing = threading.Event()

    def work(job: Claim, slot: Slot) -> None:
        if job.job_id == 1:
            slot.started()
            failing.wait(5)
            began = time.monotonic()
            slot.ended()
            waited.append(time.monotonic() - began)
        else:
            failing.set()  # gives up before its process starts: neither started() nor ended()

    pool = JobPool(work, limit=2, on_done=lambda: None)
    pool.HANDOVER_SECONDS = 5.0
    pool.submit(claim(1))
    pool.submit(claim(2))
    time.sleep(0.2)
    pool.claimed()
    assert pool.join(10)
    assert waited and waited[0] < 2.0
    assert (pool.free(), pool.running()) == (2, 0)


def test_a_short_job_keeps_its_slot_until_it_is_finished_with() -> None:
    seen: list[tuple[int, int]] = []
    pool: JobPool

    def work(_job: Claim, slot: Slot) -> None:
        slot.started()
        slot.ended()  # well under OVERLAP_AFTER
        seen.append((pool.free(), pool.running()))

    done = threading.Event()
    pool = JobPool(work, limit=1, on_done=done.set)
    pool.OVERLAP_AFTER = 10.0
    pool.submit(claim(1))
    assert pool.join(10) and done.is_set()
    assert seen == [(0, 1)]  # still holding it while storing output
    assert (pool.free(), pool.running()) == (1, 0)


def test_a_long_job_frees_its_slot_when_its_process_ends_and_is_not_refilled() -> None:
    seen: list[int] = []
    asked: list[int] = []
    pool: JobPool

    def work(_job: Claim, slot: Slot) -> None:
        slot.started()
        time.sleep(0.05)
        slot.ended()
        seen.append(pool.free())

    def refill() -> Claim | None:
        asked.append(1)
        return None

    pool = JobPool(work, limit=1, on_done=lambda: pool.claimed(), refill=refill)
    pool.OVERLAP_AFTER = 0.01
    pool.submit(claim(1))
    assert pool.join(10)
    assert seen == [1] and asked == []  # the claiming loop takes a freed slot


def test_the_thread_of_a_short_job_runs_the_next_claims_itself() -> None:
    threads: list[tuple[int, int]] = []
    running: list[int] = []
    follow = [claim(2), claim(3)]
    done: list[int] = []
    pool: JobPool

    def work(job: Claim, slot: Slot) -> None:
        slot.started()
        slot.ended()
        threads.append((job.job_id, threading.get_ident()))

    def refill() -> Claim | None:
        running.append(pool.running())  # the finished job still counts: no gap at 0
        return follow.pop(0) if follow else None

    pool = JobPool(work, limit=1, on_done=lambda: done.append(pool.running()), refill=refill)
    pool.OVERLAP_AFTER = 10.0
    pool.submit(claim(1))
    assert pool.join(10)
    assert [job_id for job_id, _ in threads] == [1, 2, 3]
    assert len({ident for _, ident in threads}) == 1
    assert running == [1, 1, 1]
    assert done == [0]  # the loop is woken once, when no claim followed
    assert (pool.free(), pool.running()) == (1, 0)
    pool.submit(claim(4))  # the idle thread takes the next submitted claim
    assert pool.join(10)
    assert [job_id for job_id, _ in threads] == [1, 2, 3, 4]
    assert len({ident for _, ident in threads}) == 1


def test_no_refill_above_a_lowered_limit_and_a_failing_refill_frees_the_slot() -> None:
    release = threading.Event()
    asked: list[int] = []
    pool: JobPool

    def work(job: Claim, slot: Slot) -> None:
        slot.started()
        if job.job_id == 1:
            release.wait(10)
        slot.ended()

    def refill() -> Claim | None:
        asked.append(1)
        raise RuntimeError("database gone")

    pool = JobPool(work, limit=2, on_done=lambda: None, refill=refill)
    pool.OVERLAP_AFTER = 10.0
    pool.submit(claim(1))
    pool.submit(claim(2))
    deadline = time.monotonic() + 10
    while pool.running() > 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert asked == [1]  # job 2 asked; the failure freed its slot
    assert (pool.free(), pool.running()) == (1, 1)
    pool.limit = 0  # SIGHUP: job 1's slot is above the limit now
    release.set()
    assert pool.join(10)
    assert asked == [1] and pool.running() == 0


class _Abort(BaseException):
    """What no job path catches (as KeyboardInterrupt would be)."""


def test_a_job_thread_that_dies_claims_nothing_more_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    died: list[threading.Thread] = []
    seen: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))

    def work(_job: Claim, slot: Slot) -> None:
        slot.started()
        died.append(threading.current_thread())
        raise _Abort

    def refill() -> Claim | None:
        asked.append(1)
        return claim(2)

    pool = JobPool(work, limit=1, on_done=lambda: None, refill=refill)
    pool.OVERLAP_AFTER = 10.0
    pool.submit(claim(1))
    assert pool.join(10)
    died[0].join(10)
    assert seen == [_Abort]
    assert asked == [] and (pool.free(), pool.running()) == (1, 0)


def test_a_successor_handed_over_by_the_job_runs_next_on_its_thread_without_a_refill() -> None:
    ran: list[tuple[int, int]] = []
    asked: list[int] = []
    done: list[int] = []
    pool: JobPool

    def work(job: Claim, slot: Slot) -> None:
        slot.started()
        slot.ended()
        ran.append((job.job_id, threading.get_ident()))
        assert slot.may_go_on()  # short: it still holds its slot
        # Jobs 1 and 2 name their successor; job 3 looked and found nothing.
        slot.go_on_with(claim(job.job_id + 1) if job.job_id < 3 else None)

    def refill() -> Claim | None:
        asked.append(1)
        return claim(99)

    pool = JobPool(work, limit=1, on_done=lambda: done.append(pool.running()), refill=refill)
    pool.OVERLAP_AFTER = 10.0
    pool.submit(claim(1))
    assert pool.join(10)
    assert [job_id for job_id, _ in ran] == [1, 2, 3]
    assert len({ident for _, ident in ran}) == 1
    assert asked == []  # a job that looked for its successor is not asked again
    assert done == [0] and (pool.free(), pool.running()) == (1, 0)


def test_a_long_job_may_not_go_on_and_a_lowered_limit_stops_a_short_one() -> None:
    answers: dict[int, bool] = {}
    release = threading.Event()
    pool: JobPool

    def work(job: Claim, slot: Slot) -> None:
        slot.started()
        if job.job_id == 1:
            time.sleep(0.05)  # longer than OVERLAP_AFTER below: its slot is freed
        else:
            release.wait(10)
        slot.ended()
        answers[job.job_id] = slot.may_go_on()

    pool = JobPool(work, limit=2, on_done=lambda: None)
    pool.OVERLAP_AFTER = 0.01
    pool.submit(claim(2))
    pool.submit(claim(1))
    deadline = time.monotonic() + 10
    while 1 not in answers and time.monotonic() < deadline:
        time.sleep(0.005)
    pool.OVERLAP_AFTER = 60.0  # job 2 counts as short...
    pool.limit = 0  # ...but SIGHUP lowered the limit below the slots taken
    release.set()
    assert pool.join(10)
    assert answers == {1: False, 2: False}


def test_a_successor_of_a_job_thread_that_dies_runs_on_another_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[tuple[int, threading.Thread]] = []
    seen: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))

    def work(job: Claim, slot: Slot) -> None:
        slot.started()
        slot.ended()
        ran.append((job.job_id, threading.current_thread()))
        if job.job_id == 1:
            slot.go_on_with(claim(2))  # claimed and committed: it must run
            raise _Abort

    pool = JobPool(work, limit=1, on_done=lambda: None, refill=lambda: None)
    pool.OVERLAP_AFTER = 10.0
    pool.submit(claim(1))
    assert pool.join(10)
    ran[0][1].join(10)
    assert seen == [_Abort]
    assert [job_id for job_id, _ in ran] == [1, 2] and ran[0][1] is not ran[1][1]
    assert (pool.free(), pool.running()) == (1, 0)

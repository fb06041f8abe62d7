"""The benchmark's wait for the last job: few counts while many jobs remain, a look
every ``poll`` near the end."""

from __future__ import annotations

from benchmarks.jobs import next_look
from hypothesis import given
from hypothesis import strategies as st

POLL = 0.02


@given(
    total=st.integers(1, 100_000),
    done=st.integers(0, 100_000),
    elapsed=st.floats(0, 3600, allow_nan=False),
)
def test_the_next_look_is_between_poll_and_a_second(total: int, done: int, elapsed: float) -> None:
    done = min(done, total - 1)
    assert POLL <= next_look(done, total, elapsed, POLL) <= 1.0


def test_before_any_job_finished_it_looks_every_poll() -> None:
    assert next_look(0, 1000, 5.0, POLL) == POLL


def test_it_waits_half_the_time_the_remaining_jobs_need() -> None:
    # 400 of 1000 in 2 s: 200 jobs/s, 600 left need 3 s; the next look in 1 s (the cap)
    assert next_look(400, 1000, 2.0, POLL) == 1.0
    # 900 of 1000 in 2 s: 100 left need 0.22 s; look again in half of it
    assert abs(next_look(900, 1000, 2.0, POLL) - 0.111) < 0.001
    # 999 of 1000: the last one is seen within a poll
    assert next_look(999, 1000, 2.0, POLL) == POLL

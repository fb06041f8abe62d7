"""The retry decision for jobs the platform interrupted, and for the others."""

from __future__ import annotations

from datetime import timedelta

import pytest

from multiflexi.jobs.lifecycle import (
    MAX_INTERRUPTIONS,
    STOPPED_REASON,
    Interruptions,
    is_interruption,
    next_attempt,
)


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("lost", "lost: worker w on h stopped renewing its lease", True),
        ("lost", "lost: restored from backup", True),
        ("failed", STOPPED_REASON, True),
        ("failed", "exit code 1: failure", False),
        ("failed", "timeout after 10 s", False),
        ("success", "", False),
    ],
)
def test_what_counts_as_an_interruption(status: str, reason: str, expected: bool) -> None:
    assert is_interruption(status, reason) is expected


NONE = Interruptions()


@pytest.mark.parametrize(
    ("attempt", "interrupted", "before", "on_interrupt", "max_attempts", "expected"),
    [
        # Interrupted: runs again at once, whatever max_attempts says ...
        (1, True, NONE, "requeue", 1, timedelta(0)),
        (3, True, Interruptions(2, 2), "requeue", 1, timedelta(0)),
        # ... unless the template says it must never run twice,
        (1, True, NONE, "fail", 5, None),
        # ... or it was interrupted too often in a row: then the policy decides.
        (6, True, Interruptions(5, MAX_INTERRUPTIONS), "requeue", 1, None),
        (6, True, Interruptions(5, MAX_INTERRUPTIONS), "requeue", 3, timedelta(seconds=30)),
        # A real failure follows the policy; interruptions used up none of its attempts.
        (1, False, NONE, "requeue", 1, None),
        (3, False, Interruptions(2, 2), "requeue", 2, timedelta(seconds=30)),
        (3, False, Interruptions(1, 1), "requeue", 2, None),
    ],
)
def test_next_attempt(
    attempt: int,
    interrupted: bool,
    before: Interruptions,
    on_interrupt: str,
    max_attempts: int,
    expected: timedelta | None,
) -> None:
    got = next_attempt(
        attempt=attempt,
        interrupted=interrupted,
        before=before,
        on_interrupt=on_interrupt,
        max_attempts=max_attempts,
        backoff="fixed",
        min_gap=30,
    )
    assert got == expected

"""Pure decisions of the job lifecycle: allowed transitions, the final status of a run,
what an exit code means, and whether and when a failed job is retried."""

from __future__ import annotations

import signal as signals
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from multiflexi.storage.models.jobs import FINAL_STATUSES, JobStatus

#: status -> statuses it may move to
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.LOADED: frozenset({JobStatus.SCHEDULED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SCHEDULED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.LOST}),
    JobStatus.SUCCESS: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.LOST: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

#: Exit codes of checks that fail before the process starts (sysexits.h / shell).
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
EXIT_CONFIG = 78
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73
EXIT_IO_ERROR = 74
EXIT_SOFTWARE = 70


def can_move(current: str, target: JobStatus) -> bool:
    return target in TRANSITIONS.get(JobStatus(current), frozenset())


def is_final(status: str) -> bool:
    return JobStatus(status) in FINAL_STATUSES


@dataclass(frozen=True)
class ExitMeaning:
    code: int
    description: str
    severity: str
    retry: bool


def success_codes(meanings: Iterable[ExitMeaning]) -> frozenset[int]:
    """Exit 0 means success unless the app declares other codes with severity success."""
    declared = {m.code for m in meanings if m.severity == "success"}
    return frozenset(declared) if declared else frozenset({0})


def final_status(
    exit_code: int | None, *, timed_out: bool, signal: int | None, ok_codes: frozenset[int]
) -> JobStatus:
    if timed_out or signal is not None or exit_code is None:
        return JobStatus.FAILED
    return JobStatus.SUCCESS if exit_code in ok_codes else JobStatus.FAILED


def signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(
    exit_code: int | None, signal: int | None, meanings: Iterable[ExitMeaning]
) -> str:
    """Human meaning of how a process ended: the app's own words where it declares them."""
    if signal is not None:
        return f"killed by {signal_name(signal)}"
    if exit_code is None:
        return ""
    for meaning in meanings:
        if meaning.code == exit_code:
            return meaning.description
    if exit_code == 0:
        return "success"
    if exit_code == EXIT_NOT_FOUND:
        return "command not found"
    if exit_code == EXIT_NOT_EXECUTABLE:
        return "command not executable"
    if exit_code > 128 and exit_code - 128 < 65:
        return f"exited as if killed by {signal_name(exit_code - 128)}"
    return "failure"


BACKOFFS = ("none", "fixed", "linear", "exponential")


def retry_delay(
    *,
    attempt: int,
    max_attempts: int,
    backoff: str,
    min_gap: int,
) -> timedelta | None:
    """When to run attempt ``attempt + 1`` after attempt ``attempt`` failed; None = give up.

    ``min_gap`` is the base gap in seconds: fixed waits it every time, linear waits
    ``attempt * gap``, exponential ``gap * 2**(attempt-1)``; none retries at once.
    """
    if attempt >= max_attempts:
        return None
    gap = max(min_gap, 0)
    if backoff == "fixed":
        seconds = gap
    elif backoff == "linear":
        seconds = gap * attempt
    elif backoff == "exponential":
        seconds = gap * 2 ** (attempt - 1)
    else:
        seconds = gap
    return timedelta(seconds=min(seconds, 7 * 86400))


#: Who made a job, by its ``schedule_type``; a scheduler's interval names are the rest.
ORIGINS = {
    "adhoc-cli": "cli",
    "adhoc": "cli",
    "retry": "retry",
    "chained": "action",
    "reschedule": "action",
    "api": "api",
    "event": "event",
}


def origin(schedule_type: str) -> str:
    """``cli``, ``api``, ``event``, ``action``, ``retry`` or ``scheduler``: who made a job."""
    return ORIGINS.get(schedule_type, "scheduler")


#: The reason of a job whose executor was stopped (SIGTERM) and cancelled it after the
#: shutdown grace.
STOPPED_REASON = "terminated: the executor was stopped"
#: A run interrupted by the platform this many times in a row is left to the template's
#: own retry policy: a job that takes its executor down with it must not loop for ever.
MAX_INTERRUPTIONS = 5


def is_interruption(status: str, reason: str) -> bool:
    """Whether the platform, not the job, ended it: its executor was stopped before it
    finished (drain timeout), or died and its lease ran out (``lost``)."""
    return status == JobStatus.LOST or reason == STOPPED_REASON


@dataclass(frozen=True)
class Interruptions:
    """The interrupted runs before a job in its chain of attempts: all of them, and those
    right before it (with no other failure between)."""

    total: int = 0
    in_a_row: int = 0


def next_attempt(
    *,
    attempt: int,
    interrupted: bool,
    before: Interruptions,
    on_interrupt: str,
    max_attempts: int,
    backoff: str,
    min_gap: int,
) -> timedelta | None:
    """When the next attempt of a failed or lost job runs; None = it does not.

    A job the platform interrupted is queued again at once, whatever the retry policy,
    unless its template says ``on_interrupt=fail`` (it must never run twice: it may have
    done part of its work) -- up to :data:`MAX_INTERRUPTIONS` in a row, after which the
    policy decides. Interruptions use up none of ``max_attempts``: any other failure
    follows the retry policy (:func:`retry_delay`) counting only the attempts that were
    not interrupted.
    """
    if interrupted and on_interrupt == "fail":
        return None
    if interrupted and before.in_a_row < MAX_INTERRUPTIONS:
        return timedelta(0)
    return retry_delay(
        attempt=max(attempt - before.total, 1),
        max_attempts=max_attempts,
        backoff=backoff,
        min_gap=min_gap,
    )


def not_before(now: datetime, delay: timedelta) -> datetime:
    return now + delay

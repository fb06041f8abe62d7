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


def not_before(now: datetime, delay: timedelta) -> datetime:
    return now + delay

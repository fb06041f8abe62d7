"""The executor seam: what to launch, where the output goes, and what came of it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from multiflexi.executors.limits import Limits

#: Exit codes a shell gives when it cannot start a program; launch failures use them too.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


@dataclass(frozen=True)
class LaunchSpec:
    """A fully prepared process: nothing in it is interpreted by a shell.

    ``env`` is the complete environment (nothing is inherited); ``timeout`` is in seconds
    of wall time (None: no limit); ``kill_grace`` is how long a process gets between
    SIGTERM and SIGKILL; ``limits`` are the job's resource limits (None: none).
    """

    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    timeout: float | None = None
    kill_grace: float = 10.0
    limits: Limits | None = None


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to a launched process.

    ``exit_code`` is None when a signal ended it (``signal`` then says which). A process
    that could not be started has ``pid`` None and ``exit_code`` 127 (not found) or 126
    (not executable), as a shell reports. ``error`` is a one-line explanation of anything
    but a normal exit: a launch failure, ``timeout after N s``, ``cancelled``, or
    ``killed by signal SIGNAME``. Times are aware UTC datetimes; CPU times in seconds;
    ``max_rss_kb`` is the peak resident set size in KiB of the job's largest process (0 if
    it could not be measured, e.g. a process gone within milliseconds).
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    pid: int | None
    started: datetime
    ended: datetime
    wall_seconds: float
    cpu_user: float
    cpu_system: float
    max_rss_kb: int
    error: str | None = None
    cancelled: bool = False
    #: How the resource limits were enforced (``cgroup-v1``, ``cgroup-v2``, ``rlimit``).
    limits_mechanism: str | None = None
    #: The limit the job hit (``memory limit 256 MiB exceeded``): the job failed for it.
    limit_breach: str | None = None
    #: Said after the reason of a failure that a limit may explain but not surely.
    limit_note: str | None = None


class OutputSink(Protocol):
    """Receives a job's output as it arrives."""

    def write(self, stream: str, data: bytes) -> None:
        """One chunk of ``stream`` ("stdout" or "stderr"), byte-exact and in order."""

    def tick(self) -> None:
        """Called at least every 0.25 s while the job runs (flushing, heartbeats)."""


class Executor(Protocol):
    """Runs a :class:`LaunchSpec` to completion."""

    name: str

    def launch(
        self,
        spec: LaunchSpec,
        sink: OutputSink,
        *,
        on_start: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecutionResult:
        """Start the process, feed its output to ``sink``, and return once it and
        everything it started are gone. ``on_start`` gets the pid right after the start;
        setting ``cancel`` stops the job (SIGTERM, grace, SIGKILL). Launch failures are
        returned, not raised."""
        ...

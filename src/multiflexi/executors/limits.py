"""Resource limits of one job: the value, its parsing, and its enforcement.

A :class:`Limits` value is plain data: the runner resolves it from the run template,
the application's defaults and the configuration, and hands it to the executor in the
:class:`~multiflexi.executors.base.LaunchSpec`. Executors know nothing of the database.

Enforcement (:class:`Guard`) uses a cgroup of the job's own where the host lets us make
one (see :mod:`multiflexi.executors.cgroups`), and ``setrlimit`` in the child always.
docs/executor.md ("Resource limits") tells the whole story.
"""

from __future__ import annotations

import math
import os
import re
import resource
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiflexi.executors.base import ExecutionResult, OutputSink
    from multiflexi.executors.cgroups import JobCgroup

#: How limits are enforced: ``auto`` takes a cgroup when it can, ``rlimit`` never does,
#: ``cgroup`` insists (a job fails before its start when no cgroup can be made).
MECHANISMS = ("auto", "cgroup", "rlimit")

#: The limit names, as run template columns (``<name>``) and CLI options spell them.
NAMES = (
    "memory_limit",
    "cpu_time_limit",
    "cpus",
    "max_processes",
    "max_open_files",
    "output_limit",
)

#: Configuration keys of the global defaults.
SETTING_KEYS = {
    "memory_limit": "MULTIFLEXI_DEFAULT_MEMORY_LIMIT",
    "cpu_time_limit": "MULTIFLEXI_DEFAULT_CPU_TIME_LIMIT",
    "cpus": "MULTIFLEXI_DEFAULT_CPUS",
    "max_processes": "MULTIFLEXI_DEFAULT_MAX_PROCESSES",
    "max_open_files": "MULTIFLEXI_DEFAULT_MAX_OPEN_FILES",
    "output_limit": "MULTIFLEXI_DEFAULT_OUTPUT_LIMIT",
}
MECHANISM_KEY = "MULTIFLEXI_LIMITS_MECHANISM"

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class LimitError(ValueError):
    """A limit value that cannot be understood; the message is one line for the user."""


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from ``256M``, ``1.5G``, ``512KiB``, ``100MB`` or a plain byte count.

    Every multiple is binary (K = KiB = 1024), as memory sizes are everywhere else."""
    match = _SIZE.match(str(text))
    if match is None:
        raise LimitError(f"invalid {what} {text!r}: use a number with K, M, G (or KiB, MiB, GiB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    value = number * _UNITS[unit]
    if not math.isfinite(value) or value >= 1 << 62:
        raise LimitError(f"invalid {what} {text!r}: too large")
    return int(value)


def format_size(size: int) -> str:
    """``268435456`` -> ``256 MiB``: the largest binary unit that keeps it readable."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:g} {unit}" if size % factor else f"{size // factor} {unit}"
    return f"{size} B"


def _parse_count(text: str, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise LimitError(f"invalid {what} {text!r}: expected a whole number") from None
    if value < 0:
        raise LimitError(f"invalid {what} {text!r}: must not be negative")
    return value


def _parse_cpus(text: str, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise LimitError(f"invalid {what} {text!r}: expected a number of cores like 0.5") from None
    if not math.isfinite(value) or value < 0:
        raise LimitError(f"invalid {what} {text!r}: must be a positive number of cores")
    if 0 < value < 0.01:
        raise LimitError(f"invalid {what} {text!r}: at least 0.01 cores")
    return value


def parse_limit(name: str, value: Any) -> int | float:
    """One limit from user input (a string or a number): bytes for sizes, seconds, cores,
    counts. ``0`` means "no limit" (and overrides any default)."""
    what = name.replace("_", " ")
    if name in ("memory_limit", "output_limit"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return parse_size(str(value), what)
    if name == "cpus":
        return _parse_cpus(value, what)
    if name in ("cpu_time_limit", "max_processes", "max_open_files"):
        return _parse_count(value, what)
    raise LimitError(f"unknown limit {name!r}")


def parse_mechanism(text: str | None) -> str:
    value = (text or "auto").strip().lower()
    if value not in MECHANISMS:
        raise LimitError(f"{MECHANISM_KEY} must be one of {', '.join(MECHANISMS)}, got {text!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one job may use; None: no limit. Sizes in bytes, CPU time in seconds."""

    memory_limit: int | None = None
    cpu_time_limit: int | None = None
    cpus: float | None = None
    max_processes: int | None = None
    max_open_files: int | None = None
    output_limit: int | None = None
    #: See :data:`MECHANISMS`.
    mechanism: str = "auto"
    #: The name of the job's cgroup (``job-<id>``).
    label: str = "job"

    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in NAMES)

    def as_dict(self) -> dict[str, int | float | None]:
        return {name: getattr(self, name) for name in NAMES}


def resolve(
    layers: Iterable[Mapping[str, Any]], *, mechanism: str = "auto", label: str = "job"
) -> Limits:
    """The effective limits: later layers win (global defaults, then the application's,
    then the run template's); a layer's None means "not set here", 0 means "no limit"."""
    chosen: dict[str, Any] = {}
    for layer in layers:
        for name in NAMES:
            value = layer.get(name)
            if value is not None:
                chosen[name] = parse_limit(name, value)
    effective = {name: (value or None) for name, value in chosen.items()}
    return Limits(**effective, mechanism=mechanism, label=label)


def describe(name: str, value: int | float | None) -> str:
    """A limit for people: ``256 MiB``, ``60 s``, ``0.5 cores``, ``50``, ``no limit``."""
    if not value:
        return "no limit"
    if name in ("memory_limit", "output_limit"):
        return format_size(int(value))
    if name == "cpu_time_limit":
        return f"{int(value)} s"
    if name == "cpus":
        return f"{value:g} cores"
    return str(int(value))


def explain(layers: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Each limit with its effective value and where it comes from (the last layer that
    sets it: ``global``, ``application``, ``runtemplate``; ``none`` when none does)."""
    layers = list(layers)
    rows = []
    for name in NAMES:
        value: int | float | None = None
        source = "none"
        for where, layer in layers:
            if layer.get(name) is not None:
                value, source = parse_limit(name, layer[name]), where
        rows.append(
            {"name": name, "value": value or None, "shown": describe(name, value), "source": source}
        )
    return rows


def defaults_from_settings(values: Mapping[str, str]) -> dict[str, int | float]:
    """The global defaults from configuration values (``MULTIFLEXI_DEFAULT_*``)."""
    out: dict[str, int | float] = {}
    for name, key in SETTING_KEYS.items():
        raw = (values.get(key) or "").strip()
        if raw:
            try:
                out[name] = parse_limit(name, raw)
            except LimitError as exc:
                raise LimitError(f"{key}: {exc}") from None
    return out


def app_defaults(document: Mapping[str, Any] | None) -> dict[str, Any]:
    """An application's defaults: the ``limits`` object of its definition, with the
    option names (``memory_limit`` ...) as keys."""
    if not isinstance(document, Mapping):
        return {}
    unknown = set(document) - set(NAMES)
    if unknown:
        raise LimitError(f"unknown limit {sorted(unknown)[0]!r} in the application's limits")
    return dict(document)


# -- describing what happened --------------------------------------------------------------


def memory_reason(limit: int) -> str:
    return f"memory limit {format_size(limit)} exceeded"


def cpu_reason(limit: int) -> str:
    return f"cpu time limit {limit} s exceeded"


def process_reason(limit: int) -> str:
    return f"process limit {limit} reached"


def output_reason(limit: int) -> str:
    return f"output limit {format_size(limit)} reached: output truncated"


# -- enforcement ---------------------------------------------------------------------------


def limits_here(mechanism: str = "auto") -> tuple[str, str]:
    """The mechanism a job with limits would get on this host now, and why not a cgroup
    when it would not (a probe cgroup is made and removed)."""
    from multiflexi.executors import cgroups

    if mechanism == "rlimit":
        return "rlimit", f"{MECHANISM_KEY}=rlimit"
    try:
        group = cgroups.create(Limits(memory_limit=1 << 30, label=f"probe-{os.getpid()}"))
    except OSError as exc:
        why = f"cgroups not writable: {exc.strerror or exc}"
    else:
        if group is not None:
            group.remove()
            return group.mechanism, ""
        why = "no cgroup hierarchy mounted"
    if mechanism == "cgroup":
        return "none", f"{why}; jobs with limits fail ({MECHANISM_KEY}=cgroup)"
    return "rlimit", why


def drop_files_over(workdir: Path, budget: int) -> list[str]:
    """Remove the job's files that do not fit in ``budget`` bytes (in path order, as
    they would be stored); returns their names relative to ``workdir``."""
    dropped = []
    for root, dirs, files in os.walk(workdir, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            try:
                size = path.lstat().st_size
                if size <= budget:
                    budget -= size
                    continue
                path.unlink()
            except OSError:
                continue
            dropped.append(path.relative_to(workdir).as_posix())
    return dropped


def user_tasks(uid: int | None = None) -> int:
    """Tasks (threads) the user runs now, as RLIMIT_NPROC counts them."""
    uid = os.getuid() if uid is None else uid
    if uid == 0:
        return 0  # the kernel does not apply RLIMIT_NPROC to root
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat", "rb") as stat:
                total += int(stat.read().rsplit(b")", 1)[1].split()[17])
        except (OSError, ValueError, IndexError):
            continue
    return total


class LimitedSink:
    """Passes output on until ``limit`` bytes (stdout and stderr together) have gone
    through; the rest is dropped and ``tripped`` is set, so the executor kills the job."""

    def __init__(self, sink: OutputSink, limit: int, tripped: Callable[[str], None]) -> None:
        self.sink, self.left, self.tripped = sink, limit, tripped
        self.limit = limit

    def write(self, stream: str, data: bytes) -> None:
        if self.left <= 0:
            if data:
                self.tripped(output_reason(self.limit))
            return
        if len(data) > self.left:
            data = data[: self.left]
            self.left = 0
            self.sink.write(stream, data)
            self.tripped(output_reason(self.limit))
            return
        self.left -= len(data)
        self.sink.write(stream, data)

    def tick(self) -> None:
        self.sink.tick()


class Guard:
    """Enforces one job's :class:`Limits` around a native process.

    Use: ``start()`` before the fork (makes the cgroup), ``preexec`` in the child,
    ``sink()`` around the output sink, ``check()`` on every tick, ``breach`` to learn
    that the job must be killed, ``kill_all()`` at the end, and ``finish()`` to fold the
    usage and the verdict into the result (it removes the cgroup)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cgroup: JobCgroup | None = None
        self.mechanism = "rlimit"
        self.breach: str | None = None
        self.setup_error: str | None = None
        #: The job's own directory: its result files count against the output limit.
        self.workdir: Path | None = None
        self.limited_sink: LimitedSink | None = None

    @classmethod
    def start(cls, limits: Limits, workdir: Path | None = None) -> Guard:
        from multiflexi.executors import cgroups

        guard = cls(limits)
        guard.workdir = workdir
        if limits.mechanism != "rlimit":
            try:
                guard.cgroup = cgroups.create(limits)
            except OSError as exc:
                if limits.mechanism == "cgroup":
                    guard.setup_error = f"no cgroup for the job's limits: {exc}"
                guard.cgroup = None
            if guard.cgroup is not None:
                guard.mechanism = guard.cgroup.mechanism
            elif limits.mechanism == "cgroup" and guard.setup_error is None:
                guard.setup_error = "no cgroup for the job's limits: none usable on this host"
        return guard

    def trip(self, reason: str) -> None:
        if self.breach is None:
            self.breach = reason

    def sink(self, sink: OutputSink) -> OutputSink:
        if self.limits.output_limit is None:
            return sink
        self.limited_sink = LimitedSink(sink, self.limits.output_limit, self.trip)
        return self.limited_sink

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, value) pairs set in the child. Process count and memory stay with
        the cgroup where there is one: RLIMIT_NPROC counts every process of the user
        (not the job's), and the address space is not the memory used."""
        lim = self.limits
        pairs: list[tuple[int, int]] = []
        if lim.cpu_time_limit is not None:
            pairs.append((resource.RLIMIT_CPU, lim.cpu_time_limit))
        if lim.max_open_files is not None:
            pairs.append((resource.RLIMIT_NOFILE, lim.max_open_files))
        if self.cgroup is None:
            if lim.memory_limit is not None:
                pairs.append((resource.RLIMIT_AS, lim.memory_limit))
            if lim.max_processes is not None:
                # Counted per user, threads included: what the user runs already is added,
                # so that the job gets about its own share (the executor counts, too).
                pairs.append((resource.RLIMIT_NPROC, lim.max_processes + user_tasks()))
        return pairs

    def preexec(self) -> Callable[[], None] | None:
        """The function the child runs between fork and exec (None: nothing to do).

        It may only make system calls: no locks, no allocation-heavy Python, since the
        parent has other threads."""
        pairs = self.rlimits()
        procs = self.cgroup.procs_files() if self.cgroup is not None else []
        if not pairs and not procs:
            return None
        # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later if ignored.
        # Everything is computed here, in the parent: the child inherits our hard limits,
        # and between fork and exec it should only make system calls.
        settings = []
        for res, value in pairs:
            soft, hard = value, value + 1 if res == resource.RLIMIT_CPU else value
            _, old_hard = resource.getrlimit(res)
            if old_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, old_hard), min(hard, old_hard)
            settings.append((res, (soft, hard)))
        paths = [os.fsencode(path) for path in procs]

        def child() -> None:
            for path in paths:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0")  # 0: the writing process itself
                finally:
                    os.close(fd)
            for res, limit in settings:
                resource.setrlimit(res, limit)

        return child

    def check(self, pids: Iterable[int], cpu_seconds: Callable[[], float] | None = None) -> None:
        """On every tick: what the kernel does not stop by itself. With a cgroup, the
        CPU time of the whole tree; without, the number of the job's processes (the
        kernel does not apply RLIMIT_NPROC to root) and its CPU time as far as seen."""
        lim = self.limits
        if self.breach is not None:
            return
        if self.cgroup is not None:
            if lim.cpu_time_limit is not None:
                user, system = self.cgroup.cpu_seconds()
                if user + system >= lim.cpu_time_limit:
                    self.trip(cpu_reason(lim.cpu_time_limit))
            return
        if lim.max_processes is not None:
            count = sum(1 for _ in pids)
            if count > lim.max_processes:
                self.trip(process_reason(lim.max_processes))

    def signal(self, sig: int) -> None:
        """Signal every process in the job's cgroup once (also those that escaped the
        process group before the executor saw them)."""
        if self.cgroup is not None:
            self.cgroup.signal(sig)

    def finish_cleanup(self) -> None:
        """Remove the cgroup if :meth:`finish` did not (an exception on our side)."""
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:
            cgroup.kill_all(signal.SIGKILL)
            cgroup.remove()

    def kill_all(self) -> None:
        """SIGKILL every process in the job's cgroup (none can escape it)."""
        if self.cgroup is not None:
            self.cgroup.kill_all(signal.SIGKILL)

    def finish(self, result: ExecutionResult) -> ExecutionResult:
        """The result with the tree's usage, the mechanism and the verdict; removes the
        cgroup."""
        lim = self.limits
        mechanism = None if self.setup_error else self.mechanism  # nothing ran
        changes: dict[str, Any] = {"limits_mechanism": mechanism}
        breach = self.setup_error or self.breach
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:
            try:
                usage = cgroup.usage()
            finally:
                cgroup.remove()
            if usage.peak_bytes:  # the whole tree's, as the kernel charged it
                changes["max_rss_kb"] = usage.peak_bytes // 1024
            if usage.cpu_user + usage.cpu_system > result.cpu_user + result.cpu_system:
                changes["cpu_user"], changes["cpu_system"] = usage.cpu_user, usage.cpu_system
            if breach is None and usage.oom_kills and lim.memory_limit is not None:
                breach = memory_reason(lim.memory_limit)
            if breach is None and usage.pids_refused and lim.max_processes is not None:
                breach = process_reason(lim.max_processes)
        cpu = changes.get("cpu_user", result.cpu_user) + changes.get(
            "cpu_system", result.cpu_system
        )
        if breach is None and lim.cpu_time_limit is not None:
            by_signal = result.signal in (signal.SIGXCPU, signal.SIGKILL)
            if result.signal == signal.SIGXCPU or (by_signal and cpu >= lim.cpu_time_limit):
                breach = cpu_reason(lim.cpu_time_limit)
        failed = result.exit_code not in (0, None) or result.signal is not None
        if breach is None and cgroup is None and lim.memory_limit is not None and failed:
            # Without a cgroup the kernel refuses the allocation and the program decides
            # what to do: that it failed under the limit is all we can tell.
            changes["limit_note"] = (
                f"under an address-space limit of {format_size(lim.memory_limit)} (rlimit)"
            )
        if lim.output_limit is not None and self.workdir is not None:
            left = self.limited_sink.left if self.limited_sink is not None else lim.output_limit
            dropped = drop_files_over(self.workdir, left)
            if dropped and breach is None:
                shown = ", ".join(dropped[:3]) + (" ..." if len(dropped) > 3 else "")
                size = format_size(lim.output_limit)
                breach = f"output limit {size} reached: result files not kept: {shown}"
        if breach is not None and not (result.timed_out or result.cancelled):
            changes["limit_breach"] = breach
        return replace(result, **changes)

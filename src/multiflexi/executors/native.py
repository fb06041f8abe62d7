"""The Native executor: a local process started from an argv list, never a shell.

``argv`` runs with exactly ``spec.env``, in ``spec.cwd``, stdin from /dev/null, as the
leader of a new session, so its whole process group can be signalled. stdout and stderr
are read concurrently and handed to the sink chunk by chunk, byte-exact and never
accumulated. A timeout or ``cancel`` means SIGTERM, ``kill_grace``, SIGKILL. When the main
process exits, the rest of its group and every descendant seen escaping it are killed,
the pipes drained (2 s at most) and closed. ``os.wait4`` gives the status, CPU and memory.
docs/executor.md tells the whole story.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psutil

from multiflexi.executors.base import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    ExecutionResult,
    LaunchSpec,
    OutputSink,
)

if TYPE_CHECKING:
    from multiflexi.executors.limits import Guard

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
TICK = 0.25
#: When pidfd is unavailable, how often to look whether the process has exited.
POLL = 0.05
#: After the drain deadline, how much is still read from a pipe without waiting: what
#: the killed processes left in the pipe buffer, but not a live writer's endless stream.
FINAL_READ = 4 * PIPE_SIZE
#: Memory is sampled SAMPLE_FIRST after the start, then at gaps growing by SAMPLE_GROWTH
#: up to a tick. VmHWM is a high-water mark, so a late sample loses nothing while the
#: process lives; quick samples matter only for short jobs (100 samples in the first 2 s
#: cost a long job 20 ms of CPU; this schedule takes 15).
SAMPLE_FIRST = 0.02
SAMPLE_GROWTH = 1.25


#: The variable that marks a job's processes (its own working directory).
MARKER = "MULTIFLEXI_TMP"


def _vm_hwm_kb(pid: int) -> int:
    """Peak RSS (``VmHWM``, KiB) of a live process's current address space; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


#: Above this many new pids to probe one by one, listing /proc is cheaper.
PROBE_LIMIT = 256


def last_pid() -> int | None:
    """The pid the kernel handed out last in our pid namespace, if it tells."""
    try:
        with open("/proc/sys/kernel/ns_last_pid", "rb") as last:
            return int(last.read())
    except (OSError, ValueError):
        return None


def pids_since(after: int | None, newest: int | None) -> range | None:
    """The pids handed out after ``after`` up to ``newest``, when they are few enough to
    probe one by one; None when unknown, wrapped around, or more than ``PROBE_LIMIT``."""
    if after is None or newest is None or not 0 <= newest - after <= PROBE_LIMIT:
        return None
    return range(after + 1, newest + 1)


def _pids_with_variable(name: str, value: str, after: int | None = None) -> tuple[list[int], int]:
    """Processes whose initial environment holds ``name=value``, and the last pid handed
    out when the search began.

    With ``after``, only processes started since pid ``after`` are candidates: pids are
    handed out in increasing order, so a job's descendants have pids above the job's, and
    on most runs only a few processes were started meanwhile. Read from /proc directly:
    this runs after every job, and psutil's per-process objects cost ten times as much.
    """
    entry = b"\0" + os.fsencode(f"{name}={value}") + b"\0"
    newest = last_pid()
    candidates: Iterable[str]
    recent = pids_since(after, newest)
    if recent is not None:
        candidates = [str(pid) for pid in recent]
    else:  # unknown, wrapped around, or many: look at every process
        try:
            candidates = [n for n in os.listdir("/proc") if n.isdigit()]
        except OSError:
            candidates = []
    found = []
    for pid in candidates:
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                block = environ.read()
        except OSError:  # gone, never was, a zombie, or another user's
            continue
        if entry in b"\0" + block:
            found.append(int(pid))
    return found, newest if newest is not None else 0


def _parent_of(pid: int) -> int | None:
    """The parent of process ``pid``; None for a thread id, a gone or unreadable pid."""
    tgid = ppid = None
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"Tgid:"):
                    tgid = int(line.split()[1])
                elif line.startswith(b"PPid:"):
                    ppid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        return None
    return ppid if tgid == pid else None  # a thread shares the pid space; skip it


def new_descendants(parents: set[int], after: int, newest: int) -> list[int] | None:
    """Processes started since pid ``after`` (up to ``newest``) whose parent is one of
    ``parents`` or one of the processes found before them; None when that range cannot
    be probed one by one (wrapped around, or more than ``PROBE_LIMIT`` pids).

    Pids are handed out in increasing order, so a child has a higher pid than the parent
    that was also started in the range, and one pass in order finds grandchildren too.
    """
    recent = pids_since(after, newest)
    if recent is None:
        return None
    family, found = set(parents), []
    for pid in recent:
        if _parent_of(pid) in family:
            family.add(pid)
            found.append(pid)
    return found


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _launch_failure(spec: LaunchSpec, exc: Exception, started: datetime) -> ExecutionResult:
    """A process that never started, reported as a shell would (127 / 126)."""
    program = spec.argv[0] if spec.argv else ""
    filename = getattr(exc, "filename", None)
    if isinstance(filename, os.PathLike):  # Popen reports a failed chdir with our cwd
        filename = os.fspath(filename)
    why = getattr(exc, "strerror", None) or str(exc)
    if not spec.argv:
        code, error = EXIT_NOT_FOUND, "the command line is empty"
    elif filename is not None and filename == os.fspath(spec.cwd) and filename != program:
        code, error = EXIT_NOT_EXECUTABLE, f"cannot enter working directory {filename}: {why}"
    elif isinstance(exc, FileNotFoundError):
        code, error = EXIT_NOT_FOUND, f"executable not found: {program}"
    elif isinstance(exc, PermissionError):
        code, error = EXIT_NOT_EXECUTABLE, f"permission denied: {program}"
    else:
        code, error = EXIT_NOT_EXECUTABLE, f"cannot execute {program}: {why}"
    return ExecutionResult(
        exit_code=code, signal=None, timed_out=False, pid=None, started=started,
        ended=datetime.now(UTC), wall_seconds=0.0, cpu_user=0.0, cpu_system=0.0,
        max_rss_kb=0, error=error,
    )  # fmt: skip


class NativeExecutor:
    """Runs a job as a local process; see the module documentation."""

    name = "Native"

    def __init__(
        self, *, tick: float = TICK, track_every: float = TICK, drain_seconds: float = 2.0
    ) -> None:
        #: ``track_every``: how often descendants are listed (psutil reads every process
        #: of the host, ~20 µs each: raise it on a host with very many processes).
        self.tick, self.track_every, self.drain_seconds = tick, track_every, drain_seconds

    def launch(
        self,
        spec: LaunchSpec,
        sink: OutputSink,
        *,
        on_start: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecutionResult:
        """Run ``spec`` to the end; launch failures are returned, not raised.

        If ``sink`` or ``on_start`` raises, the process tree is killed and reaped before
        the exception propagates.
        """
        started, t0 = datetime.now(UTC), time.monotonic()
        guard = _guard(spec)
        if guard is not None:
            if guard.setup_error is not None:
                return guard.finish(_launch_failure(spec, OSError(guard.setup_error), started))
            sink = guard.sink(sink)
        try:
            return self._launch(spec, sink, on_start, cancel, (started, t0), guard)
        finally:
            if guard is not None:
                guard.kill_all()  # whatever is left in the job's cgroup; then it goes
                guard.finish_cleanup()

    def _launch(
        self,
        spec: LaunchSpec,
        sink: OutputSink,
        on_start: Callable[[int], None] | None,
        cancel: threading.Event | None,
        start: tuple[datetime, float],
        guard: Guard | None,
    ) -> ExecutionResult:
        started = start[0]
        try:
            if not spec.argv:
                raise ValueError("the command line is empty")
            proc = subprocess.Popen(
                spec.argv,
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                bufsize=0,
                preexec_fn=guard.preexec() if guard is not None else None,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL in argv or env
            return _limited(guard, _launch_failure(spec, exc, started))
        except subprocess.SubprocessError:  # preexec_fn failed: limits not applicable
            failure = OSError(
                f"the job's limits could not be applied ({guard and guard.mechanism})"
            )
            return _limited(guard, _launch_failure(spec, failure, started))
        run = _Run(proc, spec, sink, cancel, start, self)
        run.guard = guard
        finished = False
        try:
            if on_start is not None:
                on_start(proc.pid)
            run.watch()
            run.finish()
            finished = True
        finally:
            if not finished:
                run.abort()
        return _limited(guard, run.result())


def _guard(spec: LaunchSpec) -> Guard | None:
    if spec.limits is None or not spec.limits.any():
        return None
    from multiflexi.executors.limits import Guard

    return Guard.start(spec.limits, spec.cwd)


def _limited(guard: Guard | None, result: ExecutionResult) -> ExecutionResult:
    """The result with the limits' verdict and the whole tree's usage."""
    if guard is None:
        return result
    guard.kill_all()
    return guard.finish(result)


class _Run:
    """One running process and everything needed to see it to the end."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        spec: LaunchSpec,
        sink: OutputSink,
        cancel: threading.Event | None,
        started: tuple[datetime, float],
        executor: NativeExecutor,
    ) -> None:
        self.proc, self.pid, self.spec, self.sink, self.cancel = proc, proc.pid, spec, sink, cancel
        self.started, self.t0 = started
        self.tick_every, self.drain_seconds = executor.tick, executor.drain_seconds
        self.track_every = executor.track_every
        self.next_tick = self.next_track = self.t0 + self.tick_every
        self.selector = selectors.DefaultSelector()
        self.open_streams = 0
        for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # a bigger pipe means fewer wake-ups
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            self.selector.register(fd, selectors.EVENT_READ, stream)
            self.open_streams += 1
        self.pidfd: int | None = None
        try:  # readable once the process has exited: no polling needed
            self.pidfd = os.pidfd_open(self.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, None)
        except (OSError, AttributeError):
            self.pidfd = None
        self.seen: dict[int, psutil.Process] = {}
        #: The last pid ``_track`` has looked at (None: walk the whole table next time);
        #: the job's descendants all have pids above its own.
        self.tracked_upto: int | None = self.pid
        # Linux counts the address space a child had before exec into its ru_maxrss, and
        # Popen's vfork child had ours: every job would report at least this process's
        # peak. Read it now (after the exec, so it bounds what was counted); a wait4
        # figure above it is the job's own, otherwise we fall back to sampling the job's
        # VmHWM (see SAMPLE_FIRST). Our own ru_maxrss is at least our VmHWM, so it bounds
        # the count as well, and a system call costs a tenth of reading /proc.
        self.baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_kb = _vm_hwm_kb(self.pid)
        self.sample_gap = SAMPLE_FIRST
        self.next_sample = self.t0 + SAMPLE_FIRST
        self.timed_out = self.cancelled = False
        self.guard: Guard | None = None
        self.term_sent: float | None = None
        self.kill_sent = self.reaped = self.closed = False
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self.exited_at: float | None = None
        self.ended: datetime | None = None

    # -- while the main process runs -------------------------------------------------

    def watch(self) -> None:
        """Stream output, tick, and enforce timeout and cancel until the main process
        exits (it is then a zombie: its pid and group id cannot be reused yet)."""
        spec = self.spec
        deadline = None if spec.timeout is None else self.t0 + spec.timeout
        while not self._exited():
            now = time.monotonic()
            if now >= self.next_tick:
                self._tick(now, track=True)
            if now >= self.next_sample:
                self._sample(now)
            if self.term_sent is None:
                if deadline is not None and now >= deadline:
                    self.timed_out = True
                    self._terminate(now)
                elif self.cancel is not None and self.cancel.is_set():
                    self.cancelled = True
                    self._terminate(now)
                elif self.guard is not None and self.guard.breach is not None:
                    self._track()  # a limit was hit: no grace
                    self._signal_all(signal.SIGKILL)
                    self.term_sent, self.kill_sent = now, True
            elif not self.kill_sent and now >= self.term_sent + spec.kill_grace:
                self._signal_all(signal.SIGKILL)
                self.kill_sent = True
            wait = min(self.next_tick, self.next_sample) - now
            if self.term_sent is None and deadline is not None:
                wait = min(wait, deadline - now)
            elif self.term_sent is not None and not self.kill_sent:
                wait = min(wait, self.term_sent + spec.kill_grace - now)
            if self.pidfd is None:
                wait = min(wait, POLL)
            self._read(max(wait, 0.0))
        self.exited_at = time.monotonic()
        self.ended = datetime.now(UTC)

    def _exited(self) -> bool:
        try:
            # WNOWAIT: look without reaping, so the pid stays ours while we kill the group.
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped behind our back; nothing left to wait for
            return True
        return info is not None

    def _tick(self, now: float, *, track: bool) -> None:
        if track and now >= self.next_track:
            self._track()
            self.next_track = now + self.track_every
            if self.guard is not None:
                self.guard.check([self.pid, *self.seen])
        self.next_tick = now + self.tick_every
        self.sink.tick()

    def _sample(self, now: float) -> None:
        pids = [self.pid, *self.seen]
        self.peak_kb = max(self.peak_kb, *(_vm_hwm_kb(pid) for pid in pids))
        self.sample_gap = min(self.sample_gap * SAMPLE_GROWTH, self.tick_every)
        self.next_sample = now + self.sample_gap

    def _track(self) -> None:
        """Remember every descendant alive now, so that one that leaves the process group
        (setsid, double fork) can still be killed at the end.

        Only processes started since the last look can be new descendants: those few are
        probed (~20 µs each), and when no process at all was started, nothing is read.
        psutil's walk of the whole process table (~1.5 ms on a quiet host, every tick of
        every running job) is the fallback when ``ns_last_pid`` does not tell."""
        newest = last_pid()
        if newest is not None and newest == self.tracked_upto:
            return
        found = None
        if newest is not None and self.tracked_upto is not None:
            found = new_descendants({self.pid, *self.seen}, self.tracked_upto, newest)
        if found is None:  # pids_since could not tell: the whole table
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                return
            found = [child.pid for child in children]
        self.tracked_upto = newest
        for pid, proc in list(self.seen.items()):
            if not proc.is_running():
                del self.seen[pid]
        for pid in found:
            if pid not in self.seen:
                with contextlib.suppress(psutil.Error):
                    self.seen[pid] = psutil.Process(pid)

    def _terminate(self, now: float) -> None:
        self._track()
        self._signal_all(signal.SIGTERM)
        self.term_sent = now

    def _signal_all(self, sig: int) -> None:
        if not self.reaped:  # only while the leader's pid pins the group id
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        for proc in self.seen.values():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)  # psutil checks the pid was not reused
        if self.guard is not None:
            self.guard.signal(sig)

    def _read(self, timeout: float, limit: int = CHUNK) -> int:
        """Wait up to ``timeout`` and hand what the pipes have to the sink."""
        total = 0
        for key, _ in self.selector.select(timeout):
            if key.data is None:  # the pidfd: the process exited
                continue
            fd = int(key.fd)
            try:
                data = os.read(fd, min(CHUNK, limit))
            except BlockingIOError:
                continue
            if data:
                total += len(data)
                self.sink.write(key.data, data)
            else:
                self.selector.unregister(fd)
                self.open_streams -= 1
        return total

    # -- after the main process exited --------------------------------------------------

    def _find_by_marker(self, after: int) -> int:
        """Find descendants that escaped before they could be tracked (a double fork that
        finished within a tick): they still carry the job's own directory in their
        environment, which no other process has. Only processes started after pid
        ``after`` are candidates; returns the last pid looked at."""
        value = self.spec.env.get(MARKER)
        if not value:
            return after
        pids, newest = _pids_with_variable(MARKER, value, after)
        for pid in pids:
            if pid not in self.seen and pid != os.getpid():
                with contextlib.suppress(psutil.Error):
                    self.seen[pid] = psutil.Process(pid)
        return newest

    def finish(self) -> None:
        """Kill what is left, drain the pipes (bounded), reap."""
        scanned = self._find_by_marker(self.pid)
        self._signal_all(signal.SIGKILL)
        if self.seen:  # an escaped process may have forked while we looked: once more
            self._find_by_marker(scanned)
            self._signal_all(signal.SIGKILL)
        if self.pidfd is not None:
            self.selector.unregister(self.pidfd)
        deadline = time.monotonic() + self.drain_seconds
        while self.open_streams:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= self.next_tick:
                self._tick(now, track=False)
            self._read(min(deadline, self.next_tick) - now)
        # Whatever the killed processes left in the pipe buffers is still output; read
        # it without waiting, but no more than a few buffers' worth.
        budget = FINAL_READ
        while self.open_streams and budget > 0:
            got = self._read(0.0, budget)
            if not got:
                break
            budget -= got
        self._close()
        self._reap()

    def abort(self) -> None:
        """Something went wrong on our side: kill everything, reap, close, quietly."""
        self._signal_all(signal.SIGKILL)
        self._close()
        self._reap()
        if self.ended is None:
            self.exited_at, self.ended = time.monotonic(), datetime.now(UTC)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.selector.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self.pidfd is not None:
            os.close(self.pidfd)

    def _reap(self) -> None:
        if self.reaped:
            return
        try:
            _, self.status, self.rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            self.status = None
        self.reaped = True
        # Popen must not try to wait for the pid again (or warn that it is "still
        # running"); it learns the outcome we already collected.
        self.proc.returncode = (
            os.waitstatus_to_exitcode(self.status) if self.status is not None else -1
        )

    def _max_rss_kb(self) -> int:
        reported = self.rusage.ru_maxrss if self.rusage is not None else 0
        if reported > self.baseline_kb:
            return max(reported, self.peak_kb)
        # Not above what our own address space put there: only the samples are the job's
        # (0 for a process gone before the first one; better unknown than our own peak).
        return self.peak_kb

    def result(self) -> ExecutionResult:
        """The outcome, from the status and resource usage ``wait4`` returned."""
        exit_code: int | None = None
        sig: int | None = None
        error: str | None = None
        status = self.status
        if status is None:
            error = "the exit status was collected by someone else"
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            error = f"killed by signal {_signal_name(sig)}"
        else:
            exit_code = os.WEXITSTATUS(status)
        if self.timed_out:
            error = f"timeout after {self.spec.timeout:g} s"
        elif self.cancelled:
            error = "cancelled"
        usage = self.rusage
        exited_at = self.exited_at if self.exited_at is not None else time.monotonic()
        return ExecutionResult(
            exit_code=exit_code,
            signal=sig,
            timed_out=self.timed_out,
            pid=self.pid,
            started=self.started,
            ended=self.ended or datetime.now(UTC),
            wall_seconds=exited_at - self.t0,
            cpu_user=usage.ru_utime if usage is not None else 0.0,
            cpu_system=usage.ru_stime if usage is not None else 0.0,
            max_rss_kb=self._max_rss_kb(),
            error=error,
            cancelled=self.cancelled,
        )

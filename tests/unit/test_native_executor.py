"""The Native executor, with real processes: argv, environment, output, signals, cleanup."""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from multiflexi.errors import Invalid
from multiflexi.executors.base import ExecutionResult, LaunchSpec
from multiflexi.executors.native import (
    CHUNK,
    PROBE_LIMIT,
    NativeExecutor,
    last_pid,
    new_descendants,
)
from multiflexi.executors.registry import available, get_executor

PY = sys.executable
#: Keeps Python from adding LC_CTYPE to its own environment (PEP 538), so a probe's
#: os.environ is exactly what it was given.
PYENV = {"PYTHONCOERCECLOCALE": "0"}
SHENV = {"PATH": os.defpath}


class Collect:
    """Keeps every byte (small outputs only) and counts ticks."""

    def __init__(self, on_write: Callable[[str, bytes], None] | None = None) -> None:
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.order: list[str] = []
        self.ticks: list[float] = []
        self.on_write = on_write
        self.on_tick: Callable[[], None] | None = None

    def write(self, stream: str, data: bytes) -> None:
        self.data[stream] += data
        self.order.append(stream)
        if self.on_write is not None:
            self.on_write(stream, data)

    def tick(self) -> None:
        self.ticks.append(time.monotonic())
        if self.on_tick is not None:
            self.on_tick()

    def out(self, stream: str = "stdout") -> bytes:
        return bytes(self.data[stream])


class Hash:
    """Keeps only a hash and a length per stream: memory stays flat whatever the size."""

    def __init__(self) -> None:
        self.sha = {"stdout": hashlib.sha256(), "stderr": hashlib.sha256()}
        self.size = {"stdout": 0, "stderr": 0}
        self.largest_chunk = 0
        self.ticks = 0

    def write(self, stream: str, data: bytes) -> None:
        self.sha[stream].update(data)
        self.size[stream] += len(data)
        self.largest_chunk = max(self.largest_chunk, len(data))

    def tick(self) -> None:
        self.ticks += 1


def run(
    argv: list[str],
    sink: Collect | Hash | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    grace: float = 1.0,
    **kwargs: object,
) -> ExecutionResult:
    spec = LaunchSpec(
        argv=argv,
        env=PYENV if env is None else env,
        cwd=cwd or Path.cwd(),
        timeout=timeout,
        kill_grace=grace,
    )
    return NativeExecutor().launch(spec, sink or Collect(), **kwargs)  # type: ignore[arg-type]


def py(code: str, *args: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code), *args]


def is_gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` has died (or is a zombie nobody reaped yet) within the time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)  # polling a condition we cannot be notified of
    return False


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids a test expects to be dead; whatever is not gets killed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


PROBE = """
import json, os, sys
json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(),
           "pid": os.getpid(), "stdin": sys.stdin.buffer.read().decode()}, sys.stdout)
"""


# -- the process gets exactly what the spec says ------------------------------------


def test_arguments_arrive_intact_because_no_shell_is_involved(tmp_path: Path) -> None:
    hostile = ["a b", "it's", '"q"', "$HOME", "`id`", "$(id)", "; rm -rf /", "x\ny", "",
               "ü ☃", "*", "--flag=1 2", "\\", "'", "|&<>"]  # fmt: skip
    sink = Collect()
    result = run(py(PROBE, *hostile), sink, cwd=tmp_path)
    assert result.exit_code == 0, sink.out("stderr")
    assert json.loads(sink.out())["argv"] == hostile


def test_environment_is_exactly_the_spec_env_and_stdin_is_empty(tmp_path: Path) -> None:
    env = {**PYENV, "A": "1", "SPACED": "x y", "MULTI": "l1\nl2", "EMPTY": "", "U": "ž"}
    sink = Collect()
    result = run(py(PROBE), sink, env=env, cwd=tmp_path)
    probe = json.loads(sink.out())
    assert result.exit_code == 0
    assert probe["env"] == env
    assert probe["cwd"] == str(tmp_path)
    assert probe["stdin"] == ""


def test_on_start_gets_the_pid_of_the_process() -> None:
    started: list[int] = []
    sink = Collect()
    result = run(py(PROBE), sink, on_start=started.append)
    assert started == [result.pid]
    assert json.loads(sink.out())["pid"] == result.pid
    assert result.started.tzinfo is not None and result.ended >= result.started


# -- output ---------------------------------------------------------------------------


def test_binary_output_is_captured_byte_exact() -> None:
    blob = bytes(range(256)) * 64 + b"\x00\x00\xff\xfe\xc3\x28 invalid utf-8 \xed\xa0\x80"
    code = f"""
    import sys
    blob = {blob!r}
    sys.stdout.buffer.write(blob); sys.stdout.flush()
    sys.stderr.buffer.write(blob[::-1]); sys.stderr.flush()
    sys.stdout.buffer.write(b"\\r\\n\\x00tail-without-newline")
    """
    sink = Collect()
    result = run(py(code), sink)
    assert result.exit_code == 0
    assert sink.out() == blob + b"\r\n\x00tail-without-newline"
    assert sink.out("stderr") == blob[::-1]


GENERATE = """
import random, sys
def block(seed, size):
    return random.Random(seed).randbytes(size)
for stream, seed, size in {plan!r}:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.buffer.write(block(seed, size)); out.flush()
"""


def test_both_streams_are_read_concurrently_so_a_full_stderr_never_deadlocks() -> None:
    # 10 MB to stderr before a byte to stdout: a reader waiting on stdout first would
    # block forever once the stderr pipe is full. Then interleaved writes to both.
    plan = [("stderr", 1, 10_000_000), ("stdout", 2, 3_000_000)]
    plan += [("stdout" if i % 2 else "stderr", 10 + i, 70_001) for i in range(40)]
    sink = Hash()
    result = run(py(GENERATE.format(plan=plan)), sink, timeout=60)
    assert result.exit_code == 0 and not result.timed_out
    for stream in ("stdout", "stderr"):
        expected = hashlib.sha256()
        for s, seed, size in plan:
            if s == stream:
                expected.update(random.Random(seed).randbytes(size))
        assert sink.sha[stream].hexdigest() == expected.hexdigest(), stream
    assert sink.largest_chunk <= CHUNK


def _rss_growth_while(fn: Callable[[], object]) -> int:
    """How far this process's peak RSS rose above its RSS before ``fn`` (bytes).

    psutil samples the RSS while ``fn`` runs; if the kernel's high-water mark moved during
    ``fn``, that exact peak counts too (it cannot be used alone: an earlier test may have
    set a peak that ``fn`` never reaches)."""
    me = psutil.Process()
    before: int = me.memory_info().rss
    hwm_before = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, me.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    hwm_after = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    if hwm_after > hwm_before:
        peak = max(peak, hwm_after)
    return max(0, peak - before)


@pytest.mark.slow
def test_a_single_100_mb_line_passes_through_without_being_held_in_memory() -> None:
    size = 100 * 1024 * 1024
    code = f"""
    import sys
    chunk = b"x" * (1 << 20)
    for _ in range({size} // len(chunk)):
        sys.stdout.buffer.write(chunk)
    """
    sink = Hash()
    results: list[ExecutionResult] = []
    growth = _rss_growth_while(lambda: results.append(run(py(code), sink)))
    assert results[0].exit_code == 0
    assert sink.size["stdout"] == size
    assert sink.sha["stdout"].hexdigest() == hashlib.sha256(b"x" * size).hexdigest()
    assert growth < 50 * 1024 * 1024, f"grew by {growth / 2**20:.0f} MiB"


@pytest.mark.slow
def test_one_gib_of_output_streams_through_with_bounded_memory() -> None:
    size = 1 << 30
    sink = Hash()
    results: list[ExecutionResult] = []
    growth = _rss_growth_while(
        lambda: results.append(run(["head", "-c", str(size), "/dev/zero"], sink, env=SHENV))
    )
    assert results[0].exit_code == 0
    assert sink.size["stdout"] == size
    zeros, expected = bytes(1 << 20), hashlib.sha256()
    for _ in range(size >> 20):
        expected.update(zeros)
    assert sink.sha["stdout"].hexdigest() == expected.hexdigest()
    assert growth < 100 * 1024 * 1024, f"grew by {growth / 2**20:.0f} MiB"


# -- how it ended ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_codes_are_reported(code: int) -> None:
    result = run(py(f"raise SystemExit({code})"))
    assert (result.exit_code, result.signal, result.error) == (code, None, None)
    assert not result.timed_out and not result.cancelled


def test_a_process_killed_by_a_signal_records_the_signal() -> None:
    result = run(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert result.exit_code is None
    assert result.signal == signal.SIGKILL
    assert result.error == "killed by signal SIGKILL"


def test_timeout_sends_term_then_kill_to_the_whole_group(tmp_path: Path, strays: list[int]) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {pidfile}; echo started; wait; wait"
    sink = Collect()
    t0 = time.monotonic()
    result = run(["sh", "-c", script], sink, env=SHENV, timeout=1, grace=1)
    elapsed = time.monotonic() - t0
    child = read_pid(pidfile)
    strays.append(child)
    assert result.timed_out and result.error == "timeout after 1 s"
    assert result.signal == signal.SIGKILL and result.exit_code is None
    assert 2.0 <= elapsed < 3.0
    assert sink.out() == b"started\n"
    assert is_gone(child), "the background child survived the timeout"


def test_timeout_of_a_process_that_obeys_term_needs_no_grace() -> None:
    t0 = time.monotonic()
    result = run(py("import time; time.sleep(60)"), timeout=0.5, grace=30)
    assert result.timed_out and result.signal == signal.SIGTERM
    assert time.monotonic() - t0 < 5


def test_cancel_stops_the_job_with_term(tmp_path: Path) -> None:
    cancel = threading.Event()
    sink = Collect(on_write=lambda stream, data: cancel.set())
    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    t0 = time.monotonic()
    result = run(py(code), sink, cancel=cancel, grace=30)
    assert result.cancelled and result.error == "cancelled" and not result.timed_out
    assert result.signal == signal.SIGTERM
    assert time.monotonic() - t0 < 5


def test_cancel_kills_a_job_that_ignores_term_after_the_grace() -> None:
    cancel = threading.Event()
    sink = Collect(on_write=lambda stream, data: cancel.set())
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    t0 = time.monotonic()
    result = run(py(code), sink, cancel=cancel, grace=0.5)
    assert result.cancelled and result.signal == signal.SIGKILL
    assert 0.5 <= time.monotonic() - t0 < 3


def test_a_job_cancelled_before_it_starts_still_runs_to_a_clean_end() -> None:
    cancel = threading.Event()
    cancel.set()
    result = run(py("import time; time.sleep(60)"), cancel=cancel, grace=1)
    assert result.cancelled and result.exit_code is None


def test_a_grandchild_holding_stdout_open_does_not_hang_the_executor(strays: list[int]) -> None:
    sink = Collect()
    t0 = time.monotonic()
    result = run(["sh", "-c", "sleep 30 & echo $!; echo done"], sink, env=SHENV)
    assert time.monotonic() - t0 < 3
    pid_line, done = sink.out().decode().split()
    strays.append(int(pid_line))
    assert (result.exit_code, done) == (0, "done")
    assert is_gone(int(pid_line)), "the background sleep was left running"


DAEMON = """
import os, sys, time
pidfile, release = sys.argv[1], sys.argv[2]
if os.fork() == 0:
    os.setsid()  # leaves the job's process group: killpg cannot reach it
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(60)  # keeps the inherited stdout open, too
    os._exit(0)
while not os.path.exists(release):
    time.sleep(0.01)
print("parent done", flush=True)
"""


def test_a_daemon_that_escapes_the_process_group_is_killed_at_the_end(
    tmp_path: Path, strays: list[int]
) -> None:
    pidfile, release = tmp_path / "daemon.pid", tmp_path / "release"
    sink = Collect()
    sightings = []

    def on_tick() -> None:
        # The executor looks for descendants just before each tick: once a tick has seen
        # the pid file, the next one has certainly recorded the daemon.
        if pidfile.exists():
            sightings.append(1)
            if len(sightings) == 2:
                release.touch()

    sink.on_tick = on_tick
    t0 = time.monotonic()
    result = run(py(DAEMON, str(pidfile), str(release)), sink, timeout=30)
    daemon = read_pid(pidfile)
    strays.append(daemon)
    assert result.exit_code == 0 and not result.timed_out
    assert sink.out() == b"parent done\n"
    assert time.monotonic() - t0 < 10
    assert is_gone(daemon), "the setsid daemon survived its job"


TREE = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import subprocess, time; "
    "g = subprocess.Popen(['sleep', '30']); print(g.pid, flush=True); time.sleep(30)"],
    stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(30)
"""


@pytest.mark.skipif(last_pid() is None, reason="ns_last_pid is not readable here")
def test_new_descendants_are_the_children_and_grandchildren_started_since_a_pid() -> None:
    before = last_pid()
    assert before is not None
    tree = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert tree.stdout is not None
    outsider = None
    try:
        child, grandchild = (int(pid) for pid in tree.stdout.readline().split())
        # Started after the tree, in the same pid range: not one of its descendants.
        outsider = subprocess.Popen(["sleep", "30"])
        newest = last_pid()
        assert newest is not None
        found = new_descendants({tree.pid}, before, newest)
        assert found == [child, grandchild]
        # From the child's pid on, only the grandchild is new; an unrelated parent finds none.
        assert new_descendants({tree.pid}, child, newest) == []
        assert new_descendants({child}, child, newest) == [grandchild]
        assert new_descendants({outsider.pid}, before, newest) == []
        # A range too wide or wrapped around is left to the whole-table walk.
        assert new_descendants({tree.pid}, newest - PROBE_LIMIT - 1, newest) is None
        assert new_descendants({tree.pid}, newest + 1, newest) is None
    finally:
        for proc in psutil.Process(tree.pid).children(recursive=True):
            proc.kill()
        tree.kill()
        tree.wait()
        tree.stdout.close()
        if outsider is not None:
            outsider.kill()
            outsider.wait()


def test_an_executable_that_does_not_exist_gives_127() -> None:
    result = run(["/nonexistent/program", "x"])
    assert (result.exit_code, result.pid) == (127, None)
    assert result.error == "executable not found: /nonexistent/program"
    result = run(["no-such-program-anywhere"], env={"PATH": os.defpath})
    assert result.exit_code == 127


def test_a_file_that_is_not_executable_gives_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = run([str(script)])
    assert (result.exit_code, result.pid) == (126, None)
    assert result.error == f"permission denied: {script}"


def test_other_launch_failures_are_returned_not_raised(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = run(["true"], env=SHENV, cwd=missing)
    assert result.exit_code == 126 and result.error is not None
    assert str(missing) in result.error and "working directory" in result.error
    assert run([]).exit_code == 127
    assert run([PY, "-c", "pass"], env={"BAD": "nul\0byte"}).exit_code == 126


# -- metrics and ticks ---------------------------------------------------------------


def test_cpu_time_of_a_busy_loop_is_reported() -> None:
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    result = run(py(code))
    # The loop spins until it has used 0.3 s of CPU; how that splits into user and system
    # time depends on the machine (a busy VM books much of it as system time).
    assert result.cpu_user + result.cpu_system >= 0.3
    assert result.cpu_user > 0
    assert result.wall_seconds >= (result.cpu_user + result.cpu_system) * 0.5


def test_max_rss_of_a_program_allocating_100_mb_is_at_least_100_mb() -> None:
    # The program holds the memory a moment: a job's peak is found from wait4 or, when the
    # executor's own peak hides it, from samples.
    code = "import time\nx = b'\\1' * (100 << 20)\ntime.sleep(0.3)"
    result = run(py(code))
    assert result.exit_code == 0
    assert result.max_rss_kb >= 100 * 1024


def test_max_rss_of_a_small_job_is_not_inflated_by_the_executor_own_peak() -> None:
    # Linux counts the pre-exec address space (the executor's) into a child's maxrss;
    # run in a fresh interpreter that first grows to 300 MB.
    code = """
    import json, pathlib, sys
    from multiflexi.executors.base import LaunchSpec
    from multiflexi.executors.native import NativeExecutor
    class Null:
        def write(self, stream, data): pass
        def tick(self): pass
    ballast = b"\\1" * (300 << 20)
    del ballast
    spec = LaunchSpec(argv=[sys.executable, "-c", "import time; time.sleep(0.2)"], env={}, cwd=pathlib.Path.cwd())
    print(NativeExecutor().launch(spec, Null()).max_rss_kb)
    """
    out = subprocess.run(py(code), capture_output=True, check=True, timeout=60)
    kb = int(out.stdout)
    assert 0 < kb < 150 * 1024, kb


def test_tick_is_called_at_least_every_quarter_second(tmp_path: Path) -> None:
    release = tmp_path / "release"
    sink = Collect()
    sink.on_tick = lambda: release.touch() if len(sink.ticks) >= 6 else None
    code = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)"
    result = run(py(code, str(release)), sink, timeout=30)
    assert result.exit_code == 0
    assert len(sink.ticks) >= 6
    gaps = [b - a for a, b in zip(sink.ticks, sink.ticks[1:], strict=False)]
    assert max(gaps) < 0.35, gaps


# -- our side failing ------------------------------------------------------------------


def test_a_failing_sink_kills_the_job_and_the_error_propagates(
    tmp_path: Path, strays: list[int]
) -> None:
    pidfile = tmp_path / "child.pid"

    def explode(stream: str, data: bytes) -> None:
        raise RuntimeError("database gone")

    code = f"sleep 60 & echo $! > {pidfile}; echo hello; wait"
    with pytest.raises(RuntimeError, match="database gone"):
        run(["sh", "-c", code], Collect(on_write=explode), env=SHENV)
    child = read_pid(pidfile)
    strays.append(child)
    assert is_gone(child)


def test_a_failing_on_start_kills_the_job() -> None:
    pids: list[int] = []

    def fail(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("cannot record pid")

    with pytest.raises(RuntimeError):
        run(py("import time; time.sleep(60)"), on_start=fail)
    assert is_gone(pids[0])


# -- registry ---------------------------------------------------------------------------


def test_executors_are_found_by_name_case_insensitively() -> None:
    assert available() == ["Native"]
    for name in ("Native", "native", "NATIVE"):
        executor = get_executor(name)
        assert isinstance(executor, NativeExecutor) and executor.name == "Native"


def test_an_unknown_executor_names_the_available_ones() -> None:
    with pytest.raises(Invalid, match=r"unknown executor 'Docker'.*Native"):
        get_executor("Docker")

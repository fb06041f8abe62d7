"""Executors for the benchmarks: real ``multiflexi-executor`` processes, or worker
threads in this process when the daemon is missing (``--in-process``); and an RSS sampler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import select

from benchmarks.common import BenchError, Databases, db_environment, program
from multiflexi import queue
from multiflexi.storage.database import Database


def daemon_available() -> bool:
    """Whether ``multiflexi-executor`` exists in this installation and imports."""
    try:
        program("multiflexi-executor")
        from multiflexi.daemons.executor import run  # noqa: F401
    except (BenchError, ImportError):
        return False
    return True


class Executors(ABC):
    """Executors working on one database, as a context manager; ``pids`` are their
    processes (the benchmark's own process when they are threads)."""

    kind = "?"

    def __enter__(self) -> Executors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @abstractmethod
    def stop(self) -> None: ...

    @property
    @abstractmethod
    def pids(self) -> list[int]: ...

    def check(self) -> None:
        """Raise :class:`BenchError` if an executor died (threads cannot)."""
        return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the executor processes used so far, not counting the
        jobs' own processes; None when the executors are threads of the benchmark."""
        return None


class DaemonExecutors(Executors):
    """``count`` real ``multiflexi-executor`` processes, each ``--max-parallel N``; entering
    returns once all of them are registered and idle."""

    kind = "daemon"

    def __init__(
        self,
        db: Database,
        *,
        count: int,
        max_parallel: int,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        env = db_environment(
            db.settings,
            MULTIFLEXI_MAX_PARALLEL=str(max_parallel),
            # Housekeeping would delete or scan jobs mid-measurement; it runs hourly in
            # real life. It is switched off here, nothing else is.
            MULTIFLEXI_HOUSEKEEPING_INTERVAL="0",
            **(extra_env or {}),
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        exe = program("multiflexi-executor")
        started = len(list(log_dir.iterdir()))
        try:
            for i in range(count):
                log = (log_dir / f"executor-{started + i}.log").open("wb")
                self.logs.append(log)
                self.procs.append(
                    subprocess.Popen(
                        [exe, "--max-parallel", str(max_parallel)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            self._wait_registered(count)
        except BaseException:
            self.stop()
            raise

    def _wait_registered(self, count: int) -> None:
        from multiflexi.storage.models import Worker

        pids = {p.pid for p in self.procs}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.check()
            with self.db.read() as session:
                seen = set(
                    session.scalars(
                        select(Worker.pid).where(
                            Worker.kind == "executor", Worker.stopped.is_(None)
                        )
                    )
                )
            if pids <= seen:
                # Registration comes just before the loop (and LISTEN) starts.
                time.sleep(0.5)
                return
            time.sleep(0.05)
        raise BenchError(f"executors did not register within 60 s (see {self.logs[0].name})")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu_seconds(self) -> float | None:
        import psutil

        total = 0.0
        for pid in self.pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def check(self) -> None:
        for proc in self.procs:
            code = proc.poll()
            if code is not None:
                raise BenchError(
                    f"multiflexi-executor exited with {code}; log: {self.logs[0].name}"
                )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self.logs:
            log.close()
        self.procs = []


class ThreadExecutors(Executors):
    """The fallback without the daemon: ``count * max_parallel`` threads in this process,
    each claiming with ``queue.claim_next`` and running with ``JobRunner.perform_job``,
    polling at ``MULTIFLEXI_POLL_INTERVAL`` when idle (no LISTEN)."""

    kind = "in-process"

    def __init__(self, db: Database, *, count: int, max_parallel: int) -> None:
        from multiflexi.jobs.runner import JobRunner

        self.db = db
        self.runner = JobRunner(db, db.settings, job_hooks=[])
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._work, name=f"bench-worker-{i}", daemon=True)
            for i in range(count * max_parallel)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        worker = queue.new_worker_id("bench")
        lease = self.db.settings.lease_seconds
        while not self.stopping.is_set():
            try:
                claim = queue.claim_next(self.db, worker, lease)
                if claim is None:
                    self.stopping.wait(self.db.settings.poll_interval)
                    continue
                self.runner.perform_job(claim)
            except Exception as exc:  # keep the worker; report at the end
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.stopping.wait(0.1)

    @property
    def pids(self) -> list[int]:
        return [os.getpid()]

    def check(self) -> None:
        if self.errors:
            raise BenchError(f"worker error: {self.errors[0]}")

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)


@dataclass
class Harness:
    """What a benchmark gets: where to put things, how big to make them, how to run jobs."""

    root: Path
    databases: Databases
    quick: bool
    use_daemon: bool

    @property
    def executor_kind(self) -> str:
        return "daemon" if self.use_daemon else "in-process"

    def executors(
        self,
        db: Database,
        *,
        count: int = 1,
        max_parallel: int = 1,
        extra_env: Mapping[str, str] | None = None,
    ) -> Executors:
        if self.use_daemon:
            return DaemonExecutors(
                db,
                count=count,
                max_parallel=max_parallel,
                log_dir=self.root / "logs",
                extra_env=extra_env,
            )
        return ThreadExecutors(db, count=count, max_parallel=max_parallel)

    def open(self, backend: str, **extra: str) -> Database:
        return self.databases.open(backend, **extra)


@dataclass
class Sampler:
    """Samples the resident set size of some processes while a block runs."""

    pids: Sequence[int]
    interval: float = 0.02
    peak: int = 0
    start: int = 0

    def _rss(self) -> int:
        import psutil

        total = 0
        for pid in self.pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
        return total

    @contextmanager
    def sampling(self) -> Iterator[None]:
        """Sample in a thread while the block runs; ``start`` and ``peak`` hold the result."""
        stop = threading.Event()
        self.start = self.peak = self._rss()

        def sample() -> None:
            while not stop.wait(self.interval):
                self.peak = max(self.peak, self._rss())

        thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.peak = max(self.peak, self._rss())

"""Executor start-up: from ``multiflexi-executor``'s process start to its first claim.

A restarted executor (a deploy, a crash, a systemd restart) should claim within 0.3 s.
Each run queues one job that is due now, starts a real daemon, and reads the job's claim
time (``job.begin``, set by the claim) back from the database; the start is the wall
clock just before ``Popen``. The daemon is then stopped and the next run begins with a
fresh job. Byte code is compiled by a warm-up run into a cache of this benchmark
(``PYTHONPYCACHEPREFIX``), as an installed package has it; the floor is a fresh
interpreter that only imports ``sqlalchemy.orm`` (with the same cache).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC

from sqlalchemy import select

from benchmarks.common import (
    BACKEND_NAMES,
    BenchError,
    Row,
    db_environment,
    load1,
    median,
    median_wall,
    program,
)
from benchmarks.executors import Harness
from benchmarks.jobs import make_template, park_jobs, release
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job

#: Target from process start to the first claim.
TARGET = 0.300
#: How long one run may take before it counts as failed.
RUN_TIMEOUT = 30.0


def _claim_time(db: Database, job_id: int) -> float | None:
    with db.read() as session:
        begin = session.scalar(select(Job.begin).where(Job.id == job_id))
    return None if begin is None else begin.replace(tzinfo=begin.tzinfo or UTC).timestamp()


def time_to_first_claim(
    db: Database, rt_id: int, env: Mapping[str, str]
) -> tuple[float, float | None]:
    """Seconds from starting one executor to its claim of the one due job, and the CPU
    seconds the executor had used when the claim was seen (less sensitive than the wall
    time to a machine shared with other work)."""
    import psutil

    [job_id] = park_jobs(db, rt_id, 1)
    release(db, [job_id])
    exe = program("multiflexi-executor")
    started = time.time()
    proc = subprocess.Popen(
        [exe, "--max-parallel", "1"],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            claimed = _claim_time(db, job_id)
            if claimed is not None:
                try:
                    times = psutil.Process(proc.pid).cpu_times()
                    cpu: float | None = times.user + times.system
                except psutil.Error:
                    cpu = None
                return claimed - started, cpu
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                raise BenchError(f"multiflexi-executor exited {proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                raise BenchError(f"no claim within {RUN_TIMEOUT:g} s")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def startup(h: Harness) -> list[Row]:
    """Process start -> first claim of ``multiflexi-executor``, SQLite and PostgreSQL."""
    runs = 3 if h.quick else 7
    cache = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cache["PYTHONPYCACHEPREFIX"] = str(h.root / "pycache")
    floor = median_wall([sys.executable, "-c", "import sqlalchemy.orm"], runs, cache)
    rows = []
    for backend in ("sqlite", "pgsql"):
        name = f"executor start-up to first claim, {BACKEND_NAMES[backend]}"
        load = load1()
        try:
            db = h.open(backend)
        except BenchError as exc:
            rows.append(Row(name, None, "ms", note=f"not measured: {exc}", load=load))
            continue
        try:
            rt_id = make_template(db, executable="/bin/true")
            env = {
                **db_environment(db.settings, MULTIFLEXI_HOUSEKEEPING_INTERVAL="0"),
                "PYTHONPYCACHEPREFIX": cache["PYTHONPYCACHEPREFIX"],
            }
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            time_to_first_claim(db, rt_id, env)  # warm-up: byte code, page cache
            samples = [time_to_first_claim(db, rt_id, env) for _ in range(runs)]
        except BenchError as exc:
            rows.append(Row(name, None, "ms", note=f"not measured: {exc}", load=load))
            continue
        finally:
            db.dispose()
        times = [wall for wall, _cpu in samples]
        cpus = [cpu for _wall, cpu in samples if cpu is not None]
        cpu_note = (
            f"; executor CPU until the claim seen: median {median(cpus) * 1000:.0f} ms"
            if cpus
            else ""
        )
        measured = median(times)
        rows.append(
            Row(
                name,
                measured * 1000,
                "ms",
                floor * 1000,
                "ms",
                'python -c "import sqlalchemy.orm"',
                measured / floor,
                f"<= {TARGET * 1000:.0f} ms",
                measured <= TARGET,
                f"median of {runs} restarts after a warm-up (min {min(times) * 1000:.0f},"
                f" max {max(times) * 1000:.0f} ms); from the wall clock before Popen to the"
                " job's claim time in the database" + cpu_note,
                load,
            )
        )
    return rows

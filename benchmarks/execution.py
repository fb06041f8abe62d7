"""Benchmarks of running jobs: throughput, latency, big output and scaling.

Each returns table rows; see benchmarks/README.md for what every figure means.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence

from benchmarks.common import BACKEND_NAMES, BenchError, Row, load1, median, percentile
from benchmarks.executors import Harness, Sampler
from benchmarks.jobs import (
    artifact_sizes,
    cancel_waiting,
    finished_count,
    handover_gaps,
    make_template,
    park_jobs,
    read_output,
    release,
    status_counts,
    wait_final,
)
from multiflexi.storage.database import Database

MIB = 1024 * 1024
#: A bare executable name, as real application files have it (``abraflexi-import``).
TRIVIAL = ["sh", "-c", "echo out; echo err >&2"]


def _failed(name: str, unit: str, exc: BaseException) -> Row:
    return Row(name, None, unit, note=f"not measured: {exc}", load=load1())


def _outcome(db: Database, ids: Sequence[int]) -> str:
    """ "1000 success" or the mix of statuses, for the notes."""
    counts = status_counts(db, ids)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _cpu_note(before: float | None, after: float | None, jobs: int) -> str:
    """ "; executor CPU 31.0 ms/job" (daemons only: threads share the benchmark's CPU)."""
    if before is None or after is None or jobs <= 0:
        return ""
    return f"; executor CPU {(after - before) / jobs * 1000:.1f} ms/job"


# -- 1. throughput ----------------------------------------------------------------------------


def bare_rate(argv: Sequence[str], jobs: int, threads: int) -> float:
    """Jobs per second of a plain ``subprocess.run`` loop with captured output."""
    left = iter(range(jobs))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            subprocess.run(argv, capture_output=True, check=True)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return jobs / (time.perf_counter() - start)


#: The issue's "2 workers": two executors (a worker is an executor with its own id), one
#: job at a time each -- the concurrency of the bare loop's 2 threads. The same 2 jobs at
#: once in one executor is shown too: one Python process does its bookkeeping on one core.
LAYOUTS = ((2, 1, "2 workers"), (1, 2, "1 executor, --max-parallel 2"))


def throughput(h: Harness) -> list[Row]:
    """Trivial jobs, queued -> claimed -> run -> output stored, with 2 workers."""
    jobs = 40 if h.quick else 1000
    rows = []
    for backend in ("sqlite", "pgsql"):
        for count, parallel, label in LAYOUTS:
            name = f"throughput, {BACKEND_NAMES[backend]}, {label} ({jobs} jobs)"
            load = load1()
            try:
                bare = bare_rate(TRIVIAL, jobs, 2)
                rate, note = _drain(h, backend, jobs, count, parallel)
            except BenchError as exc:
                rows.append(_failed(name, "jobs/s", exc))
                continue
            ratio = rate / bare
            target, met = "", None
            if count == 2 and backend == "sqlite":
                target, met = ">= 150 jobs/s, >= 0.30", rate >= 150 and ratio >= 0.30
            elif count == 2:
                target, met = ">= 0.30", ratio >= 0.30
            rows.append(
                Row(
                    name,
                    rate,
                    "jobs/s",
                    bare,
                    "jobs/s",
                    "bare subprocess.run, 2 threads",
                    ratio,
                    target,
                    met,
                    note,
                    load,
                )
            )
    return rows


def _drain(h: Harness, backend: str, jobs: int, count: int, parallel: int) -> tuple[float, str]:
    db = h.open(backend)
    try:
        rt = make_template(db, executable=TRIVIAL[0], cmdparams="-c 'echo out; echo err >&2'")
        ids = park_jobs(db, rt, jobs)
        with h.executors(db, count=count, max_parallel=parallel) as executors:
            cpu = executors.cpu_seconds()
            start = release(db, ids)
            end = wait_final(db, ids, timeout=60 + jobs / 2, alive=executors.check)
            cpu_note = _cpu_note(cpu, executors.cpu_seconds(), jobs)
        sizes = artifact_sizes(db, ids)
        stored = sizes.get("stdout", 0) == 4 * jobs and sizes.get("stderr", 0) == 4 * jobs
        note = f"{_outcome(db, ids)}; outputs {'all stored' if stored else f'MISSING {sizes}'}"
        plural = "s" if count > 1 else ""
        note += f"{cpu_note}; {count} {h.executor_kind} executor{plural} --max-parallel {parallel}"
        return jobs / (end - start), note
    finally:
        db.dispose()


# -- 2. latency ---------------------------------------------------------------------------


def _epoch(moment: object) -> float:
    from datetime import datetime

    assert isinstance(moment, datetime)
    return moment.timestamp()


def bare_start_latency(samples: int) -> float:
    """Median seconds from ``Popen`` to the time ``date`` prints: the floor of any executor."""
    found = []
    for _ in range(samples):
        before = time.time()
        out = subprocess.run(["date", "+%s.%N"], capture_output=True, check=True).stdout
        found.append(float(out) - before)
    return median(found)


#: create_job called -> the app's first statement, at idle: the issue's target.
CALL_TO_START_TARGET = {"pgsql": 0.010}


def latency(h: Harness) -> list[Row]:
    """Due (enqueue committed) -> the app's first statement, one idle executor; and from
    the call of create_job, which the enqueue includes."""
    jobs = 10 if h.quick else 200
    floor = bare_start_latency(20)
    rows = []
    for backend, target in (("sqlite", 0.250), ("pgsql", 0.050), ("mysql", 0.250)):
        title = f"latency due -> start, {BACKEND_NAMES[backend]} ({jobs} jobs)"
        load = load1()
        try:
            starts, claims, from_call = _latencies(h, backend, jobs)
        except BenchError as exc:
            rows.append(_failed(title, "ms", exc))
            continue
        goal = CALL_TO_START_TARGET.get(backend)
        call_median = median(from_call)
        rows.append(
            Row(
                f"latency create_job called -> start, {BACKEND_NAMES[backend]} ({jobs} jobs), median",
                call_median * 1000,
                "ms",
                floor * 1000,
                "ms",
                "bare Popen -> start, median",
                call_median / floor,
                f"<= {goal * 1000:.0f} ms" if goal else "",
                call_median <= goal if goal else None,
                f"create_job itself: median {median([c - s for c, s in zip(from_call, starts, strict=True)]) * 1000:.1f} ms",
                load,
            )
        )
        claim_note = f"claim (job.begin) median {median(claims) * 1000:.1f} ms"
        for label, value in (("median", median(starts)), ("p99", percentile(starts, 99))):
            rows.append(
                Row(
                    f"{title}, {label}",
                    value * 1000,
                    "ms",
                    floor * 1000,
                    "ms",
                    "bare Popen -> start, median",
                    value / floor,
                    f"<= {target * 1000:.0f} ms",
                    value <= target,
                    f"{claim_note}; executor: {h.executor_kind}",
                    load,
                )
            )
    return rows


def _latencies(h: Harness, backend: str, jobs: int) -> tuple[list[float], list[float], list[float]]:
    from multiflexi.jobs.service import create_job
    from multiflexi.storage.models import Job

    db = h.open(backend)
    starts: list[float] = []
    claims: list[float] = []
    from_call: list[float] = []
    rng = random.Random(42)
    try:
        rt = make_template(db, executable=shutil.which("date") or "/bin/date", cmdparams="+%s.%N")
        with h.executors(db, count=1, max_parallel=1) as executors:
            for _ in range(jobs):
                # A random pause puts each enqueue at a random phase of the idle poll.
                time.sleep(rng.uniform(0.0, 0.1))
                called = time.time()
                job = create_job(db, db.settings, runtemplate_id=rt)
                committed = time.time()
                wait_final(db, [job.id], timeout=30, poll=0.005, alive=executors.check)
                with db.read() as session:
                    stored = session.get(Job, job.id)
                    assert stored is not None
                    status, begin = stored.status, stored.begin
                output = read_output(db, job.id).strip()
                if status != "success" or not output:
                    raise BenchError(f"job {job.id} ended {status} with output {output!r}")
                starts.append(float(output) - committed)
                claims.append(_epoch(begin) - committed)
                from_call.append(float(output) - called)
        return starts, claims, from_call
    finally:
        db.dispose()


# -- 3. big output ------------------------------------------------------------------------


def big_output(h: Harness) -> list[Row]:
    """One job writing ``size`` bytes to stdout, on SQLite: capture rate and executor RSS."""
    size = 32 * MIB if h.quick else 1024 * MIB
    label = f"{size // MIB} MiB" if size < 1024 * MIB else f"{size // (1024 * MIB)} GiB"
    head = shutil.which("head") or "/usr/bin/head"
    argv = [head, "-c", str(size), "/dev/zero"]
    load = load1()
    name = f"big output capture, SQLite ({label} stdout)"
    try:
        floor = _redirect_rate(h, argv, size)
        rate, sampler, note = _capture(h, argv, size)
    except BenchError as exc:
        return [_failed(name, "MiB/s", exc)]
    whose = "executor process" if h.use_daemon else "benchmark process (in-process executor)"
    return [
        Row(
            name,
            rate,
            "MiB/s",
            floor,
            "MiB/s",
            "`cmd > file`",
            rate / floor,
            "",
            None,
            note,
            load,
        ),
        Row(
            f"big output, peak RSS of the {whose}",
            sampler.peak / MIB,
            "MiB",
            sampler.start / MIB,
            "MiB",
            "RSS when idle, before the job",
            sampler.peak / sampler.start if sampler.start else None,
            "",
            None,
            f"+{(sampler.peak - sampler.start) / MIB:.1f} MiB while capturing {label}",
            load,
        ),
    ]


def _redirect_rate(h: Harness, argv: Sequence[str], size: int) -> float:
    """MiB/s of ``cmd > file`` (median of 3) on the same disk as the database."""
    target = h.root / "redirect.bin"
    rates = []
    for _ in range(3):
        with target.open("wb") as out:
            start = time.perf_counter()
            subprocess.run(argv, stdout=out, check=True)
            out.flush()
            rates.append(size / MIB / (time.perf_counter() - start))
        target.unlink()
    return median(rates)


def _capture(h: Harness, argv: Sequence[str], size: int) -> tuple[float, Sampler, str]:
    db = h.open("sqlite")
    try:
        rt = make_template(db, executable=argv[0], cmdparams=" ".join(argv[1:]))
        ids = park_jobs(db, rt, 1)
        with h.executors(db, count=1, max_parallel=1) as executors:
            sampler = Sampler(executors.pids)
            with sampler.sampling():
                start = release(db, ids)
                end = wait_final(db, ids, timeout=900, poll=0.05, alive=executors.check)
        stored = artifact_sizes(db, ids).get("stdout", 0)
        note = f"{_outcome(db, ids)}; stored {stored / MIB:.0f} MiB"
        if stored != size:
            note += f" (EXPECTED {size / MIB:.0f} MiB)"
        return size / MIB / (end - start), sampler, note
    finally:
        db.dispose()


# -- 4. scaling ---------------------------------------------------------------------------


def scaling(h: Harness) -> list[Row]:
    """N executors (one job at a time each) on PostgreSQL, jobs sleeping 100 ms.

    The rate is measured in a steady-state window (after a warm-up of a tenth of it, while
    jobs are still waiting), so that a step takes the same time however slow the executors
    are.
    """
    window = 1.5 if h.quick else 10.0
    sleep = shutil.which("sleep") or "/bin/sleep"
    rows = []
    try:
        db = h.open("pgsql")
    except BenchError as exc:
        return [_failed("scaling, PostgreSQL", "jobs/s", exc)]
    try:
        rt = make_template(db, executable=sleep, cmdparams="0.1")
        # What the job itself takes here, fork and exec included: no runner of this
        # command can reach more than 100 ms / this of the ideal.
        bare_ms = 1000 / bare_rate([sleep, "0.1"], 10 if h.quick else 30, 1)
        ceiling = f"; a bare subprocess.run loop of the job: {bare_ms:.1f} ms per job"
        ceiling += f" (at most {100 / bare_ms:.2f} of ideal)"
        for count in (1, 4) if h.quick else (1, 2, 4, 8):
            ideal = count * 10.0
            name = f"scaling, PostgreSQL, {count} executor{'s' if count > 1 else ''}"
            load = load1()
            try:
                rate, note = _steady_rate(h, db, rt, count, window)
            except BenchError as exc:
                rows.append(_failed(name, "jobs/s", exc))
                continue
            rows.append(
                Row(
                    name,
                    rate,
                    "jobs/s",
                    ideal,
                    "jobs/s",
                    "ideal N x 10 jobs/s",
                    rate / ideal,
                    ">= 0.9 of ideal" if count == 8 else "",
                    rate / ideal >= 0.9 if count == 8 else None,
                    note + ceiling,
                    load,
                )
            )
    finally:
        db.dispose()
    return rows


def _steady_rate(h: Harness, db: Database, rt: int, count: int, window: float) -> tuple[float, str]:
    warmup = window / 10
    # Enough jobs for the window at the ideal rate, plus a margin: the queue never runs dry.
    jobs = int(count * 10 * (warmup + window) * 1.3) + 10
    ids = park_jobs(db, rt, jobs)
    with h.executors(db, count=count, max_parallel=1) as executors:
        release(db, ids)
        time.sleep(warmup)
        first, began, cpu = finished_count(db, ids), time.time(), executors.cpu_seconds()
        time.sleep(window)
        last, ended = finished_count(db, ids), time.time()
        cpu_note = _cpu_note(cpu, executors.cpu_seconds(), last - first)
        executors.check()
    if last >= jobs:
        raise BenchError(f"the queue ran dry: all {jobs} jobs finished within the window")
    left = cancel_waiting(db, ids)
    wait_final(db, ids, timeout=60)
    counts = status_counts(db, ids)
    bad = {s: n for s, n in counts.items() if s not in ("success", "cancelled")}
    note = f"{last - first} jobs in a {ended - began:.1f} s window; {left} left cancelled"
    note += f"{cpu_note}; executor: {h.executor_kind} --max-parallel 1"
    to_claim, to_start = handover_gaps(db, ids)
    if to_claim:
        note += (
            f"; between two jobs of one executor (median): process end -> next claim"
            f" {median(to_claim):.1f} ms, claim -> process start {median(to_start):.1f} ms"
        )
    if bad:
        note += f"; UNEXPECTED {bad}"
    return (last - first) / (ended - began), note

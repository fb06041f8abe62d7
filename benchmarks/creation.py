"""Benchmark of job creation: ``create_job`` one at a time and in a burst, per backend.

What every ``run-template:schedule``, API ``POST /job/``, event and webhook pays before a
job can run. The baseline is the floor of any write: one transaction that inserts one row
as large as a job's environment into a table of its own and commits, measured on the same
database just before.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import Column, Integer, MetaData, Table, Text, insert

from benchmarks.common import BACKEND_NAMES, BenchError, Row, load1, median
from benchmarks.executors import Harness
from benchmarks.jobs import make_template
from multiflexi.storage.database import Database

#: The job of the throughput benchmark, with a bare executable name as real apps have.
EXECUTABLE, CMDPARAMS = "sh", "-c 'echo out; echo err >&2'"
TARGET_MS = 5.0


def creation(h: Harness) -> list[Row]:
    """create_job one at a time (median) and 1,000 back to back (mean), per backend."""
    single = 20 if h.quick else 200
    burst = 50 if h.quick else 1000
    rows = []
    for backend in ("sqlite", "pgsql", "mysql"):
        names = (
            f"job creation, one at a time, {BACKEND_NAMES[backend]} ({single} jobs), median",
            f"job creation, burst of {burst:,}, {BACKEND_NAMES[backend]}, per job",
        )
        load = load1()
        try:
            floor, one, many = _measure(h, backend, single, burst)
        except BenchError as exc:
            rows += [
                Row(name, None, "ms", note=f"not measured: {exc}", load=load) for name in names
            ]
            continue
        target = f"<= {TARGET_MS:.0f} ms" if backend != "mysql" else ""
        for name, value in zip(names, (one, many), strict=True):
            rows.append(
                Row(
                    name,
                    value * 1000,
                    "ms",
                    floor * 1000,
                    "ms",
                    "one-row INSERT + COMMIT of a job's size, median",
                    value / floor,
                    target,
                    value * 1000 <= TARGET_MS if target else None,
                    "create_job: environment, command line, job row and queue entry, committed",
                    load,
                )
            )
    return rows


def _measure(h: Harness, backend: str, single: int, burst: int) -> tuple[float, float, float]:
    from multiflexi.jobs.service import create_job

    db = h.open(backend)
    try:
        rt = make_template(db, executable=EXECUTABLE, cmdparams=CMDPARAMS)
        for _ in range(5):  # warm: connections, caches, prepared statements
            create_job(db, db.settings, runtemplate_id=rt)
        body = json.dumps(_first_env(db))
        floor = _insert_floor(db, body, single)
        times = []
        for _ in range(single):
            start = time.perf_counter()
            create_job(db, db.settings, runtemplate_id=rt)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(burst):
            create_job(db, db.settings, runtemplate_id=rt)
        return floor, median(times), (time.perf_counter() - start) / burst
    finally:
        db.dispose()


def _first_env(db: Database) -> object:
    from sqlalchemy import select

    from multiflexi.storage.models import Job

    with db.read() as session:
        return session.scalars(select(Job.env).limit(1)).one()


def _insert_floor(db: Database, body: str, samples: int) -> float:
    """Median seconds of a one-row insert of ``body`` committed on its own."""
    table = Table(
        "bench_floor",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("body", Text, nullable=False),
    )
    table.create(db.engine, checkfirst=True)
    try:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            with db.connection() as conn:
                conn.execute(insert(table).values(body=body))
            times.append(time.perf_counter() - start)
        return median(times)
    finally:
        table.drop(db.engine)

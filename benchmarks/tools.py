"""Benchmarks of the command line and of the scheduler step."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

from sqlalchemy import insert, select

from benchmarks.common import (
    BACKEND_NAMES,
    BenchError,
    Row,
    db_environment,
    load1,
    median_wall,
    program,
)
from benchmarks.executors import Harness
from benchmarks.jobs import make_template
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus, RunTemplate
from multiflexi.storage.types import utcnow

# -- 5. CLI -------------------------------------------------------------------------------


def fill_finished_jobs(db: Database, count: int, *, batch: int = 10_000) -> None:
    """Insert ``count`` finished jobs directly, each a copy of one real job's record."""
    from multiflexi.jobs.service import create_job

    rt_id = make_template(db, executable="/bin/true")
    model = create_job(db, db.settings, runtemplate_id=rt_id)
    with db.read() as session:
        job = session.get(Job, model.id)
        assert job is not None
        fields = {
            "app_id": job.app_id,
            "company_id": job.company_id,
            "runtemplate_id": job.runtemplate_id,
            "env": job.env,
            "argv": job.argv,
            "command": job.command,
            "launched_by": job.launched_by,
            "workdir": job.workdir,
            "schedule_type": "adhoc-cli",
            "executor": "Native",
            "host": "bench",
            "worker": "bench",
        }
    start = utcnow() - timedelta(days=30)
    for first in range(0, count, batch):
        rows = []
        for i in range(first, min(first + batch, count)):
            begin = start + timedelta(seconds=20 * i)
            rows.append(
                {
                    **fields,
                    "status": JobStatus.SUCCESS if i % 10 else JobStatus.FAILED,
                    "created": begin,
                    "scheduled_at": begin,
                    "schedule": begin,
                    "begin": begin,
                    "end": begin + timedelta(seconds=1.5),
                    "exitcode": 0 if i % 10 else 1,
                    "wall_seconds": 1.5,
                    "pid": 1000 + i % 30000,
                }
            )
        with db.session() as session:
            session.execute(insert(Job), rows)


def cli(h: Harness) -> list[Row]:
    """``job:list --limit 50`` and ``--help`` next to the import floor of their libraries."""
    jobs = 2_000 if h.quick else 100_000
    runs = 3 if h.quick else 5
    load = load1()
    python = sys.executable
    # Byte code as an installed package has it: the warm-up run compiles into a cache of
    # this run (an editable install under PYTHONDONTWRITEBYTECODE would otherwise compile
    # the project's modules on every call, unlike the libraries of the floor).
    compiled = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    compiled["PYTHONPYCACHEPREFIX"] = str(h.root / "pycache")
    floor_click = median_wall([python, "-c", "import click"], runs, compiled)
    floor_all = median_wall(
        [python, "-c", "import click, sqlalchemy.orm, rich.table"], runs, compiled
    )
    db = h.open("sqlite")
    try:
        fill_finished_jobs(db, jobs)
        env = {
            **db_environment(db.settings),
            "PYTHONPYCACHEPREFIX": compiled["PYTHONPYCACHEPREFIX"],
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    finally:
        db.dispose()
    exe = program("multiflexi-cli")
    rows = []
    for argv, floor, floor_label, target in (
        (
            [exe, "job:list", "--limit", "50"],
            floor_all,
            'python -c "import click, sqlalchemy.orm, rich.table"',
            0.300,
        ),
        ([exe, "--help"], floor_click, 'python -c "import click"', 0.150),
    ):
        shown = "multiflexi-cli " + " ".join(argv[1:])
        name = f"CLI `{shown}`, SQLite, {jobs:,} jobs"
        try:
            wall = median_wall(argv, runs, env)
        except BenchError as exc:
            rows.append(Row(name, None, "ms", note=f"not measured: {exc}", load=load))
            continue
        rows.append(
            Row(
                name,
                wall * 1000,
                "ms",
                floor * 1000,
                "ms",
                floor_label,
                wall / floor,
                f"<= {target * 1000:.0f} ms",
                wall <= target,
                f"median of {runs} runs after a warm-up",
                load,
            )
        )
    return rows


# -- 6. scheduler -------------------------------------------------------------------------


#: The step's target, per backend (the issue names none, so all three are held to it).
SCHEDULER_TARGETS: dict[str, float | None] = {"sqlite": 2.0, "pgsql": 2.0, "mysql": 2.0}


def scheduler(h: Harness) -> list[Row]:
    """One scheduler step over ``n`` run templates that are all due (interval ``i``)."""
    templates = 500 if h.quick else 10_000
    rows = []
    for backend, target in SCHEDULER_TARGETS.items():
        name = f"scheduler step, {templates:,} due templates, {BACKEND_NAMES[backend]}"
        load = load1()
        try:
            from multiflexi.scheduling.scheduler import Scheduler
        except ImportError:
            return [Row(name, None, "s", note="not available: no scheduling.scheduler.Scheduler")]
        try:
            db = h.open(backend)
        except BenchError as exc:
            rows.append(Row(name, None, "s", note=f"not measured: {exc}", load=load))
            continue
        try:
            _due_templates(db, templates)
            step = Scheduler(db, db.settings, job_hooks=[])
            start = time.perf_counter()
            result = step.step(utcnow())
            elapsed = time.perf_counter() - start
        finally:
            db.dispose()
        created = len(result.created)
        rows.append(
            Row(
                name,
                elapsed,
                "s",
                target="—" if target is None else f"<= {target:g} s",
                met=None if target is None else elapsed <= target and created == templates,
                note=f"{created:,} jobs queued"
                + ("" if created == templates else f" (EXPECTED {templates:,})"),
                load=load,
            )
        )
    return rows


def _due_templates(db: Database, count: int) -> None:
    """``count`` active minutely templates of one app and company, created an hour ago."""
    first = make_template(db, executable="/bin/true")
    with db.read() as session:
        model = session.get(RunTemplate, first)
        assert model is not None
        app_id, company_id = model.app_id, model.company_id
    created = utcnow() - timedelta(hours=1)
    rows = [
        {
            "app_id": app_id,
            "company_id": company_id,
            "name": f"bench {i}",
            "interv": "i",
            "active": True,
            "created": created,
        }
        for i in range(count)
    ]
    with db.session() as session:
        session.execute(insert(RunTemplate), rows)
        total = session.scalar(select(RunTemplate.id).order_by(RunTemplate.id.desc()).limit(1))
    if not total or total < count:
        raise BenchError(f"only {total} run templates inserted")

"""Pruning 50,000 jobs while the executor keeps writing, on every backend.

A writer thread plays the executor: it creates jobs and renews leases of running ones in
short transactions for as long as housekeeping runs. Housekeeping must delete exactly what
the policy says (the survivor sets are computed independently here), never touch an
unfinished job, and never hold the writer up for more than two seconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from multiflexi.housekeeping.service import run_housekeeping
from multiflexi.recovery import STRANDED_WINDOW
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, ArtifactChunk, Job, RunTemplate
from tests.factories import make_setup
from tests.storage.test_housekeeping import (
    NOW,
    Seed,
    add_templates,
    count,
    job_ids,
    pruned_ids,
    with_retention,
)

JOBS = 50_000
TEMPLATES = 20
MAX_WRITER_LATENCY = 2.0
STATUSES = (
    ["success"] * 75
    + ["failed"] * 12
    + ["lost"] * 3
    + ["cancelled"] * 3
    + ["running"] * 2
    + ["scheduled"] * 3
    + ["loaded"] * 2
)
FINAL = {"success", "failed", "lost", "cancelled"}
DAYS = {"success": 90, "failed": 365, "keep_last": 10, "keep_failures": 5, "artifacts": 60}
#: Per-template overrides: (keep_success_days, keep_failed_days, keep_last).
OVERRIDES = {0: (None, None, 500), 1: (30, None, None), 2: (None, 10, 0)}


def expected_outcome(
    jobs: list[dict[str, Any]], rules: dict[int, tuple[int, int, int]]
) -> tuple[set[int], set[int]]:
    """Survivors and jobs whose artifacts are pruned, worked out the plain way."""
    by_template: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_template[job["runtemplate_id"]].append(job)
    survivors, pruned = set(), set()
    for rt_id, rows in by_template.items():
        success_days, failed_days, keep_last = rules[rt_id]
        finished = failures = 0
        for job in sorted(rows, key=lambda j: -j["id"]):
            if job["status"] not in FINAL:
                survivors.add(job["id"])
                continue
            keep = finished < keep_last
            finished += 1
            if job["status"] in ("failed", "lost"):
                keep = keep or failures < DAYS["keep_failures"]
                failures += 1
            age = (NOW - job["end"]).days
            limit = success_days if job["status"] == "success" else failed_days
            if keep or age < limit:
                survivors.add(job["id"])
                if not keep and age >= DAYS["artifacts"]:
                    pruned.add(job["id"])
    return survivors, pruned


class Writer(threading.Thread):
    """The executor's share of the database: new jobs, lease renewals, finished jobs."""

    def __init__(self, db: Database, rt: tuple[int, int, int], running: list[int]) -> None:
        super().__init__(daemon=True)
        self.db, self.rt, self.seeded_running = db, rt, running
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.created: list[int] = []
        self.error: BaseException | None = None

    def timed(self, fn: Any) -> Any:
        started = time.monotonic()
        result = self.db.run(fn)
        self.latencies.append(time.monotonic() - started)
        return result

    def run(self) -> None:
        rng = random.Random(7)
        try:
            while not self.stop.is_set():
                self.step(rng)
                time.sleep(0.005)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def step(self, rng: random.Random) -> None:
        app_id, company_id, rt_id = self.rt
        now = datetime.now(UTC)

        def create(session: Any) -> int:
            job = Job(
                app_id=app_id,
                company_id=company_id,
                runtemplate_id=rt_id,
                status="running",
                created=now,
                begin=now,
                lease_until=now + timedelta(minutes=5),
            )
            session.add(job)
            session.flush()
            session.add(
                Artifact(job_id=job.id, filename="stdout.txt", kind="stdout", content=b"hi", size=2)
            )
            return job.id

        self.created.append(self.timed(create))
        renew = rng.choice(self.seeded_running)
        self.timed(
            lambda s: s.execute(
                update(Job)
                .where(Job.id.in_([renew, self.created[-1]]), Job.status == "running")
                .values(heartbeat=now, lease_until=now + timedelta(minutes=5))
            )
        )
        if len(self.created) % 3 == 0:  # finish one of ours
            done = self.created[-2]
            self.timed(
                lambda s: s.execute(
                    update(Job)
                    .where(Job.id == done, Job.status == "running")
                    .values(status="success", end=datetime.now(UTC), lease_until=None)
                )
            )


def test_fifty_thousand_jobs_are_pruned_by_policy_while_the_executor_keeps_writing(
    any_db: Database,
) -> None:
    first = make_setup(any_db)
    app_id, company_id, _ = first
    templates = [first[2], *add_templates(any_db, first, TEMPLATES - 1)]
    rules = {}
    for index, rt_id in enumerate(templates):
        success, failed, keep = OVERRIDES.get(index, (None, None, None))
        rules[rt_id] = (
            success if success is not None else DAYS["success"],
            failed if failed is not None else DAYS["failed"],
            keep if keep is not None else DAYS["keep_last"],
        )
        if index in OVERRIDES:
            with any_db.session() as s:
                s.execute(
                    update(RunTemplate)
                    .where(RunTemplate.id == rt_id)
                    .values(keep_success_days=success, keep_failed_days=failed, keep_last=keep)
                )
    writer_rt = (app_id, company_id, add_templates(any_db, first, 1)[0])

    rng = random.Random(2026)
    seed = Seed()
    for job_id in range(1, JOBS + 1):
        rt_id = templates[rng.randrange(TEMPLATES)]
        # Whole days plus a half: no job sits within seconds of a limit.
        age = rng.randrange(700) + 0.5
        seed.job(
            job_id,
            (app_id, company_id, rt_id),
            rng.choice(STATUSES),
            age,
            output=24,
            big_file=job_id % 100 == 0,
        )
    for row in seed.jobs:
        if row["status"] == "loaded":  # young: orphan repair must leave them alone
            row["created"] = NOW - timedelta(minutes=10)
    t0 = time.monotonic()
    seed.insert(any_db)
    seeded_in = time.monotonic() - t0
    survivors, pruned = expected_outcome(seed.jobs, rules)
    running = [j["id"] for j in seed.jobs if j["status"] == "running"]
    untouched = {j["id"] for j in seed.jobs if j["status"] not in FINAL}
    assert untouched <= survivors and len(survivors) < JOBS * 0.6 and len(pruned) > 1000

    writer = Writer(any_db, writer_rt, running)
    writer.start()
    try:
        while len(writer.latencies) < 5 and writer.error is None:
            time.sleep(0.01)
        settings = with_retention(
            any_db,
            success_days=str(DAYS["success"]),
            failed_days=str(DAYS["failed"]),
            keep_last=str(DAYS["keep_last"]),
            keep_failures=str(DAYS["keep_failures"]),
            artifact_days=str(DAYS["artifacts"]),
        )
        t0 = time.monotonic()
        report = run_housekeeping(any_db, settings, now=NOW)
        pruned_in = time.monotonic() - t0
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error

    assert report["orphans"]["total"] == 0
    assert report["prune"]["jobs_deleted"] == JOBS - len(survivors)
    assert report["prune"]["jobs_artifacts_pruned"] == len(pruned)
    # Batches adapt to about TARGET_SECONDS (0.25 s). One may stretch when the shared CI
    # machine stalls (seen at 1.1 s and at 2.5 s on PostgreSQL, whose deletes lock nothing
    # the writer needs), never to an unbatched delete: many batches, none a large share.
    prune = report["prune"]
    assert prune["batches"] >= 20
    assert prune["max_batch_seconds"] < max(MAX_WRITER_LATENCY, pruned_in / 4)
    # Housekeeping's orphan repair runs recovery, which queues one rerun of each job lost
    # within STRANDED_WINDOW (a lost job runs again unless its template says
    # on_interrupt=fail); the seeded running jobs hold live leases and are left alone.
    with any_db.read() as s:
        reruns = dict(
            s.execute(select(Job.retry_of, Job.id).where(Job.retry_of.is_not(None))).all()
        )
    assert set(reruns) == {
        j["id"] for j in seed.jobs if j["status"] == "lost" and NOW - j["end"] < STRANDED_WINDOW
    }
    assert job_ids(any_db) == survivors | set(writer.created) | set(reruns.values())
    assert pruned_ids(any_db) == pruned
    with any_db.read() as s:
        live = s.execute(
            select(Artifact.job_id, Artifact.state, Artifact.content.is_(None)).where(
                Artifact.job_id.in_(list(pruned)[:2000])
            )
        ).all()
        orphan_artifacts = s.scalar(
            select(func.count()).select_from(Artifact).where(~Artifact.job_id.in_(select(Job.id)))
        )
        statuses = dict(
            s.execute(select(Job.id, Job.status).where(Job.id.in_(list(untouched)))).all()
        )
    assert live and all(state == "pruned" and empty for _, state, empty in live)
    assert orphan_artifacts == 0
    assert statuses == {j["id"]: j["status"] for j in seed.jobs if j["id"] in untouched}
    # Chunk ids are job id * 10 + 2: only jobs that keep their artifacts keep chunks.
    keeps_content = survivors - pruned
    kept_chunks = sum(1 for c in seed.chunks if c["artifact_id"] // 10 in keeps_content)
    assert count(any_db, ArtifactChunk) == kept_chunks > 0
    slowest = max(writer.latencies)
    print(
        f"\n{any_db.dialect}: seeded {JOBS} jobs in {seeded_in:.1f}s, housekeeping {pruned_in:.1f}s "
        f"({report['prune']['batches']} batches, longest {report['prune']['max_batch_seconds']}s); "
        f"writer: {len(writer.latencies)} transactions, slowest {slowest:.3f}s"
    )
    assert slowest < MAX_WRITER_LATENCY
    assert len(writer.latencies) > 50

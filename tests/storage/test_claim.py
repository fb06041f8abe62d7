"""Claiming due jobs (``queue.claim_next``) and reading what a claimed job runs from, on
every backend: the executor's path for each job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from multiflexi import queue
from multiflexi.jobs.context import read_context
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.scheduling.bulk import JobRequest, bulk_create_jobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus, RunTemplate, ScheduleEntry
from multiflexi.storage.types import utcnow
from tests.factories import make_setup

LEASE = 60


def queued(db: Database, rt_id: int, count: int = 1, **kwargs: Any) -> list[int]:
    return [create_job(db, db.settings, runtemplate_id=rt_id, **kwargs).id for _ in range(count)]


def test_claims_follow_priority_then_not_before_and_leave_future_jobs(any_db: Database) -> None:
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass", overlap="allow")
    now = utcnow()
    late, early = (
        queued(any_db, rt_id, at=now - timedelta(seconds=5)),
        queued(any_db, rt_id, at=now - timedelta(seconds=50)),
    )
    urgent = queued(any_db, rt_id, at=now - timedelta(seconds=1))
    future = queued(any_db, rt_id, at=now + timedelta(hours=1))
    with any_db.session() as s:
        s.execute(update(ScheduleEntry).where(ScheduleEntry.job == urgent[0]).values(priority=5))

    order = []
    while (claim := queue.claim_next(any_db, "worker-a", LEASE)) is not None:
        order.append(claim.job_id)
    assert order == [urgent[0], early[0], late[0]]
    with any_db.read() as s:
        job = s.get(Job, urgent[0])
        assert job is not None
        assert (job.status, job.worker) == (JobStatus.RUNNING, "worker-a")
        assert job.lease_until is not None and job.lease_until > utcnow()
        assert s.get(Job, future[0]).status == JobStatus.SCHEDULED  # type: ignore[union-attr]
        assert s.query(ScheduleEntry).count() == 1


def test_a_queue_row_of_a_job_that_is_no_longer_scheduled_is_dropped(any_db: Database) -> None:
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass", overlap="allow")
    stale, good = queued(any_db, rt_id, 2, at=utcnow() - timedelta(seconds=1))
    with any_db.session() as s:  # cancelled behind the queue's back: its row stays
        s.execute(update(Job).where(Job.id == stale).values(status=JobStatus.CANCELLED))

    assert queue.claim_next(any_db, "worker-a", LEASE) is None
    claim = queue.claim_next(any_db, "worker-a", LEASE)
    assert claim is not None and claim.job_id == good
    with any_db.read() as s:
        assert s.get(Job, stale).status == JobStatus.CANCELLED  # type: ignore[union-attr]
        assert s.query(ScheduleEntry).count() == 0


def test_a_template_that_forbids_overlap_gets_one_claim_until_its_job_ends(
    any_db: Database,
) -> None:
    _, _, forbid = make_setup(any_db, cmdparams="-c pass")  # the default policy
    _, _, allow = make_setup(any_db, cmdparams="-c pass", overlap="allow", slug="beta")
    due = utcnow() - timedelta(seconds=1)
    first, second = queued(any_db, forbid, 2, at=due - timedelta(seconds=10))
    free = queued(any_db, allow, 2, at=due)

    claims = [queue.claim_next(any_db, f"worker-{i}", LEASE) for i in range(4)]
    assert [c.job_id if c else None for c in claims] == [first, *free, None]

    with any_db.session() as s:
        s.execute(update(Job).where(Job.id == first).values(status=JobStatus.SUCCESS))
    later = queue.claim_next(any_db, "worker-4", LEASE)
    assert later is not None and later.job_id == second


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def test_a_job_reads_only_the_environment_layers_that_have_rows(any_db: Database) -> None:
    _, _, bare = make_setup(any_db, cmdparams="-c pass", overlap="allow")
    _, _, rich = make_setup(
        any_db,
        cmdparams="-c pass",
        overlap="allow",
        slug="beta",
        fields={"GREETING": {}},
        config={"GREETING": "hello"},
        company_env={"REGION": "eu"},
    )
    runner = JobRunner(any_db, any_db.settings, job_hooks=[])
    due = utcnow() - timedelta(seconds=1)
    queued(any_db, bare, at=due - timedelta(seconds=1))
    queued(any_db, rich, at=due)
    prepared = []
    counts = []
    for _ in range(2):
        claim = queue.claim_next(any_db, "worker-a", LEASE)
        assert claim is not None
        runner.run_begin(claim)  # reads the application's declarations once
        with statements() as seen:
            prepared.append(runner.run_begin(claim))
        counts.append(len(seen))

    bare_env, rich_env = (p.spec.env for p in prepared)
    assert "GREETING" not in bare_env and "REGION" not in bare_env
    assert (rich_env["GREETING"], rich_env["REGION"]) == ("hello", "eu")
    # The rich job's configuration and company variables cost one query each; the bare
    # job's empty layers (and the credentials layer of both) cost none.
    assert counts[1] == counts[0] + 2


def _plans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plans(child)


def test_a_postgresql_claim_updates_its_job_through_the_primary_key(pg_db: Database) -> None:
    """Whatever the planner knows of a table just filled (nothing, before autovacuum has
    analysed it), the claim must not walk every scheduled job to find the one it took:
    that made each claim cost in proportion to the queue."""
    _, _, rt_id = make_setup(pg_db, cmdparams="-c pass", overlap="allow")
    queued(pg_db, rt_id, 300, at=utcnow() - timedelta(seconds=1))
    now = utcnow()
    params = {"b_now": now, "b_worker": "w", "b_moment": now, "b_lease": now}
    with pg_db.engine.connect() as conn:
        compiled = queue._sql(conn).pick_and_take.compile(dialect=conn.dialect)
        explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled)
        plan = conn.exec_driver_sql(explain, {**compiled.params, **params}).scalar_one()[0]["Plan"]
        conn.rollback()
    update_nodes = [n for n in _plans(plan) if n.get("Operation") == "Update"]
    assert len(update_nodes) == 1
    scans = [
        n
        for n in _plans(update_nodes[0])
        if n.get("Relation Name") == "job" and n["Node Type"] != "ModifyTable"
    ]
    assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [("Index Scan", "pk_job")]
    assert scans[0]["Actual Rows"] == 1


def test_the_executor_plans_its_postgresql_claim_once(pg_db: Database) -> None:
    """Planning the claim anew for every job was a third of the server's work per job:
    the claim must be one the server plans once and reuses (its LIMIT written into the
    SQL: a bound LIMIT makes the reusable plan sort the whole queue, so the server kept
    planning each call). Checked where the server counts plans, on the connection that
    claimed."""
    db = Database(pg_db.settings, prepare=True)  # as multiflexi-executor opens it
    try:
        _, _, rt_id = make_setup(db, cmdparams="-c pass", overlap="allow")
        due = utcnow() - timedelta(seconds=1)

        def create(session: Session) -> None:
            rt = session.get(RunTemplate, rt_id)
            assert rt is not None
            bulk_create_jobs(session, db.settings, [JobRequest(rt, due, "adhoc-cli")] * 1000)

        db.run(create)  # a queue the size a reusable plan with a bound LIMIT gets wrong
        with db.autocommit() as conn:
            conn.exec_driver_sql("ANALYZE job; ANALYZE schedule")
        with db.autocommit() as conn:
            for _ in range(15):
                claim = queue._pick_and_take(conn, "worker-a", LEASE, None)
                assert claim is not None and claim.job_id > 0
            generic, custom = conn.exec_driver_sql(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'WITH picked AS%%'"
            ).one()
        # psycopg prepares at the 5th call; the server then plans 5 times before it
        # compares, and from the 6th prepared call on reuses one plan.
        assert generic >= 4, (generic, custom)
        assert custom <= 6
    finally:
        db.dispose()


def test_a_postgresql_claim_reads_its_job_on_its_own_connection(pg_db: Database) -> None:
    _, _, rt_id = make_setup(pg_db, cmdparams="-c pass", overlap="allow")
    _first, second = queued(pg_db, rt_id, 2, at=utcnow() - timedelta(seconds=1))
    runner = JobRunner(pg_db, pg_db.settings, job_hooks=[])
    runner.run_begin(queue.claim_next(pg_db, "worker-a", LEASE))  # type: ignore[arg-type]

    checkouts: list[object] = []

    def checkout(*args: object) -> None:
        checkouts.append(args)

    event.listen(Pool, "checkout", checkout)
    try:
        with statements() as seen:
            claim = queue.claim_next(pg_db, "worker-a", LEASE, then=read_context)
    finally:
        event.remove(Pool, "checkout", checkout)
    assert claim is not None and claim.job_id == second
    assert claim.preread is not None
    assert (claim.preread.job.id, claim.preread.job.status) == (second, JobStatus.RUNNING)
    assert claim.preread.job.worker == "worker-a"
    assert (len(seen), len(checkouts)) == (2, 1)  # the claim and the read, one connection
    with statements() as seen:
        prepared = runner.run_begin(claim)
    assert seen == []  # everything it needs was read with the claim
    assert prepared.job_id == second


def test_a_failed_read_after_a_claim_keeps_the_claim(pg_db: Database) -> None:
    _, _, rt_id = make_setup(pg_db, cmdparams="-c pass", overlap="allow")
    (job_id,) = queued(pg_db, rt_id, at=utcnow() - timedelta(seconds=1))

    def broken(conn: Connection, job: int) -> None:
        conn.exec_driver_sql("SELECT no_such_column FROM job")

    claim = queue.claim_next(pg_db, "worker-a", LEASE, then=broken)
    assert claim is not None and claim.job_id == job_id and claim.preread is None
    with pg_db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.worker) == (JobStatus.RUNNING, "worker-a")
    assert queue.claim_next(pg_db, "worker-b", LEASE) is None  # the one job stays claimed


def test_a_claim_is_the_same_claim_whatever_was_read_with_it(pg_db: Database) -> None:
    _, _, rt_id = make_setup(pg_db, cmdparams="-c pass", overlap="allow")
    queued(pg_db, rt_id, at=utcnow() - timedelta(seconds=1))
    claim = queue.claim_next(pg_db, "worker-a", LEASE, then=read_context)
    assert claim is not None and claim.preread is not None
    bare = queue.Claim(claim.job_id, claim.worker, claim.lease_until)
    assert claim == bare and {claim, bare} == {bare}  # hashable: the rows read are not part of it
    assert "preread" not in repr(claim)


@pytest.mark.parametrize("overlap", ["allow", "forbid"])
def test_a_claim_transaction_reads_its_job_inside_it(any_db: Database, overlap: str) -> None:
    """SQLite and MariaDB (and PostgreSQL for a template that forbids overlapping runs)
    claim in a transaction: the job's rows are read in it, and preparing the job then
    reads nothing more."""
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass", overlap=overlap)
    first, second = queued(any_db, rt_id, 2, at=utcnow() - timedelta(seconds=1))
    runner = JobRunner(any_db, any_db.settings, job_hooks=[])
    claim = queue.claim_next(any_db, "worker-a", LEASE)
    assert claim is not None
    runner.run_begin(claim)  # reads the application's declarations once
    with any_db.session() as s:
        s.execute(update(Job).where(Job.id == first).values(status=JobStatus.SUCCESS))

    begins: list[object] = []

    def begin(conn: object) -> None:
        begins.append(conn)

    event.listen(Engine, "begin", begin)
    try:
        claim = queue.claim_next(any_db, "worker-a", LEASE, then=read_context)
    finally:
        event.remove(Engine, "begin", begin)
    assert claim is not None and claim.job_id == second
    assert claim.preread is not None
    assert (claim.preread.job.status, claim.preread.job.worker) == (JobStatus.RUNNING, "worker-a")
    if any_db.dialect != "pgsql":
        assert len(begins) == 1  # the claim and the read: one transaction
    with statements() as seen:
        prepared = runner.run_begin(claim)
    assert seen == []
    assert prepared.job_id == second


def test_a_failed_read_in_a_claim_transaction_claims_nothing(any_db: Database) -> None:
    """The read is part of the claim: if it fails, the claim is rolled back with it (a
    claim committed without its read would be fine, one rolled back half-way not)."""
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass")  # forbid: a transaction everywhere
    (job_id,) = queued(any_db, rt_id, at=utcnow() - timedelta(seconds=1))

    def broken(conn: Connection, job: int) -> None:
        conn.exec_driver_sql("SELECT no_such_column FROM job")

    with pytest.raises(Exception, match="no_such_column"):
        queue.claim_next(any_db, "worker-a", LEASE, then=broken)
    with any_db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.worker) == (JobStatus.SCHEDULED, "")
        assert s.query(ScheduleEntry).count() == 1
    claim = queue.claim_next(any_db, "worker-b", LEASE, then=read_context)
    assert claim is not None and claim.job_id == job_id and claim.preread is not None


def _success() -> queue.Outcome:
    return queue.Outcome(status=JobStatus.SUCCESS, reason="", end=utcnow(), exitcode=0)


def test_the_next_job_is_claimed_in_the_transaction_that_finishes_the_last(
    any_db: Database,
) -> None:
    """``finish(then=claim_next_in)``: a short job's thread finishes its job and claims its
    next one in one commit, with what the next job runs from read in it too."""
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass", overlap="allow")
    first, second = queued(any_db, rt_id, 2, at=utcnow() - timedelta(seconds=1))
    claim = queue.claim_next(any_db, "worker-a", LEASE)
    assert claim is not None and claim.job_id == first
    taken: list[queue.Claim | None] = []

    def successor(conn: Connection) -> None:
        taken.append(queue.claim_next_in(conn, "worker-a", LEASE, then=read_context))

    commits: list[object] = []

    def commit(conn: object) -> None:
        commits.append(conn)

    event.listen(Engine, "commit", commit)
    try:
        assert queue.finish(any_db, claim, _success(), rt_id, then=successor)
    finally:
        event.remove(Engine, "commit", commit)
    assert len(commits) == 1
    (follow,) = taken
    assert follow is not None and follow.job_id == second and follow.preread is not None
    assert follow.preread.job.status == JobStatus.RUNNING
    with any_db.read() as s:
        done, running = s.get(Job, first), s.get(Job, second)
        assert done is not None and done.status == JobStatus.SUCCESS
        assert running is not None and (running.status, running.worker) == (
            JobStatus.RUNNING,
            "worker-a",
        )
        assert s.query(ScheduleEntry).count() == 0


def test_a_failing_successor_fails_the_finish_and_claims_nothing(any_db: Database) -> None:
    """The claim and the final status commit together or not at all; the runner's retry
    or recovery then finishes the job, and the next job is still queued."""
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass", overlap="allow")
    first, second = queued(any_db, rt_id, 2, at=utcnow() - timedelta(seconds=1))
    claim = queue.claim_next(any_db, "worker-a", LEASE)
    assert claim is not None

    def broken(conn: Connection) -> None:
        queue.claim_next_in(conn, "worker-a", LEASE)
        conn.exec_driver_sql("SELECT no_such_column FROM job")

    with pytest.raises(Exception, match="no_such_column"):
        queue.finish(any_db, claim, _success(), rt_id, then=broken)
    with any_db.read() as s:
        assert s.get(Job, first).status == JobStatus.RUNNING  # type: ignore[union-attr]
        assert s.get(Job, second).status == JobStatus.SCHEDULED  # type: ignore[union-attr]
        assert s.query(ScheduleEntry).count() == 1


def test_a_successor_leaves_a_job_of_a_template_that_forbids_overlap_to_the_claimer(
    any_db: Database,
) -> None:
    """On PostgreSQL and MariaDB the overlap check locks the template's row: not in the
    transaction that has just counted a finished job on another template (two executors
    would wait on each other). SQLite has no row locks and claims it."""
    _, _, allow = make_setup(any_db, cmdparams="-c pass", overlap="allow")
    _, _, forbid = make_setup(any_db, cmdparams="-c pass", overlap="forbid")
    (mine,) = queued(any_db, allow, at=utcnow() - timedelta(seconds=2))
    (other,) = queued(any_db, forbid, at=utcnow() - timedelta(seconds=1))
    claim = queue.claim_next(any_db, "worker-a", LEASE)
    assert claim is not None and claim.job_id == mine
    taken: list[queue.Claim | None] = []
    outcome = _success()
    assert queue.finish(
        any_db,
        claim,
        outcome,
        allow,
        then=lambda conn: taken.append(queue.claim_next_in(conn, "worker-a", LEASE)),
    )
    if any_db.dialect == "sqlite":
        assert taken[0] is not None and taken[0].job_id == other
    else:
        assert taken == [None]
        follow = queue.claim_next(any_db, "worker-a", LEASE)
        assert follow is not None and follow.job_id == other

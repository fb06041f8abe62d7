"""The executor's final write on PostgreSQL as one pipelined transaction
(``queue.finish(pipelined=True)``, ``storage.pipeline``): fewer round trips, and otherwise
exactly what the statement-by-statement transaction does -- the same rows, the same
conversions, the same answers when the job is not ours any more, the same errors."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Float, Numeric, cast, event, func, select, text, update
from sqlalchemy.exc import IntegrityError

from multiflexi import queue
from multiflexi.errors import DatabaseError
from multiflexi.jobs.context import read_context
from multiflexi.jobs.output import INSERT_ARTIFACT
from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import App, Artifact, Job, JobStatus, RunTemplate, ScheduleEntry
from multiflexi.storage.pipeline import Executes, transaction
from multiflexi.storage.types import utcnow
from tests.factories import make_setup

LEASE = 60


def queued(db: Database, rt_id: int, count: int) -> list[int]:
    due = utcnow() - timedelta(seconds=1)
    return [create_job(db, db.settings, runtemplate_id=rt_id, at=due).id for _ in range(count)]


def claimed(db: Database, count: int) -> tuple[int, list[int], queue.Claim]:
    """A template with ``count`` due jobs, the first of them claimed by worker-a."""
    _, _, rt_id = make_setup(db, cmdparams="-c pass", overlap="allow")
    ids = queued(db, rt_id, count)
    claim = queue.claim_next(db, "worker-a", LEASE)
    assert claim is not None and claim.job_id == ids[0]
    return rt_id, ids, claim


def outputs(job_id: int) -> list[dict[str, object]]:
    rows = []
    for stream, body in (("stdout", b"out\n"), ("stderr", b"")):
        rows.append(
            {
                "filename": f"{stream}.txt",
                "content_type": "text/plain",
                "note": stream,
                "kind": stream,
                "job_id": job_id,
                "created": utcnow(),
                "content": body or None,
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "state": "complete",
            }
        )
    return rows


def success() -> queue.Outcome:
    return queue.Outcome(
        status=JobStatus.SUCCESS, reason="exit 0", end=utcnow(), exitcode=0, wall_seconds=0.01
    )


class Successor:
    """What the executor's successor does: claim the next job and read it, on ``conn``."""

    def __init__(self) -> None:
        self.taken: list[queue.Claim | None] = []

    def __call__(self, conn: Executes) -> None:
        self.taken.append(queue.claim_next_in(conn, "worker-a", LEASE, then=read_context))


def finish(
    db: Database,
    claim: queue.Claim,
    rt_id: int,
    *,
    pipelined: bool = True,
    rows: list[dict[str, object]] | None = None,
    then: Callable[[Executes], object] | None = None,
    outcome: queue.Outcome | None = None,
) -> bool:
    body = outputs(claim.job_id) if rows is None else rows
    return queue.finish(
        db,
        claim,
        outcome or success(),
        rt_id,
        before=lambda conn: conn.execute(INSERT_ARTIFACT, body),
        then=then,
        pipelined=pipelined,
    )


def counts(db: Database, rt_id: int) -> tuple[int, int]:
    with db.read() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        return rt.successfull_jobs_count, rt.failed_jobs_count


def artifacts_of(db: Database, job_id: int) -> list[tuple[str, bytes | None, int]]:
    with db.read() as s:
        return sorted(
            (a.kind, a.content, a.size)
            for a in s.scalars(select(Artifact).where(Artifact.job_id == job_id))
        )


@contextmanager
def round_trips(db: Database) -> Iterator[list[str]]:
    """The messages this process's new connection checkouts send that wait for an
    answer (``Sync`` ends a batch of the extended protocol, ``Query`` is a simple one),
    from libpq's own trace."""
    traced: list[Any] = []
    sent: list[str] = []
    with tempfile.TemporaryFile() as trace:

        def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            dbapi_conn.pgconn.trace(trace.fileno())
            dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            traced.append(dbapi_conn)

        engines = {db.engine, db._write_engine, db._read_engine}
        for engine in engines:
            event.listen(engine, "checkout", checkout)
        try:
            yield sent
        finally:
            for engine in engines:
                event.remove(engine, "checkout", checkout)
            for conn in traced:
                conn.pgconn.untrace()
            trace.seek(0)
            for line in trace.read().decode(errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and parts[0] == "F" and parts[2] in ("Sync", "Query"):
                    sent.append(parts[2])


@pytest.fixture
def executor_db(pg_db: Database) -> Iterator[Database]:
    db = Database(pg_db.settings, prepare=True)  # as multiflexi-executor opens it
    yield db
    db.dispose()


def test_a_finish_with_its_successor_claim_waits_for_a_third_of_the_answers(
    executor_db: Database,
) -> None:
    """Status, outputs, count, next claim and its read: three waits for the server (the
    batch up to the claim, the read, the commit) instead of one per statement. (The
    pool's check of the connection, one more wait either way, comes before the trace
    starts.)"""
    db = executor_db
    _, _, rt_id = make_setup(db, cmdparams="-c pass", overlap="allow")
    queued(db, rt_id, 4)
    claim = queue.claim_next(db, "worker-a", LEASE)
    waits = {}
    for pipelined in (False, True):
        assert claim is not None
        successor = Successor()
        with round_trips(db) as sent:
            assert finish(db, claim, rt_id, pipelined=pipelined, then=successor)
        waits[pipelined] = len(sent)
        claim = successor.taken[0]
    assert waits[True] == 3, waits
    assert waits[False] >= 2 * waits[True], waits


def test_a_pipelined_finish_writes_and_reads_what_the_plain_one_does(
    executor_db: Database,
) -> None:
    db = executor_db
    _, _, rt_id = make_setup(db, cmdparams="-c pass", overlap="allow")
    first, second, third = queued(db, rt_id, 3)
    with db.session() as s:  # a time to read back through the column's conversion
        s.execute(update(App).values(updated=utcnow()))
    claim = queue.claim_next(db, "worker-a", LEASE)
    assert claim is not None and claim.job_id == first
    successor = Successor()
    outcome = success()
    assert finish(db, claim, rt_id, then=successor, outcome=outcome)

    (follow,) = successor.taken
    assert follow is not None and follow.job_id == second
    assert follow.lease_until.tzinfo is not None
    with db.read() as s:
        done = s.get(Job, first)
        assert done is not None
        assert (done.status, done.reason, done.exitcode) == (JobStatus.SUCCESS, "exit 0", 0)
        assert done.end == outcome.end and done.lease_until is None
        assert s.get(Job, second).worker == "worker-a"  # type: ignore[union-attr]
        assert s.get(Job, third).status == JobStatus.SCHEDULED  # type: ignore[union-attr]
        assert s.query(ScheduleEntry).count() == 1
    assert artifacts_of(db, first) == [("stderr", None, 0), ("stdout", b"out\n", 4)]
    assert counts(db, rt_id) == (1, 0)
    # What the pipeline read equals what SQLAlchemy reads, time zones included.
    with db.read() as s:
        plain = read_context(s.connection(), second)
    assert plain is not None and follow.preread is not None
    for part in ("job", "app", "company", "rt"):
        assert vars(getattr(follow.preread, part)) == vars(getattr(plain, part)), part
    assert follow.preread.app.updated.tzinfo == UTC
    assert (follow.preread.has_actions, follow.preread.empty_layers) == (
        plain.has_actions,
        plain.empty_layers,
    )


def test_a_job_lost_meanwhile_gets_its_output_but_no_status_and_no_count(
    executor_db: Database,
) -> None:
    db = executor_db
    rt_id, ids, claim = claimed(db, 2)
    first, second = ids
    with db.session() as s:  # recovery got there first
        s.execute(update(Job).where(Job.id == first).values(status=JobStatus.LOST))
    successor = Successor()
    assert not finish(db, claim, rt_id, then=successor)
    with db.read() as s:
        assert s.get(Job, first).status == JobStatus.LOST  # type: ignore[union-attr]
    assert artifacts_of(db, first) == [("stderr", None, 0), ("stdout", b"out\n", 4)]
    assert counts(db, rt_id) == (0, 0)
    # The successor claimed in the transaction that committed, once.
    assert successor.taken[-1] is not None and successor.taken[-1].job_id == second


def test_a_pipelined_finish_whose_commit_answer_was_lost_is_not_repeated(
    executor_db: Database,
) -> None:
    """The retry of a committed finish finds the job holding exactly its outcome: no
    second set of outputs, no second count, and True."""
    db = executor_db
    rt_id, ids, claim = claimed(db, 1)
    (job_id,) = ids
    real = db.autocommit
    lost = []

    @contextmanager
    def answer_lost_once() -> Iterator[Any]:
        with real() as conn:
            yield conn
        if not lost:
            lost.append(True)
            error = DatabaseError("server closed the connection unexpectedly (injected)")
            error.transient = True  # type: ignore[attr-defined]
            raise error

    db.autocommit = answer_lost_once  # type: ignore[method-assign]
    try:
        outcome = success()
        rows = outputs(job_id)
        assert finish(db, claim, rt_id, rows=rows, outcome=outcome)
    finally:
        del db.autocommit
    assert lost == [True]
    assert artifacts_of(db, job_id) == [("stderr", None, 0), ("stdout", b"out\n", 4)]
    assert counts(db, rt_id) == (1, 0)


def test_a_failing_statement_rolls_the_whole_pipeline_back(executor_db: Database) -> None:
    db = executor_db
    rt_id, ids, claim = claimed(db, 2)
    first, second = ids
    successor = Successor()
    orphan = outputs(first)
    orphan[1]["job_id"] = 10**9  # no such job: the foreign key refuses it
    with pytest.raises(IntegrityError, match="fk_artifacts_job_id_job"):
        finish(db, claim, rt_id, rows=orphan, then=successor)
    with db.read() as s:
        assert s.get(Job, first).status == JobStatus.RUNNING  # type: ignore[union-attr]
        assert s.get(Job, second).status == JobStatus.SCHEDULED  # type: ignore[union-attr]
    assert artifacts_of(db, first) == []
    assert counts(db, rt_id) == (0, 0)
    # The pooled connection went back idle, not inside the failed transaction.
    with db.autocommit() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert finish(db, claim, rt_id)


def test_a_connection_lost_mid_pipeline_is_retried_on_a_new_one(executor_db: Database) -> None:
    db = executor_db
    rt_id, ids, claim = claimed(db, 1)
    (job_id,) = ids
    killed: list[int] = []
    admin = Database(db.settings)

    def before(conn: Executes) -> None:
        conn.execute(INSERT_ARTIFACT, outputs(job_id))
        if not killed:
            pid = conn.execute(select(func.pg_backend_pid())).first()
            assert pid is not None
            killed.append(pid.pg_backend_pid)
            with admin.autocommit() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed[0]})

    try:
        assert queue.finish(db, claim, success(), rt_id, before=before, pipelined=True)
    finally:
        admin.dispose()
    assert len(killed) == 1
    assert artifacts_of(db, job_id) == [("stderr", None, 0), ("stdout", b"out\n", 4)]
    assert counts(db, rt_id) == (1, 0)
    with db.read() as s:
        assert s.get(Job, job_id).status == JobStatus.SUCCESS  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_other_backends_ignore_the_flag(backend: str, request: pytest.FixtureRequest) -> None:
    any_db: Database = request.getfixturevalue(f"{backend}_db")
    rt_id, ids, claim = claimed(any_db, 2)
    first, second = ids
    successor = Successor()
    assert finish(any_db, claim, rt_id, then=successor)
    assert successor.taken[0] is not None and successor.taken[0].job_id == second
    assert artifacts_of(any_db, first) == [("stderr", None, 0), ("stdout", b"out\n", 4)]
    assert counts(any_db, rt_id) == (1, 0)


def test_without_a_libpq_that_pipelines_the_finish_goes_statement_by_statement(
    executor_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiflexi.storage import pipeline

    monkeypatch.setattr(pipeline, "supported", lambda: False)
    db = executor_db
    rt_id, ids, claim = claimed(db, 2)
    first, second = ids
    successor = Successor()
    with round_trips(db) as sent:
        assert finish(db, claim, rt_id, then=successor)
    assert len(sent) >= 6, sent
    assert successor.taken[0] is not None and successor.taken[0].job_id == second
    assert artifacts_of(db, first) == [("stderr", None, 0), ("stdout", b"out\n", 4)]


def test_a_pipelined_read_converts_floats_and_numerics_as_sqlalchemy_does(
    executor_db: Database,
) -> None:
    """psycopg's float and numeric conversions depend on the column type the server
    reports; the pipeline reads them by it, as SQLAlchemy does (a template's ``cpus``
    limit once broke every pipelined claim)."""
    db = executor_db
    _, _, rt_id = make_setup(db, cmdparams="-c pass")
    with db.session() as s:
        s.execute(update(RunTemplate).where(RunTemplate.id == rt_id).values(cpus=1.5))
    statement = select(
        RunTemplate.cpus,
        cast(RunTemplate.cpus, Numeric(10, 2)).label("as_numeric"),
        cast(RunTemplate.cpus, Float(asdecimal=True)).label("as_decimal"),
        cast(RunTemplate.id, Float).label("id_as_float"),
    ).where(RunTemplate.id == rt_id)
    with db.read() as s:
        plain = s.execute(statement).one()._asdict()
    with db.autocommit() as conn, transaction(conn) as pipe:
        row = pipe.execute(statement).first()
    assert row is not None
    assert row._mapping == plain
    assert {k: type(v) for k, v in row._mapping.items()} == {k: type(v) for k, v in plain.items()}

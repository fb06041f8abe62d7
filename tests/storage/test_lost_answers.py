"""A database restart as a running job sees it: commits whose answer is lost, and an outage
longer than a few retries.

Lost answer: the transaction committed, but the connection broke before the client heard
so, and the client retries it. Each write of a job's run must find its own committed
work on the retry and neither repeat nor lose it: one artifact per stream and file, every
byte once, one final status, one count on the template. Injected in ``Database``: every
second write transaction of a thread commits and then raises the transient error a
broken connection gives, so every write is retried once after it committed.

Outage: for a while every write transaction fails (rolled back) as one does while the
server is down. A job's writes wait it out (for up to its lease time) instead of
dropping its output after the usual handful of retries.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multiflexi.errors import DatabaseError
from multiflexi.jobs.output import FLUSH_SECONDS
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, ArtifactChunk, Job, JobStatus, RunTemplate
from tests.factories import make_script, make_setup


def transient(message: str) -> DatabaseError:
    error = DatabaseError(message)
    error.transient = True
    return error


class Faults:
    """Wraps ``db``'s write transactions (``connection``, ``session``) until :meth:`stop`;
    :meth:`before_commit` and :meth:`after_commit` may raise."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._saved = {name: getattr(db, name) for name in ("connection", "session")}
        for name, real in self._saved.items():
            setattr(db, name, self._faulty(real))

    def _faulty(
        self, real: Callable[[], AbstractContextManager[Any]]
    ) -> Callable[[], AbstractContextManager[Any]]:
        @contextmanager
        def begin() -> Iterator[Any]:
            with real() as handle:
                yield handle
                self.before_commit()  # raising here rolls the transaction back
            self.after_commit()

        return begin

    def before_commit(self) -> None:
        pass

    def after_commit(self) -> None:
        pass

    def stop(self) -> None:
        for name in self._saved:
            self.db.__dict__.pop(name, None)  # the class's methods again


class LostAnswers(Faults):
    """Every second write transaction of each thread commits, and then its caller is told
    the connection broke."""

    def __init__(self, db: Database) -> None:
        self.lost = 0
        self._local = threading.local()
        super().__init__(db)

    def after_commit(self) -> None:
        count = getattr(self._local, "count", 0) + 1
        self._local.count = count
        if count % 2 == 1:
            self.lost += 1
            raise transient("server closed the connection unexpectedly (injected)")


class Outage(Faults):
    """From :meth:`begin` on, for ``seconds``, every write transaction is rolled back with
    the transient error of a server that is down."""

    def __init__(self, db: Database) -> None:
        self.refused = 0
        self.until = 0.0
        super().__init__(db)

    def begin(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def before_commit(self) -> None:
        if time.monotonic() < self.until:
            self.refused += 1
            raise transient("cannot connect to the database (injected outage)")


@pytest.fixture
def lost_answers(any_db: Database) -> Iterator[Callable[[], LostAnswers]]:
    made: list[LostAnswers] = []

    def start() -> LostAnswers:
        made.append(LostAnswers(any_db))
        return made[-1]

    yield start
    for faults in made:
        faults.stop()


BIG = bytes(range(256)) * 12_289  # a little over 3 MiB: several chunks


APP = f"""
import sys, time
for i in range(8):
    print(f"line {{i}}", flush=True)
    time.sleep({FLUSH_SECONDS / 4})
sys.stderr.write("warning\\n")
open("report.txt", "w").write("report\\n")
open("big.bin", "wb").write(bytes(range(256)) * 12_289)
"""


def test_a_job_whose_every_commit_answer_is_lost_stores_everything_once(
    any_db: Database, tmp_path: Path, lost_answers: Callable[[], LostAnswers]
) -> None:
    app = make_script(tmp_path, APP)
    rt_id = make_setup(any_db, cmdparams=str(app))[2]
    job = create_job(any_db, any_db.settings, runtemplate_id=rt_id)
    claim = claim_job(any_db, job.id, "faulty", 60)
    faults = lost_answers()

    status = JobRunner(any_db, any_db.settings, job_hooks=[]).perform_job(claim)
    faults.stop()

    assert faults.lost >= 8  # outputs created mid-run, chunks, files, final status...
    assert status == JobStatus.SUCCESS
    with any_db.read() as s:
        stored = s.scalars(select(Artifact).where(Artifact.job_id == job.id)).all()
        row = s.get(Job, job.id)
        rt = s.get(RunTemplate, rt_id)
        assert row is not None and rt is not None
    names = Counter((a.kind, a.filename) for a in stored)
    assert names == {
        ("stdout", "stdout.txt"): 1,
        ("stderr", "stderr.txt"): 1,
        ("file", "report.txt"): 1,
        ("file", "big.bin"): 1,
    }
    expected = {
        "stdout.txt": "".join(f"line {i}\n" for i in range(8)).encode(),
        "stderr.txt": b"warning\n",
        "report.txt": b"report\n",
        "big.bin": BIG,
    }
    for art in stored:
        content = b"".join(blobs.iter_content(any_db, art.id))
        assert content == expected[art.filename], art.filename
        assert (art.state, art.size) == ("complete", len(content)), art.filename
        assert art.sha256 == hashlib.sha256(content).hexdigest(), art.filename
    assert (row.status, row.exitcode) == (JobStatus.SUCCESS, 0)
    assert (rt.successfull_jobs_count, rt.failed_jobs_count) == (1, 0)


def test_a_stored_file_whose_answer_was_lost_is_stored_once(
    any_db: Database, tmp_path: Path, lost_answers: Callable[[], LostAnswers]
) -> None:
    rt_id = make_setup(any_db)[2]
    job = create_job(any_db, any_db.settings, runtemplate_id=rt_id)
    faults = lost_answers()
    for name, body in (("small.txt", b"small\n"), ("big.bin", BIG)):
        blobs.store_stream(
            any_db,
            job_id=job.id,
            filename=name,
            stream=io.BytesIO(body),
            content_type="application/octet-stream",
            note="",
        )
    faults.stop()
    with any_db.read() as s:
        rows = s.scalars(select(Artifact).where(Artifact.job_id == job.id)).all()
        stored = {a.filename: a for a in rows}
        chunks = s.scalars(
            select(ArtifactChunk.seq).where(ArtifactChunk.artifact_id == stored["big.bin"].id)
        ).all()
    assert sorted(a.filename for a in rows) == ["big.bin", "small.txt"]
    assert b"".join(blobs.iter_content(any_db, stored["small.txt"].id)) == b"small\n"
    assert b"".join(blobs.iter_content(any_db, stored["big.bin"].id)) == BIG
    assert sorted(chunks) == list(range(len(chunks))) and len(chunks) > 3  # each once
    assert stored["big.bin"].state == "complete" and stored["big.bin"].size == len(BIG)


SLOW_APP = f"""
import time
for i in range(8):
    print(f"line {{i}}", flush=True)
    time.sleep({FLUSH_SECONDS / 4})
"""


def test_a_job_waits_out_a_database_outage_and_keeps_all_its_output(
    sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    rt_id = make_setup(db, cmdparams=str(make_script(tmp_path, SLOW_APP)))[2]
    job = create_job(db, db.settings, runtemplate_id=rt_id)
    claim = claim_job(db, job.id, "patient", 60)
    outage = Outage(db)
    began = time.monotonic()
    try:
        # Longer than the ~5 s a write retries outside a job; the job's first output
        # flush (after 0.5 s) and its final write both meet it.
        status = JobRunner(db, db.settings, job_hooks=[]).perform_job(
            claim, process_started=lambda: outage.begin(OUTAGE_SECONDS)
        )
    finally:
        outage.stop()
    assert time.monotonic() - began >= OUTAGE_SECONDS
    assert outage.refused >= 4
    assert status == JobStatus.SUCCESS
    with db.read() as s:
        stored = s.scalars(select(Artifact).where(Artifact.job_id == job.id)).all()
        row = s.get(Job, job.id)
        assert row is not None
    assert sorted(a.kind for a in stored) == ["stderr", "stdout"]
    stdout = next(a for a in stored if a.kind == "stdout")
    assert (
        b"".join(blobs.iter_content(db, stdout.id))
        == "".join(f"line {i}\n" for i in range(8)).encode()
    )
    assert (stdout.state, row.status, row.reason) == ("complete", JobStatus.SUCCESS, "")


OUTAGE_SECONDS = 7.0

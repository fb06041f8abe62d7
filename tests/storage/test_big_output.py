"""Through the whole path (executor → database → artifact:get), huge output stays
byte-exact with bounded memory."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Job, JobStatus
from tests.factories import make_script, make_setup

WRITER = """
import hashlib, sys
block = bytes(range(256)) * 4096 + b"\\x00\\xff\\xfe"
total = int(sys.argv[1])
line = sys.argv[2] == "line"
h = hashlib.sha256()
out = sys.stdout.buffer
written = 0
while written < total:
    piece = block[: total - written]
    if not line:
        piece = piece.replace(b"\\n", b"_")[:-1] + b"\\n"
    out.write(piece)
    h.update(piece)
    written += len(piece)
out.flush()
sys.stderr.write(h.hexdigest())
"""


def run_and_measure(db: Database, rt_id: int) -> tuple[Job, int]:
    job = create_job(db, db.settings, runtemplate_id=rt_id)
    claim = claim_job(db, job.id, "big", 60)
    me = psutil.Process()
    peak = me.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, me.memory_info().rss)

    start_rss = me.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        JobRunner(db, db.settings, job_hooks=[]).perform_job(claim)
    finally:
        done.set()
        sampler.join()
    with db.read() as s:
        return s.get_one(Job, job.id), peak - start_rss


@pytest.mark.slow
@pytest.mark.parametrize(("size", "shape"), [(1024**3, "lines"), (100 * 1024**2, "line")])
def test_huge_output_is_stored_byte_exact_with_bounded_memory(
    sqlite_db: Database, tmp_path: Path, size: int, shape: str
) -> None:
    script = make_script(tmp_path, WRITER)
    _, _, rt_id = make_setup(sqlite_db, cmdparams=f"{script} {size} {shape}")
    started = time.monotonic()
    job, growth = run_and_measure(sqlite_db, rt_id)
    assert job.status == JobStatus.SUCCESS, job.reason
    with sqlite_db.read() as s:
        arts = {a.filename: a for a in s.scalars(select(Artifact).where(Artifact.job_id == job.id))}
    expected = b"".join(blobs.iter_content(sqlite_db, arts["stderr.txt"].id)).decode()
    digest = hashlib.sha256()
    total = 0
    for chunk in blobs.iter_content(sqlite_db, arts["stdout.txt"].id):
        digest.update(chunk)
        total += len(chunk)
    assert total == size and arts["stdout.txt"].size == size
    assert digest.hexdigest() == expected == arts["stdout.txt"].sha256
    assert growth < 200 * 1024**2, f"memory grew by {growth / 1024**2:.0f} MiB"
    assert time.monotonic() - started < 240

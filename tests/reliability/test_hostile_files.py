"""What a hostile or clumsy job leaves in its directory can neither hang nor crash the
collection of its files: a FIFO, a socket, a link, a name that is not UTF-8, 100,000 small
files. Real jobs, run by a real ``multiflexi-cli job:run`` process and by the executor
daemon.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from multiflexi.jobs.service import create_job
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, JobStatus
from tests.daemons.helpers import BIN, EXECUTOR, all_final, daemon_env, daemons, job, wait_until
from tests.factories import make_script, make_setup
from tests.reliability.helpers import log_problems

CLI = str(BIN / "multiflexi-cli")

#: Leaves one of everything that is not a regular file, a name that is not UTF-8, and
#: ordinary files around them, in a subdirectory too.
LITTER = r"""
import os, socket
tmp = os.environb[b"MULTIFLEXI_TMP"]
os.mkfifo(os.path.join(tmp, b"fifo"))
sock = socket.socket(socket.AF_UNIX)
sock.bind(os.path.join(tmp, b"sock").decode())
os.symlink(b"/etc/passwd", os.path.join(tmp, b"link"))
os.symlink(b"fifo", os.path.join(tmp, b"link-to-fifo"))
open(os.path.join(tmp, b"\xff\xfebad"), "wb").write(b"y")
os.symlink(b"loop.json", os.path.join(tmp, b"loop.json"))  # RESULT_FILE, a link loop
open(os.path.join(tmp, b"a.txt"), "wb").write(b"first")
os.mkdir(os.path.join(tmp, b"sub"))
os.mkfifo(os.path.join(tmp, b"sub", b"deep-fifo"))
open(os.path.join(tmp, b"sub", b"z \n\xe9.csv"), "wb").write(b"a,b\n")
print("littered", flush=True)
"""


def artifacts(db: Database, job_id: int) -> dict[str, Artifact]:
    with db.read() as session:
        rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
    return {a.filename: a for a in rows}


def content(db: Database, art: Artifact) -> bytes:
    return b"".join(blobs.iter_content(db, art.id))


def test_fifos_sockets_links_and_names_that_are_not_utf8_neither_hang_nor_crash_job_run(
    sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    script = make_script(tmp_path, LITTER, "litter.py")
    _, _, rt = make_setup(
        db, cmdparams=str(script), fields={"RESULT_FILE": {"defval": "loop.json"}}
    )
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    started = time.monotonic()
    res = subprocess.run(
        [CLI, "job:run", str(job_id)],
        env=daemon_env(db),
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 60
    assert b"internal error" not in res.stderr
    found = job(db, job_id)
    assert (found.status, found.reason) == (JobStatus.SUCCESS, "")

    arts = artifacts(db, job_id)
    skipped = {
        "fifo": "a FIFO (named pipe)",
        "sock": "a socket",
        "link": "a symbolic link",
        "link-to-fifo": "a symbolic link",
        "sub/deep-fifo": "a FIFO (named pipe)",
        "loop.json": "a symbolic link",
    }
    for name, why in skipped.items():
        assert arts[name].state == "skipped", name
        assert arts[name].note == f"not stored: {why}; only regular files are kept"
        assert arts[name].size == 0 and content(db, arts[name]) == b""
    assert arts["loop.json"].kind == "result"
    bad = arts["\\xff\\xfebad"]  # shown with its stray bytes escaped ...
    assert bad.raw_name == b"\xff\xfebad"  # ... and kept byte for byte
    assert (bad.state, content(db, bad)) == ("complete", b"y")
    odd = arts["sub/z \n\\xe9.csv"]
    assert odd.raw_name == b"sub/z \n\xe9.csv"
    assert content(db, odd) == b"a,b\n" and odd.content_type == "text/csv"
    assert content(db, arts["a.txt"]) == b"first" and arts["a.txt"].raw_name is None
    assert content(db, arts["stdout.txt"]) == b"littered\n"

    shown = subprocess.run(
        [CLI, "artifact:list", "--job", str(job_id), "-f", "json"],
        env=daemon_env(db),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b'"raw_name_hex": "fffe626164"' in shown.stdout


def test_one_entry_that_cannot_be_read_does_not_stop_the_others(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose reading fails is recorded failed with the reason; the files after
    it are stored."""
    from multiflexi.artifacts import collect
    from multiflexi.jobs.runner import JobRunner
    from multiflexi.queue import claim_job, new_worker_id

    db = sqlite_db
    code = (
        "import os; t = os.environ['MULTIFLEXI_TMP']; "
        "[open(os.path.join(t, n), 'w').write(n) for n in ('a.txt', 'b.txt', 'c.txt')]"
    )
    _, _, rt = make_setup(db, cmdparams=f'-c "{code}"')
    real_open = collect._open

    def failing_open(entry: collect._Entry) -> int:
        if entry.name == b"b.txt":
            raise PermissionError(13, "Permission denied")
        return real_open(entry)

    monkeypatch.setattr(collect, "_open", failing_open)
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    claim = claim_job(db, job_id, new_worker_id("test"), 60)
    assert JobRunner(db, db.settings, job_hooks=[]).perform_job(claim) == JobStatus.SUCCESS
    arts = artifacts(db, job_id)
    assert arts["b.txt"].state == "failed"
    assert arts["b.txt"].note == "could not be stored: Permission denied"
    assert content(db, arts["a.txt"]) == b"a.txt" and content(db, arts["c.txt"]) == b"c.txt"


def test_a_row_the_database_refuses_costs_only_its_own_file(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are written many to a transaction; when the database refuses one row, the
    others of its batch are written one by one and the refused one is recorded failed."""
    from multiflexi.artifacts import collect

    real_write = collect._Batch._write

    def refusing(self: collect._Batch, conn: object, rows: list[dict[str, object]]) -> None:
        if any(r["filename"] == "f0007.txt" and r["content"] for r in rows):
            raise ValueError("refused by the database")
        real_write(self, conn, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(collect._Batch, "_write", refusing)
    workdir = tmp_path / "job"
    workdir.mkdir()
    for i in range(20):
        (workdir / f"f{i:04d}.txt").write_text(f"row {i}\n")
    _, _, rt = make_setup(sqlite_db, cmdparams="-c 1")
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    done = collect.collect(sqlite_db, job_id=job_id, workdir=workdir, result_file=None, patterns=[])
    assert (done.stored, done.failed) == (19, 1)
    arts = artifacts(sqlite_db, job_id)
    assert len(arts) == 20
    assert arts["f0007.txt"].state == "failed"
    assert arts["f0007.txt"].note == "could not be stored: ValueError: refused by the database"
    assert content(sqlite_db, arts["f0019.txt"]) == b"row 19\n"


def test_a_collection_that_breaks_still_gives_the_job_a_final_status_with_the_reason(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiflexi.artifacts import collect
    from multiflexi.jobs.runner import JobRunner
    from multiflexi.queue import claim_job, new_worker_id

    db = sqlite_db
    _, _, rt = make_setup(
        db, cmdparams='-c \'import os; open(os.environ["MULTIFLEXI_TMP"] + "/f", "w")\''
    )

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(collect, "collect", broken)
    job_id = create_job(db, db.settings, runtemplate_id=rt).id
    claim = claim_job(db, job_id, new_worker_id("test"), 60)
    assert JobRunner(db, db.settings, job_hooks=[]).perform_job(claim) == JobStatus.FAILED
    found = job(db, job_id)
    assert found.reason == "artifact collection failed: RuntimeError: a bug of ours"
    assert found.exitcode == 0


#: Writes ``count`` small files in ``dirs`` directories of its job directory.
MANY = """
import os, sys
tmp, count, dirs = os.environ["MULTIFLEXI_TMP"], int(sys.argv[1]), int(sys.argv[2])
for d in range(dirs):
    os.mkdir(os.path.join(tmp, f"d{d:02d}"))
for i in range(count):
    with open(os.path.join(tmp, f"d{i % dirs:02d}", f"f{i:06d}.txt"), "w") as f:
        f.write("row %d\\n" % i)
print("wrote", count, flush=True)
"""


@pytest.mark.slow
def test_a_job_that_writes_100000_files_does_not_stall_the_executor(
    any_db: Database, tmp_path: Path
) -> None:
    """Stored up to the budget (10,000 files, in batches), the job's reason says where the
    collection stopped, and the executor runs the next job at once. The job's directory
    is on tmpfs where there is one: writing and removing 100,000 files on a disk that
    discards freed blocks takes longer than the collection itself."""
    db = any_db
    shm = Path("/dev/shm")
    jobs_dir = shm / f"mf-many-{os.getpid()}" if shm.is_dir() else tmp_path / "jobs"
    script = make_script(tmp_path, MANY, "many.py")
    _, _, rt = make_setup(db, cmdparams=f"{script} 100000 20")
    _, _, quick = make_setup(db, cmdparams="-c 'print(1)'")
    try:
        with daemons(db, tmp_path, [[EXECUTOR]], MULTIFLEXI_JOBS_DIR=str(jobs_dir)) as (executor,):
            executor.wait_for_log("action=start")
            many = create_job(db, db.settings, runtemplate_id=rt).id
            wait_until(lambda: all_final(db, [many]), 240, "the job of 100,000 files")
            found = job(db, many)
            assert found.end is not None and found.wall_seconds is not None
            collected = (found.end - found.begin).total_seconds() - found.wall_seconds
            nxt = create_job(db, db.settings, runtemplate_id=quick).id
            wait_until(lambda: all_final(db, [nxt]), 30, "the next job")
        assert log_problems(executor.log()) == []
    finally:
        import shutil

        shutil.rmtree(jobs_dir, ignore_errors=True)
    assert found.status == JobStatus.SUCCESS
    assert found.reason == (
        "artifact collection stopped after 10000 files: budget "
        "MULTIFLEXI_ARTIFACT_MAX_FILES=10000 reached"
    )
    with db.read() as session:
        stored = session.scalars(
            select(Artifact.filename).where(Artifact.job_id == many, Artifact.kind == "file")
        ).all()
    assert len(stored) == 10_000
    assert stored[0] == "d00/f000000.txt"
    # The files are stored (and the directory removed) in seconds, not minutes.
    assert collected < 60, collected
    assert job(db, nxt).status == JobStatus.SUCCESS


def test_three_thousand_files_are_collected_in_seconds(sqlite_db: Database, tmp_path: Path) -> None:
    """Before: one transaction, one unindexed look-up and one libmagic call per file,
    about 20 s for 3,000 files."""
    from multiflexi.artifacts.collect import collect

    workdir = tmp_path / "job"
    workdir.mkdir()
    for i in range(3000):
        (workdir / f"f{i:05d}.txt").write_text(f"row {i}\n")
    _, _, rt = make_setup(sqlite_db, cmdparams="-c 1")
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    started = time.monotonic()
    done = collect(sqlite_db, job_id=job_id, workdir=workdir, result_file=None, patterns=[])
    took = time.monotonic() - started
    assert (done.stored, done.stopped) == (3000, None)
    assert took < 10, took

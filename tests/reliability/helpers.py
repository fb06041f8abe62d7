"""Shared pieces of the reliability tests: probe jobs that log their own life, reading
that log back, processes found by a marker argument, restarting database servers, and
daemon logs checked for errors.

The daemon mechanics (starting executor subprocesses, waiting with deadlines, queueing
jobs) are those of :mod:`tests.daemons.helpers`; this module only adds what the fault
tests need on top of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select, text

from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Base, Job, RunTemplate
from tests.conftest import IN_CI, ServerDatabases, open_database
from tests.daemons.helpers import wait_until

# -- probe jobs --------------------------------------------------------------------------

#: A job that logs its life to a shared file: ``start``, ``print`` (after its stdout line
#: is written) and ``end`` lines with the job id, the attempt and a wall-clock time. Each
#: line is one ``>>`` (O_APPEND) write, so lines of concurrent jobs never mix. It also
#: writes a result file in its job directory. Its first argument is the log; the second
#: is a marker that identifies its processes in the process table; the third, when not
#: 0, is how long it sleeps after printing.
PROBE_SH = r"""#!/bin/sh
log="$1"; linger="${3:-0}"
id="$MULTIFLEXI_JOB_ID"; n="$MULTIFLEXI_JOB_ATTEMPT"
echo "start $id $n $(date +%s.%N)" >> "$log"
echo "result of job $id attempt $n" > "$MULTIFLEXI_TMP/result.txt"
sleep "$(printf '0.%02d' $(( id * 37 % 26 + 5 )))"
echo "output of job $id attempt $n"
echo "print $id $n $(date +%s.%N)" >> "$log"
if [ "$linger" = 0 ]; then linger="$(printf '0.%02d' $(( id * 53 % 26 + 5 )))"; fi
sleep "$linger"
echo "end $id $n $(date +%s.%N)" >> "$log"
"""


def probe_output(job_id: int, attempt: int) -> bytes:
    """What a probe job prints on stdout."""
    return f"output of job {job_id} attempt {attempt}\n".encode()


def probe_result(job_id: int, attempt: int) -> bytes:
    """The result file a probe job writes."""
    return f"result of job {job_id} attempt {attempt}\n".encode()


@dataclass
class Probe:
    """The probe script, its shared log and the marker of its processes."""

    script: Path
    log: Path
    marker: str

    @classmethod
    def create(cls, directory: Path) -> Probe:
        marker = f"mfprobe-{uuid.uuid4().hex[:12]}"
        script = directory / "probe.sh"
        script.write_text(PROBE_SH)
        script.chmod(0o755)
        log = directory / "probe.log"
        log.touch()
        return cls(script, log, marker)

    def cmdparams(self, linger: float = 0) -> str:
        return f"{self.script} {self.log} {self.marker} {linger:g}"


@dataclass
class Run:
    """One process start of a job (one row of table ``job``) as the probe logged it."""

    job_id: int
    attempt: int
    start: float
    printed: float | None = None
    end: float | None = None


def read_runs(log: Path) -> dict[int, list[Run]]:
    """The probe log as process starts per job id (a list, to catch a job started twice)."""
    runs: dict[int, list[Run]] = defaultdict(list)
    open_runs: dict[int, Run] = {}
    for line in log.read_text().splitlines():
        what, job, attempt, stamp = line.split()
        job_id = int(job)
        if what == "start":
            run = Run(job_id, int(attempt), float(stamp))
            runs[job_id].append(run)
            open_runs[job_id] = run
        elif what == "print":
            open_runs[job_id].printed = float(stamp)
        elif what == "end":
            open_runs[job_id].end = float(stamp)
    return dict(runs)


# -- jobs in the database ------------------------------------------------------------------


def stdout_of(db: Database, job_id: int) -> tuple[Artifact | None, bytes]:
    """A job's stored stdout artifact and its content (b"" when there is none)."""
    return artifact_of(db, job_id, kind="stdout")


def artifact_of(
    db: Database, job_id: int, *, kind: str | None = None, filename: str | None = None
) -> tuple[Artifact | None, bytes]:
    """A job's stored artifact (by kind or file name) and its content."""
    with db.read() as session:
        stmt = select(Artifact).where(Artifact.job_id == job_id)
        if kind is not None:
            stmt = stmt.where(Artifact.kind == kind)
        if filename is not None:
            stmt = stmt.where(Artifact.filename == filename)
        art = session.scalar(stmt)
    if art is None:
        return None, b""
    return art, b"".join(blobs.iter_content(db, art.id))


def chains(db: Database, first_ids: Sequence[int]) -> dict[int, list[Job]]:
    """Each first job with its retries, in attempt order (a retry names its predecessor).

    Where recovery queued a job's retry twice and cancelled the duplicate, the chain goes
    on with the retry that was not cancelled; :func:`duplicate_retries` lists the others.
    """
    with db.read() as session:
        jobs = list(session.scalars(select(Job).order_by(Job.id)))
    by_parent: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.retry_of is not None:
            by_parent[job.retry_of].append(job)
    by_id = {j.id: j for j in jobs}
    out: dict[int, list[Job]] = {}
    for first in first_ids:
        chain = [by_id[first]]
        while by_parent.get(chain[-1].id):
            children = by_parent[chain[-1].id]
            live = [c for c in children if c.status != "cancelled"]
            chain.append((live or children)[0])
        out[first] = chain
    return out


def duplicate_retries(db: Database) -> dict[int, list[Job]]:
    """Jobs with more than one retry: job id -> all its retries."""
    with db.read() as session:
        jobs = list(session.scalars(select(Job).where(Job.retry_of.is_not(None))))
    by_parent: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        assert job.retry_of is not None
        by_parent[job.retry_of].append(job)
    return {parent: kids for parent, kids in by_parent.items() if len(kids) > 1}


def more_templates(
    db: Database, setup: tuple[int, int, int], count: int, **options: Any
) -> list[int]:
    """``count`` more run templates of the application and company of a ``make_setup``
    result (whose own template comes first): many templates without many companies,
    each of which ``make_setup`` creates with a random name."""
    app_id, company_id, rt_id = setup
    with db.session() as session:
        made = [
            RunTemplate(app_id=app_id, company_id=company_id, name=f"probe run {i}", **options)
            for i in range(count - 1)
        ]
        session.add_all(made)
        session.flush()
        return [rt_id, *(rt.id for rt in made)]


def snapshot(db: Database) -> str:
    """A digest of every row of every table: equal digests, identical contents."""
    digest = hashlib.sha256()
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f"SELECT * FROM {table.name} ORDER BY 1")).fetchall()
            digest.update(f"{table.name}:{rows!r}".encode())
    return digest.hexdigest()


# -- processes -----------------------------------------------------------------------------


def marked(marker: str) -> list[psutil.Process]:
    """Live processes with ``marker`` in their command line (zombies do not count)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in arg for arg in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_marked(marker: str, *, unless_parent_in: set[int] | None = None) -> int:
    """SIGKILL the process groups of marked processes, except groups whose leader's parent
    is in ``unless_parent_in`` (jobs of live executors) and our own; returns how many.

    Whole groups: a job's subshells carry the marker too, and its children do not."""
    groups: set[int] = set()
    for proc in marked(marker):
        try:
            groups.add(os.getpgid(proc.pid))
        except ProcessLookupError:
            continue
    groups.discard(os.getpgrp())
    killed = 0
    for pgid in groups:
        if unless_parent_in is not None:
            try:
                if psutil.Process(pgid).ppid() in unless_parent_in:
                    continue
            except psutil.Error:
                pass  # the leader is gone: nobody owns the group any more
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed += 1
    return killed


def assert_nothing_left(marker: str, timeout: float = 5.0) -> None:
    """No process with ``marker`` in its command line survives (waits for reaping)."""

    def gone() -> bool:
        return not marked(marker)

    try:
        wait_until(gone, timeout, f"every process marked {marker} to be gone", every=0.1)
    except AssertionError:
        left = [(p.pid, p.info.get("cmdline")) for p in marked(marker)]
        kill_marked(marker)
        raise AssertionError(f"processes left running: {left}") from None


# -- daemon logs -----------------------------------------------------------------------------

#: What must never reach a daemon's log during a fault the system claims to survive.
PROBLEM = re.compile(r" ERROR | CRITICAL |Traceback|database is locked|[Dd]eadlock")


def log_problems(*texts: str) -> list[str]:
    """Error lines of daemon logs (one line per event, see ``daemons/logging.py``)."""
    return [line for text in texts for line in text.splitlines() if PROBLEM.search(line)]


# -- CLI readers ---------------------------------------------------------------------------

#: A process that calls the CLI's entry point in a loop, as a user's scripts would, until
#: its stop file appears; then it writes how many calls ended with each exit code. Its
#: stdout goes to /dev/null, its stderr (every error line) to a file.
READER = """
import contextlib, io, itertools, json, os, sys, time
from multiflexi.cli.main import main
stop, result, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
commands = [json.loads(c) for c in sys.argv[4:]]
codes = {}
for argv in itertools.cycle(commands):
    if os.path.exists(stop):
        break
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    codes[str(code)] = codes.get(str(code), 0) + 1
    time.sleep(pause)
with open(result, "w") as fh:
    json.dump(codes, fh)
"""


class CliReader:
    """A :data:`READER` subprocess; ``finish()`` stops it and returns its exit codes."""

    def __init__(
        self,
        env: dict[str, str],
        directory: Path,
        commands: Sequence[Sequence[str]],
        pause: float = 0.05,
    ) -> None:
        self.stop_file = directory / "reader.stop"
        self.result = directory / "reader.json"
        self.errors = directory / "reader.stderr"
        self._err = self.errors.open("wb")
        argv = [sys.executable, "-c", READER, str(self.stop_file), str(self.result), str(pause)]
        self.proc = subprocess.Popen(
            argv + [json.dumps(list(c)) for c in commands],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    def finish(self, timeout: float = 120) -> dict[str, int]:
        self.stop_file.touch()
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
        codes: dict[str, int] = json.loads(self.result.read_text())
        return codes

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()

    def stderr(self) -> str:
        return self.errors.read_text(errors="replace")


# -- database servers ------------------------------------------------------------------------

RESTART_ENABLED = IN_CI or os.environ.get("MF_RUN_RESTART_TESTS") == "1"
restarts_servers = pytest.mark.skipif(
    not RESTART_ENABLED,
    reason="restarts the shared PostgreSQL/MariaDB servers, which breaks other test runs on "
    "this machine: runs under CI=true or with MF_RUN_RESTART_TESTS=1",
)


def _sh(argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def pg_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])
    return versions[-1]


def server_answers(backend: str) -> bool:
    if backend == "pgsql":
        return _sh(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", "2"], 10).returncode == 0
    res = _sh(["mariadb", "-uroot", "-h127.0.0.1", "-e", "select 1"], 10)
    return res.returncode == 0


def wait_server(backend: str, timeout: float = 120) -> None:
    wait_until(lambda: server_answers(backend), timeout, f"{backend} to answer", every=0.3)


def restart_server(backend: str) -> None:
    """Restart the local server; returns once it answers again."""
    if backend == "pgsql":
        res = _sh(["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", "restart"])
        assert res.returncode == 0, res.stderr
    else:
        res = _sh(["mariadb-admin", "-uroot", "-h127.0.0.1", "shutdown"])
        assert res.returncode == 0, res.stderr
        # mariadb-admin returns when the server has been told; wait until it is gone.
        wait_until(lambda: not mariadbd_running(), 120, "mariadbd to exit", every=0.2)
        res = start_mariadb()
        assert res.returncode == 0, res.stderr
    wait_server(backend)


def mariadbd_running() -> bool:
    return any(p.info["name"] == "mariadbd" for p in psutil.process_iter(["name"]))


def start_mariadb() -> subprocess.CompletedProcess[str]:
    return _sh(
        [
            "start-stop-daemon", "--start", "--oknodo", "--background",
            "--exec", "/usr/sbin/mariadbd", "--", "--user=mysql",
        ]
    )  # fmt: skip


def ensure_server_up(backend: str) -> None:
    """Bring a server back, whatever state a failed test left it in."""
    if server_answers(backend):
        return
    if backend == "pgsql":
        _sh(["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", "start"])
    else:
        # A server still shutting down must be gone before another can start.
        try:
            wait_until(lambda: server_answers(backend) or not mariadbd_running(), 120, "mariadbd")
        finally:
            if not server_answers(backend):
                start_mariadb()
    wait_server(backend)


def can_restart(backend: str) -> str | None:
    """Why this machine cannot restart ``backend`` (None when it can)."""
    tools = {"pgsql": ["pg_ctlcluster", "pg_isready"], "mysql": ["mariadb-admin", "mariadb"]}
    missing = [t for t in tools[backend] if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    if os.geteuid() != 0:
        return "needs root"
    return None


# -- databases by backend ------------------------------------------------------------------


def database(backend: str, tmp_path: Path, servers: ServerDatabases) -> Iterator[Database]:
    """A fresh database of ``backend`` (the conftest machinery: fails under CI without a
    server, skips otherwise)."""
    db = open_database(backend, tmp_path, servers)
    try:
        yield db
    finally:
        db.dispose()

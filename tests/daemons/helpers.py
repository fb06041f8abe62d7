"""Running the daemons as real processes in tests, and waiting for conditions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select

from multiflexi.scheduling.scheduler import JobRequest, bulk_create_jobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import FINAL_STATUSES, Job, RunTemplate
from multiflexi.storage.types import utcnow
from tests.conftest import db_environment

T = TypeVar("T")

BIN = Path(sys.executable).parent
EXECUTOR = str(BIN / "multiflexi-executor")
SCHEDULER = str(BIN / "multiflexi-scheduler")


def wait_until(
    check: Callable[[], T], timeout: float, message: str = "condition", every: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(every)


def daemon_env(db: Database, **extra: str) -> dict[str, str]:
    """The process environment of a daemon on ``db``: nothing of ours is inherited."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_"))
    }
    return {
        **base,
        **db_environment(db),
        "MULTIFLEXI_HOUSEKEEPING_INTERVAL": "0",
        "MULTIFLEXI_LOG_LEVEL": "info",
        **extra,
    }


class Daemon:
    """A daemon subprocess whose stderr goes to a file (no pipe can fill up)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            list(argv), env=env, stdout=subprocess.DEVNULL, stderr=self._log, cwd=log.parent
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and text not in self.log():
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.log()}")
            return text in self.log()

        wait_until(seen, timeout, f"{text!r} in the daemon log")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextmanager
def daemons(
    db: Database, tmp_path: Path, argvs: Sequence[Sequence[str]], **extra: str
) -> Iterator[list[Daemon]]:
    """Start daemons on ``db``; every one is killed at the end, whatever happens."""
    started: list[Daemon] = []
    try:
        for i, argv in enumerate(argvs):
            started.append(Daemon(argv, daemon_env(db, **extra), tmp_path / f"daemon-{i}.log"))
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def queue_jobs(
    db: Database, rt_ids: Sequence[int], count: int, at: datetime | None = None
) -> list[int]:
    """``count`` jobs spread over the templates, queued in one transaction."""
    when = at or utcnow()
    with db.session() as session:
        rts = [session.get_one(RunTemplate, rt_id) for rt_id in rt_ids]
        created = bulk_create_jobs(
            session,
            db.settings,
            [JobRequest(rts[i % len(rts)], when, "adhoc") for i in range(count)],
        )
    return [c.id for c in created]


def job(db: Database, job_id: int) -> Job:
    """The job's row as it is now."""
    with db.read() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def statuses(db: Database, job_ids: Sequence[int] | None = None) -> dict[int, str]:
    with db.read() as session:
        stmt = select(Job.id, Job.status)
        if job_ids is not None:
            stmt = stmt.where(Job.id.in_(list(job_ids)))
        return {int(i): str(s) for i, s in session.execute(stmt)}


def all_final(db: Database, job_ids: Sequence[int]) -> bool:
    final = {"success", "failed", "lost", "cancelled"}
    return all(s in final for s in statuses(db, job_ids).values())


def kill_group(pid: int | None) -> None:
    """Kill a job's process group left behind by a killed executor."""
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def unfinished(db: Database) -> int:
    """Jobs not yet in a final state."""
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status.not_in([str(s) for s in FINAL_STATUSES]))
            )
            or 0
        )


class FakeSystemd:
    """The receiving end of ``NOTIFY_SOCKET``: collects the datagrams as dicts."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock, self.name = sock, name
        self.messages: list[dict[str, str]] = []

    def receive_until(self, key: str, value: str = "1", timeout: float = 30.0) -> dict[str, str]:
        """The first message (from now) with ``key=value``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append(message)
            if message.get(key) == value:
                return message
        raise AssertionError(f"no {key}={value} within {timeout} s; got {self.messages}")

    def drain(self) -> None:
        """Take the messages already waiting in the socket."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)


@contextmanager
def fake_systemd(abstract: bool) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    folder = None
    try:
        if abstract:
            name = f"@multiflexi-test-{os.getpid()}-{time.monotonic_ns()}"
            sock.bind("\0" + name[1:])
        else:
            # Not tmp_path: a socket path must fit in 108 bytes.
            folder = tempfile.mkdtemp(prefix="mf-notify-")
            name = os.path.join(folder, "notify")
            sock.bind(name)
        yield FakeSystemd(sock, name)
    finally:
        sock.close()
        if folder is not None:
            Path(folder, "notify").unlink(missing_ok=True)
            os.rmdir(folder)

"""SQLite writers of several processes on one host queue on a lock file
(``storage.writelock``) instead of sleeping in SQLite's busy handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import text

from multiflexi.storage.database import Database
from multiflexi.storage.writelock import WriterLock

HOLDER = """
import sys, time
from pathlib import Path
from multiflexi.storage.writelock import WriterLock
lock = WriterLock(Path(sys.argv[1]))
with lock:
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _lock_path(db: Database) -> Path:
    path = db.settings.sqlite_path
    return path.with_name(path.name + "-writer")


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _write(db: Database) -> None:
    db.transact(lambda conn: conn.execute(text("CREATE TABLE IF NOT EXISTS probe (x)")))


def test_a_write_waits_for_another_process_holding_the_writer_lock(sqlite_db: Database) -> None:
    _write(sqlite_db)  # the lock file exists from the first write on
    assert _lock_path(sqlite_db).exists()
    assert _lock_path(sqlite_db).stat().st_mode & 0o077 == 0
    holder = _hold(_lock_path(sqlite_db), 0.6)
    try:
        began = time.monotonic()
        _write(sqlite_db)  # holds no SQLite lock: only the lock file makes this wait
        waited = time.monotonic() - began
        assert holder.stdout is not None and holder.stdout.readline() == "released\n"
    finally:
        _end(holder)
    assert waited >= 0.4


def test_the_writer_lock_of_a_killed_process_is_released(sqlite_db: Database) -> None:
    holder = _hold(_lock_path(sqlite_db), 60)
    done = threading.Event()
    writer = threading.Thread(target=lambda: (_write(sqlite_db), done.set()))
    writer.start()
    try:
        assert not done.wait(0.3)  # waiting for the holder
        os.kill(holder.pid, signal.SIGKILL)
        assert done.wait(5)
    finally:
        _end(holder)
        writer.join(10)


def test_threads_of_one_process_take_turns_and_a_thread_may_reenter(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "lock")
    inside: list[int] = []
    overlap: list[int] = []

    def work(n: int) -> None:
        for _ in range(50):
            with lock, lock:  # re-entered by the same thread: no deadlock
                inside.append(n)
                if len(inside) > 1:
                    overlap.append(n)
                time.sleep(0.0005)
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlap == []
    # Released for other processes once the outermost block ended.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
            str(tmp_path / "lock"),
        ],
        check=False,
    )
    assert probe.returncode == 0


def test_a_process_started_while_the_lock_is_held_does_not_inherit_it(tmp_path: Path) -> None:
    """A job's process outliving an executor that died must not keep every writer out."""
    path = tmp_path / "lock"
    lock = WriterLock(path)
    with lock:
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        fds = Path(f"/proc/{child.pid}/fd")
        targets = {os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()}
        assert str(path) not in targets
    finally:
        child.kill()
        child.wait(10)

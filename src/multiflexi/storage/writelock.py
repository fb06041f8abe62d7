"""One SQLite writer at a time across the threads and processes of a host.

SQLite admits one writer; a second one waits in SQLite's busy handler, which sleeps 1, 2,
5, 10... ms between tries, while a write transaction here takes a fraction of a
millisecond. Writers of this package queue on this lock instead and start the moment the
writer before them commits: a lock of the threads of one process, then an exclusive
``flock`` on a file beside the database for the processes (two executors on one host).
The kernel drops the ``flock`` of a process that dies. Writers that do not take it (the
``sqlite3`` shell, an older version) still meet the busy handler, as before.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


class WriterLock:
    """Reentrant within a thread; the file is opened on first use (after a fork too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only directory: threads still queue, processes
                # meet SQLite's busy handler as before
                self._fd = None
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._depth == 0:
                fd = self._file()
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

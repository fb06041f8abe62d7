"""Removing the working directories of finished jobs.

Most jobs leave their directory empty, and removing it is one ``rmdir``. Where the file
system discards freed blocks at once (ext4 mounted with ``discard``, as on this
project's test machines), that call waits for the disk: 0.1 ms alone, 0.3 ms beside
busy executors, a tenth of a trivial job's whole turn -- and it holds the lock of the
parent directory meanwhile, so the next job's ``mkdir`` beside it waits too. An
executor therefore hands the empty directories to a :class:`WorkdirSweeper`: it moves
them into ``.removing/`` (a rename, which frees no block) and removes them there, in a
thread of its own; ``.removing/`` itself goes after each batch. A directory with files
is removed at once, so that the next job finds the space it held. A directory whose
removal a crash cut short is removed by the next batch that finds it (in
``.removing/``) or by housekeeping (a job's own directory).

A directory waiting for its batch may be taken instead by the next job of the same run
template (:meth:`WorkdirSweeper.take`): renamed to that job's name, it saves the job a
``mkdir`` and the sweeper an ``rmdir`` -- the block that each of them allocates or
frees, and the discard it costs (two executor daemons, trivial jobs on PostgreSQL: +7 %
jobs/s, 5 % less of the machine's CPU per job; benchmarks/experiments.md). Only a directory that
is still empty, private and ours is taken, and only by the same template's job: a
process that escaped its job unseen and still works in the directory would otherwise
write into another company's job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path

log = logging.getLogger("multiflexi.jobs")

#: Beside the jobs' directories: where directories wait for their removal.
REMOVING = ".removing"


def remove_workdir(workdir: Path) -> None:
    """Remove a job's directory and what the job left in it; a missing one is fine."""
    try:  # most jobs leave their directory empty: one system call
        os.rmdir(workdir)
    except NotADirectoryError:  # the job put a link in its place: the link goes
        with contextlib.suppress(OSError):
            os.unlink(workdir)
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)


def _reusable(path: Path) -> bool:
    """A directory of ours, private, and empty: as ``mkdir`` would make it."""
    try:
        st = os.lstat(path)  # not a symbolic link the job put in its directory's place
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return False
        if stat.S_IMODE(st.st_mode) != 0o700:
            return False
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _open_aside(root: Path) -> None:
    """Make ``.removing/`` in ``root``. One that is there already holds what an executor
    that died mid-batch left (or another executor's batch): removed as well."""
    aside = root / REMOVING
    try:
        os.mkdir(aside, 0o700)
    except FileExistsError:
        try:
            entries = list(os.scandir(aside))
        except OSError:  # another executor's batch has just removed it
            return
        for entry in entries:
            remove_workdir(Path(entry.path))
    except OSError:  # a full disk, say: the directories are removed where they are
        pass


def _move_aside(workdir: Path) -> Path:
    """``workdir`` moved into ``.removing/`` beside it; itself where it cannot be moved."""
    aside = workdir.parent / REMOVING / workdir.name
    try:
        os.rename(workdir, aside)
    except OSError:
        return workdir
    return aside


class WorkdirSweeper:
    """Removes directories in a thread of its own, a batch per wake-up.

    The thread starts with the first directory and ends after ``IDLE_EXIT`` seconds
    without work, so an idle daemon (or a test's executor) keeps no thread for it.
    :meth:`flush` removes what is pending in the caller's thread: a daemon calls it
    before it exits, so a stopped executor leaves no directory of a finished job.
    """

    #: How long the thread lets directories gather before a batch: one wake-up for many
    #: jobs rather than one per job.
    GATHER = 0.05
    IDLE_EXIT = 5.0

    def __init__(self) -> None:
        #: Directories waiting for the next batch, each with the key that may take it.
        self._pending: list[tuple[Path, object]] = []
        self._lock = threading.Lock()  # guards _pending and _thread
        self._sweeping = threading.Lock()  # held while a batch is removed
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def discard(self, workdir: Path, key: object = None) -> None:
        """Remove ``workdir`` soon, in the sweeper's thread; until then, :meth:`take`
        may give it to the next job of the same ``key`` (None: to none)."""
        with self._lock:
            self._pending.append((workdir, key))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="workdir-sweeper", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def take(self, workdir: Path, key: object) -> bool:
        """Make ``workdir`` (a new job's directory, not there yet or empty) out of the
        newest pending directory of ``key``; False: none could be taken, so make it."""
        if key is None:
            return False
        with self._lock:  # once out of the list, no batch removes it
            for index in range(len(self._pending) - 1, -1, -1):
                if self._pending[index][1] == key:
                    spare = self._pending.pop(index)[0]
                    break
            else:
                return False
        if _reusable(spare):
            try:
                os.rename(spare, workdir)
                return True
            except OSError:  # a directory of that name with files: not ours to replace
                pass
        self.discard(spare)
        return False

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Remove every pending directory now; returns once no batch is in progress."""
        self._sweep()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(self.IDLE_EXIT):
                with self._lock:
                    if not self._pending:
                        self._thread = None  # the next discard starts a new one
                        return
            time.sleep(self.GATHER)
            self._wake.clear()  # before taking the batch: a later discard wakes us again
            try:
                self._sweep()
            except Exception as exc:  # the thread lives on; housekeeping removes what is left
                log.error("action=remove_workdirs error=%s", exc)
                log.debug("action=remove_workdirs", exc_info=True)

    def _sweep(self) -> None:
        with self._sweeping:
            with self._lock:
                batch = [workdir for workdir, _ in self._pending]
                self._pending = []
            roots = {workdir.parent for workdir in batch}
            for root in roots:
                _open_aside(root)
            # All moved aside first: the jobs' directory is locked only for the renames.
            for path in [_move_aside(workdir) for workdir in batch]:
                remove_workdir(path)
            for root in roots:  # the job root shows only jobs' directories when idle
                try:
                    os.rmdir(root / REMOVING)
                except OSError:  # gone, or another executor's batch is in it
                    pass

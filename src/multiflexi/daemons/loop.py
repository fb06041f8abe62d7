"""Daemon mechanics shared by the executor and the scheduler.

* :func:`run_loop` drives a one-iteration ``step(now) -> bool``: it calls it again at once
  while it reports work done, then waits on a :class:`threading.Event` (so a signal, a
  NOTIFY or a finished job wakes it at once) for as long as ``idle(now)`` says; a failing
  step is logged and retried with exponential backoff, never fatal. Every turn pets
  systemd's watchdog (:mod:`.notify`).
* :class:`QueueListener` LISTENs on PostgreSQL for enqueued jobs.
* :func:`parse_args`, :func:`open_database`, :func:`daemon_main` and :func:`run_daemon`:
  the command line, start-up, and the rule that a daemon fails with one clear line and
  exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn, Protocol

from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.daemons.notify import Notifier
    from multiflexi.daemons.signals import DaemonSignals
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.daemon")


def one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return " ".join(text.split())


class Backoff:
    """Exponential delays between failed attempts: 0.5 s, 1 s, 2 s ... up to ``maximum``."""

    def __init__(self, first: float = 0.5, maximum: float = 30.0) -> None:
        self.first, self.maximum, self.current = first, maximum, 0.0

    def next(self) -> float:
        self.current = min(self.maximum, self.current * 2 if self.current else self.first)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


def run_loop(
    step: Callable[[datetime], bool],
    *,
    wake: threading.Event,
    stopping: Callable[[], bool],
    idle: Callable[[datetime], float],
    clock: Callable[[], datetime] = utcnow,
    backoff: Backoff | None = None,
    notifier: Notifier | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Call ``step`` until ``stopping()``; see the module docstring. Each turn pets the
    ``notifier``'s watchdog, and no wait is longer than it allows: a step that hangs
    stops the pets, and systemd restarts the daemon. ``on_error`` records a failed step
    where an operator looks (the daemon's ``worker`` row)."""
    delays = backoff or Backoff()
    pet = notifier.pet if notifier is not None else None
    longest = (notifier.pet_every if notifier is not None else None) or None
    while not stopping():
        if pet is not None:
            pet()
        wake.clear()  # before the step: a wake-up during the step is not lost
        try:
            busy = step(clock())
        except Exception as exc:
            delay = delays.next()
            log.error("action=step_failed error=%s retry_in=%.1f", one_line(exc), delay)
            log.debug("action=step_failed", exc_info=True)
            if on_error is not None:
                on_error(exc)
            _wait(wake, delay, longest, pet)
            continue
        delays.reset()
        if not busy and not stopping():
            _wait(wake, max(0.0, idle(clock())), longest, pet)


def _wait(
    wake: threading.Event,
    seconds: float,
    longest: float | None,
    pet: Callable[[], None] | None,
) -> None:
    """Wait ``seconds`` or until ``wake``, in slices of at most ``longest`` with a pet
    after each."""
    if longest is None or pet is None or seconds <= longest:
        wake.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if wake.wait(min(left, longest)):
            return
        pet()


class QueueListener(threading.Thread):
    """LISTENs on a dedicated PostgreSQL connection and sets ``wake`` on every NOTIFY.

    ``connected`` tells the executor it may poll rarely; while the connection is down the
    executor polls at the configured interval and this thread reconnects with backoff.
    """

    def __init__(self, settings: Settings, wake: threading.Event) -> None:
        super().__init__(name="queue-listener", daemon=True)
        self.settings, self.wake = settings, wake
        self.stop = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        import psycopg

        from multiflexi.queue import CHANNEL

        url = self.settings.database_url().set(drivername="postgresql")
        delays = Backoff(1.0, 30.0)
        while not self.stop.is_set():
            try:
                with psycopg.connect(
                    url.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    delays.reset()
                    # Wake once after (re)connecting: a NOTIFY may have been missed.
                    self.wake.set()
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.wake.set()
            except Exception as exc:
                self.connected.clear()
                delay = delays.next()
                log.warning("action=listen_failed error=%s retry_in=%.1f", one_line(exc), delay)
                self.stop.wait(delay)
        self.connected.clear()


@dataclass(frozen=True)
class DaemonArgs:
    once: bool
    env_file: str | None
    debug: bool
    max_parallel: int | None
    worker_id: str | None


def parse_args(
    prog: str, description: str, argv: Sequence[str] | None, *, runs_jobs: bool = True
) -> DaemonArgs:
    """The shared command line; ``--max-parallel`` only for a daemon that runs jobs."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--once", action="store_true", help="Do the due work once, then exit.")
    parser.add_argument(
        "-e", "--environment", dest="env_file", metavar="PATH", help="Environment file."
    )
    parser.add_argument("--debug", action="store_true", help="Debug logs and tracebacks.")
    if runs_jobs:
        parser.add_argument(
            "--max-parallel",
            type=int,
            metavar="N",
            help="Jobs run at once (default MULTIFLEXI_MAX_PARALLEL).",
        )
    parser.add_argument("--worker-id", metavar="ID", help="Name of this daemon in table worker.")
    ns = parser.parse_args(argv)
    max_parallel = getattr(ns, "max_parallel", None)
    if max_parallel is not None and max_parallel < 1:
        parser.error("--max-parallel must be at least 1")
    if ns.worker_id is not None and not 0 < len(ns.worker_id) <= 128:
        parser.error("--worker-id must be 1 to 128 characters")
    return DaemonArgs(ns.once, ns.env_file, ns.debug, max_parallel, ns.worker_id)


def open_database(args: DaemonArgs, *, prepare: bool = False) -> tuple[Settings, Database]:
    """Settings, logging and a database checked to be reachable and current; ``prepare``
    as for :class:`Database`."""
    from multiflexi.config import load_settings
    from multiflexi.daemons.logging import level_from, setup_logging
    from multiflexi.storage.database import Database

    settings = load_settings(args.env_file)
    setup_logging(level_from(settings.get("MULTIFLEXI_LOG_LEVEL"), args.debug))
    return settings, Database(settings, prepare=prepare)


def daemon_main(prog: str, debug: bool, body: Callable[[], int]) -> int:
    """Run ``body``; configuration and database errors are one line on stderr and exit 1."""
    from multiflexi.errors import MultiFlexiError

    try:
        return body()
    except MultiFlexiError as exc:
        if debug:
            raise
        sys.stderr.write(f"{prog}: error: {one_line(exc)}\n")
        return 1
    except Exception as exc:
        if debug:
            raise
        sys.stderr.write(f"{prog}: error: {type(exc).__name__}: {one_line(exc)}\n")
        return 1


def startup_checks(settings: Settings, db: Database, *, runs_jobs: bool) -> None:
    """What a daemon needs before it may start (the database and its schema were checked
    when it was opened): the master key against the database's key identity, and for a
    daemon that runs jobs a writable job root with free space. Raises the first problem
    (one line, exit 1); logs what it found."""
    from multiflexi.health import check_job_root, check_key

    key = check_key(db, settings)
    if runs_jobs:
        check_job_root(settings)
    log.info(
        "action=checks key=%s key_source=%s key_state=%s job_root=%s",
        key.fingerprint or "none",
        _quoted(key.source),
        key.state,
        _quoted(str(settings.job_root)) if runs_jobs else "-",
    )


def _quoted(value: str) -> str:
    return (
        value
        if value and " " not in value and '"' not in value
        else '"' + value.replace('"', '\\"') + '"'
    )


class Servable(Protocol):
    def serve(self, once: bool = False) -> int: ...


def run_daemon(
    prog: str,
    args: DaemonArgs,
    build: Callable[[Settings, Database, DaemonSignals, Notifier], Servable],
    *,
    prepare: bool = False,
    runs_jobs: bool = True,
) -> NoReturn:
    """A daemon's whole life: settings, database, start-up checks, signal handlers,
    ``serve()``, exit. ``serve()`` tells systemd (``Type=notify``) when it is ready and
    when it stops."""

    def body() -> int:
        from multiflexi.daemons.notify import Notifier
        from multiflexi.daemons.signals import DaemonSignals

        notifier = Notifier.from_environ()
        settings, db = open_database(args, prepare=prepare)
        try:
            startup_checks(settings, db, runs_jobs=runs_jobs)
        except BaseException:
            db.dispose()
            raise
        signals = DaemonSignals()
        signals.install()
        try:
            return build(settings, db, signals, notifier).serve(once=args.once)
        finally:
            db.dispose()
            notifier.close()

    sys.exit(daemon_main(prog, args.debug, body))

"""``multiflexi-scheduler``: turns run-template schedules into queued jobs.

The work is :class:`multiflexi.scheduling.scheduler.Scheduler` ``.step(now)``; this module
drives it: it sleeps until the earliest next tick of all templates, but rescans at least
every :data:`RESCAN_SECONDS` to notice new and changed templates. Several schedulers may
run against one database: each tick still makes one job (see the step's docstring).
SIGTERM/SIGINT stop it after the current step; SIGHUP re-reads the configuration (time
zone).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from multiflexi import queue, workers
from multiflexi.daemons.loop import one_line, parse_args, run_daemon, run_loop
from multiflexi.daemons.signals import DaemonSignals
from multiflexi.errors import KeyMismatch
from multiflexi.scheduling.scheduler import Scheduler, StepResult
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.scheduler")

#: Longest sleep between two scans of the run templates.
RESCAN_SECONDS = 5.0


class SchedulerDaemon:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str,
        signals: DaemonSignals | None = None,
        env_file: str | None = None,
    ) -> None:
        self.db, self.settings, self.worker_id = db, settings, worker_id
        self.signals = signals or DaemonSignals()
        self.env_file = env_file
        self.scheduler = Scheduler(db, settings)
        self.last: StepResult | None = None
        #: Why this scheduler cannot queue jobs, found in a step: the daemon stops.
        self.fault: KeyMismatch | None = None
        self._next_beat = utcnow()

    def step(self, now: datetime) -> bool:
        """Beat when due, then one scheduler step. Never asks to be called again at once:
        a step queues every due tick."""
        if self.signals.take_reload():
            self.reload()
        if now >= self._next_beat:
            self._next_beat = now + timedelta(seconds=workers.BEAT_SECONDS)
            try:
                workers.beat(self.db, self.worker_id)
            except Exception as exc:
                log.error("action=beat error=%s", one_line(exc))
        try:
            self.last = self.scheduler.step(now)
        except KeyMismatch as exc:  # no job can be made with this key: stop, say why
            self.fault = exc
            self.signals.stop()
        return False

    def idle(self, now: datetime) -> float:
        waits = [RESCAN_SECONDS, (self._next_beat - now).total_seconds()]
        if self.last is not None and self.last.next_tick is not None:
            waits.append((self.last.next_tick - now).total_seconds())
        return max(0.0, min(waits))

    def reload(self) -> None:
        from multiflexi.config import load_settings

        try:
            self.settings = load_settings(self.env_file)
        except Exception as exc:
            log.error("action=reload error=%s", one_line(exc))
            return
        self.scheduler = Scheduler(self.db, self.settings)
        log.info("action=reload timezone=%s", self.settings.timezone)

    def serve(self, once: bool = False) -> int:
        workers.register(self.db, self.worker_id, "scheduler")
        log.info(
            "action=start worker=%s timezone=%s database=%s once=%s",
            self.worker_id,
            self.settings.timezone,
            self.settings.describe_database(),
            once,
        )
        try:
            if once:
                self.step(utcnow())
            else:
                run_loop(
                    self.step,
                    wake=self.signals.wake,
                    stopping=lambda: self.signals.stopping,
                    idle=self.idle,
                )
        finally:
            try:
                workers.mark_stopped(self.db, self.worker_id)
            except Exception as exc:
                log.error("action=mark_stopped error=%s", one_line(exc))
            log.info("action=stop worker=%s", self.worker_id)
        if self.fault is not None:
            raise self.fault  # one line on stderr, exit 1
        return 0


def run(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``multiflexi-scheduler``."""
    args = parse_args(
        "multiflexi-scheduler", "Queue jobs of scheduled run templates.", argv, runs_jobs=False
    )
    run_daemon(
        "multiflexi-scheduler",
        args,
        lambda settings, db, signals: SchedulerDaemon(
            db,
            settings,
            worker_id=args.worker_id or queue.new_worker_id("scheduler"),
            signals=signals,
            env_file=args.env_file,
        ),
        runs_jobs=False,
    )


if __name__ == "__main__":
    run()

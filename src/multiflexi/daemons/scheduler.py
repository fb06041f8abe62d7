"""``multiflexi-scheduler``: turns run-template schedules into queued jobs.

The work is :class:`multiflexi.scheduling.scheduler.Scheduler` ``.step(now)``; this module
drives it: it sleeps until the earliest next tick of all templates, but rescans at least
every :data:`RESCAN_SECONDS` to notice new and changed templates. Several schedulers may
run against one database: each tick still makes one job (see the step's docstring).
SIGTERM/SIGINT stop it after the current step; SIGHUP re-reads the environment file it
started with (time zone). Under systemd it notifies readiness and pets the watchdog
(:mod:`.notify`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from multiflexi import queue, workers
from multiflexi.daemons.loop import one_line, parse_args, run_daemon, run_loop
from multiflexi.daemons.notify import Notifier
from multiflexi.daemons.signals import DaemonSignals
from multiflexi.errors import KeyMismatch
from multiflexi.scheduling.scheduler import Scheduler, StepResult
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.monitoring.zabbix import ScheduleErrorReport
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
        notifier: Notifier | None = None,
    ) -> None:
        self.db, self.settings, self.worker_id = db, settings, worker_id
        self.signals = signals or DaemonSignals()
        self.notifier = notifier or Notifier()
        self.scheduler = Scheduler(db, settings)
        self.last: StepResult | None = None
        #: Why this scheduler cannot queue jobs, found in a step: the daemon stops.
        self.fault: KeyMismatch | None = None
        self._next_beat = utcnow()
        self.zabbix = _zabbix_report(settings)
        #: Failed steps, recorded in our ``worker`` row (``status`` shows it).
        self.errors = workers.ErrorRecord(db, worker_id)
        from multiflexi.monitoring.counters import DaemonProbe

        self.probe = DaemonProbe("scheduler", worker_id)

    def step(self, now: datetime) -> bool:
        """Beat when due, then one scheduler step. Never asks to be called again at once:
        a step queues every due tick."""
        if self.signals.take_reload():
            self.reload()
        if now >= self._next_beat:
            self._next_beat = now + timedelta(seconds=workers.BEAT_SECONDS)
            try:
                workers.beat(self.db, self.worker_id)
                self.errors.flush()  # a failure the database could not take back then
                self.probe.beat()
            except Exception as exc:
                log.error("action=beat error=%s", one_line(exc))
                self.errors.failed("beat", exc)
        try:
            self.last = self.scheduler.step(now)
        except KeyMismatch as exc:  # no job can be made with this key: stop, say why
            self.fault = exc
            self.signals.stop()
            return False
        if self.zabbix is not None:
            self.zabbix.tick(self._broken)
        return False

    def _broken(self) -> list[dict[str, Any]]:
        from multiflexi.scheduling.problems import broken_templates

        with self.db.read() as session:
            return broken_templates(session)

    def idle(self, now: datetime) -> float:
        waits = [RESCAN_SECONDS, (self._next_beat - now).total_seconds()]
        if self.last is not None and self.last.next_tick is not None:
            waits.append((self.last.next_tick - now).total_seconds())
        return max(0.0, min(waits))

    def reload(self) -> None:
        """SIGHUP: re-read the environment file the daemon started with; a bad file keeps
        the old settings."""
        from multiflexi.config import reload_settings

        self.notifier.reloading()
        try:
            self.settings = reload_settings(self.settings)
        except Exception as exc:
            log.error("action=reload error=%s", one_line(exc))
            self.errors.failed("reload (the old settings stay)", exc)
            self.notifier.ready(f"reload failed, old settings kept: {one_line(exc)}")
            return
        self.scheduler = Scheduler(self.db, self.settings)
        self.zabbix = _zabbix_report(self.settings)
        log.info("action=reload timezone=%s", self.settings.timezone)
        self.notifier.ready(self._status_line())

    def _status_line(self) -> str:
        """What ``systemctl status`` shows."""
        return f"scheduling in time zone {self.settings.timezone}"

    def _serve_metrics(self) -> None:
        """The cluster's metrics (read from the database at each scrape) and this
        process's: the scheduler is the one place that exports the cluster's numbers."""
        port = self.settings.metrics_port
        if not port:
            return
        from multiflexi.monitoring import metrics

        try:
            metrics.serve(port, self.db, self.settings, daemon=self.probe)
        except Exception as exc:  # scheduling matters more than its metrics
            log.error("action=metrics error=%s", one_line(exc))

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
                self._serve_metrics()
                self.notifier.ready(self._status_line())
                run_loop(
                    self.step,
                    wake=self.signals.wake,
                    stopping=lambda: self.signals.stopping,
                    idle=self.idle,
                    on_error=lambda exc: self.errors.failed("step", exc),
                    notifier=self.notifier,
                )
        finally:
            self.notifier.stopping("stopping")
            try:
                workers.mark_stopped(self.db, self.worker_id)
            except Exception as exc:
                log.error("action=mark_stopped error=%s", one_line(exc))
            log.info("action=stop worker=%s", self.worker_id)
        if self.fault is not None:
            raise self.fault  # one line on stderr, exit 1
        return 0


def _zabbix_report(settings: Settings) -> ScheduleErrorReport | None:
    """Templates that cannot be scheduled, reported to Zabbix when it is configured."""
    from multiflexi.monitoring.zabbix import ScheduleErrorReport, zabbix_target

    target = zabbix_target(settings)
    return ScheduleErrorReport(target) if target is not None else None


def run(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``multiflexi-scheduler``."""
    args = parse_args(
        "multiflexi-scheduler", "Queue jobs of scheduled run templates.", argv, runs_jobs=False
    )
    run_daemon(
        "multiflexi-scheduler",
        args,
        lambda settings, db, signals, notifier: SchedulerDaemon(
            db,
            settings,
            worker_id=args.worker_id or queue.new_worker_id("scheduler"),
            signals=signals,
            notifier=notifier,
        ),
        runs_jobs=False,
    )


if __name__ == "__main__":
    run()

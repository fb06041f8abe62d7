"""Prometheus metrics: the cluster's state from the database, and this process's counters.

Two collectors, so that every number comes from one place and ``sum()`` over scrape
targets means something:

* :class:`ClusterCollector` reads the database at each scrape: jobs by status (overall
  and per company), the queue, each run template's last run, and every daemon's
  heartbeat. Exported by the scheduler and ``multiflexi-cli metrics``, not by
  executors: with many executors the same cluster-wide numbers would be counted once
  per executor.
* :class:`ProcessCollector` reports what this process did (real counters, see
  :mod:`multiflexi.monitoring.counters`) and its own state (jobs running here, the age
  of its own last heartbeat). Exported by every daemon.

:func:`serve` runs prometheus_client's HTTP server with a private registry on
``MULTIFLEXI_METRICS_ADDRESS`` (default 127.0.0.1) and ``MULTIFLEXI_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from multiflexi.monitoring import counters
from multiflexi.monitoring.counters import DaemonProbe

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.metrics")

DURATION_BUCKETS = counters.DURATION_BUCKETS
_RT_LABELS = ["runtemplate_id", "runtemplate", "company"]
_DAEMON_LABELS = ["worker", "kind", "host"]


class ClusterCollector(Collector):
    """Reads job, queue, run template and daemon state from the database on every scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("multiflexi_database_up", "1 if the database answered the scrape")
        try:
            metrics = list(self._from_database())
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("action=metrics_scrape error=%s", exc)
            up.add_metric([], 0)
            metrics = []
        else:
            up.add_metric([], 1)
        yield up
        yield from metrics

    def _from_database(self) -> Iterator[Metric]:
        from sqlalchemy import func, select

        from multiflexi.jobs.holds import waiting_counts
        from multiflexi.scheduling.problems import broken_templates
        from multiflexi.storage.models import Company, Job, JobStatus, ScheduleEntry
        from multiflexi.storage.types import utcnow
        from multiflexi.workers import list_workers

        now = utcnow()
        with self.db.read() as s:
            by_company = s.execute(
                select(Job.company_id, Job.status, func.count()).group_by(
                    Job.company_id, Job.status
                )
            ).all()
            slugs = dict(s.execute(select(Company.id, Company.slug)).all())
            queued = s.scalar(select(func.count()).select_from(ScheduleEntry)) or 0
            due = (
                s.scalar(
                    select(func.count())
                    .select_from(ScheduleEntry)
                    .where(ScheduleEntry.after <= now)
                )
                or 0
            )
            templates = _last_runs(s)
            daemons = list_workers(s, now)
            broken = broken_templates(s)
            held = waiting_counts(s)[0]

        by_status: dict[str, int] = {}
        company_jobs = GaugeMetricFamily(
            "multiflexi_company_jobs", "Jobs in the database by company and status",
            labels=["company", "status"],
        )  # fmt: skip
        for company_id, status, n in by_company:
            by_status[str(status)] = by_status.get(str(status), 0) + int(n)
            company = slugs.get(company_id, str(company_id))
            company_jobs.add_metric([company, str(status)], int(n))
        jobs = GaugeMetricFamily(
            "multiflexi_jobs", "Jobs in the database by status", labels=["status"]
        )
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        yield company_jobs
        running = GaugeMetricFamily("multiflexi_jobs_running", "Jobs running now")
        running.add_metric([], by_status.get(JobStatus.RUNNING.value, 0))
        yield running
        depth = GaugeMetricFamily("multiflexi_queue_depth", "Jobs waiting in the queue")
        depth.add_metric([], int(queued))
        yield depth
        due_now = GaugeMetricFamily("multiflexi_queue_due", "Queued jobs whose time has come")
        due_now.add_metric([], int(due))
        yield due_now
        yield from _problem_metrics(broken, held)
        yield from _template_metrics(templates)
        yield from _daemon_metrics(daemons)


def _problem_metrics(broken: list[dict[str, Any]], held: int) -> Iterator[Metric]:
    """Held jobs and the run templates the scheduler cannot queue (scheduling.problems)."""
    on_hold = GaugeMetricFamily(
        "multiflexi_queue_held",
        "Waiting jobs not claimed: their company or application is disabled or their"
        " run template inactive",
    )
    on_hold.add_metric([], int(held))
    yield on_hold
    unschedulable = GaugeMetricFamily(
        "multiflexi_runtemplates_unschedulable",
        "Active run templates the scheduler cannot queue (see runtemplate:show)",
    )
    unschedulable.add_metric([], len(broken))
    yield unschedulable
    each = GaugeMetricFamily(
        "multiflexi_runtemplate_schedule_error",
        "1 for each run template the scheduler cannot queue",
        labels=_RT_LABELS,
    )
    for row in broken:
        each.add_metric([str(row["runtemplate_id"]), row["runtemplate"], row["company"]], 1)
    yield each


@dataclass(frozen=True)
class _LastRun:
    labels: list[str]
    status: str | None
    duration: float | None
    last_success: float | None


def _last_runs(session: Any) -> list[_LastRun]:
    """Each run template's latest ended job (status, duration) and latest success."""
    from sqlalchemy import func, select

    from multiflexi.storage.models import Company, Job, JobStatus, RunTemplate

    ended = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.LOST)
    latest = (
        select(func.max(Job.id).label("job_id"))
        .where(Job.status.in_(ended), Job.runtemplate_id.is_not(None))
        .group_by(Job.runtemplate_id)
        .subquery()
    )
    last = {
        rt_id: (status, wall, begin, end)
        for rt_id, status, wall, begin, end in session.execute(
            select(Job.runtemplate_id, Job.status, Job.wall_seconds, Job.begin, Job.end).join(
                latest, latest.c.job_id == Job.id
            )
        )
    }
    success = dict(
        session.execute(
            select(Job.runtemplate_id, func.max(Job.end))
            .where(Job.status == JobStatus.SUCCESS, Job.runtemplate_id.is_not(None))
            .group_by(Job.runtemplate_id)
        ).all()
    )
    out = []
    for rt_id, name, slug in session.execute(
        select(RunTemplate.id, RunTemplate.name, Company.slug)
        .join(Company, Company.id == RunTemplate.company_id)
        .order_by(RunTemplate.id)
    ):
        status, wall, begin, end = last.get(rt_id, (None, None, None, None))
        if wall is None and begin is not None and end is not None:
            wall = (end - begin).total_seconds()
        ok = success.get(rt_id)
        out.append(
            _LastRun(
                [str(rt_id), name or "", slug or ""],
                None if status is None else str(status),
                None if wall is None else float(wall),
                None if ok is None else ok.timestamp(),
            )
        )
    return out


def _template_metrics(templates: list[_LastRun]) -> Iterator[Metric]:
    from multiflexi.storage.models import JobStatus

    status = GaugeMetricFamily(
        "multiflexi_runtemplate_last_status",
        "1 for the status of the run template's latest ended job (success, failed, lost)",
        labels=[*_RT_LABELS, "status"],
    )
    success = GaugeMetricFamily(
        "multiflexi_runtemplate_last_success_timestamp_seconds",
        "When the run template's latest successful job ended (Unix time)",
        labels=_RT_LABELS,
    )
    duration = GaugeMetricFamily(
        "multiflexi_runtemplate_last_duration_seconds",
        "Wall-clock duration of the run template's latest ended job",
        labels=_RT_LABELS,
    )
    for rt in templates:
        if rt.status is not None:
            for value in (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.LOST):
                status.add_metric([*rt.labels, value.value], 1 if rt.status == value else 0)
        if rt.last_success is not None:
            success.add_metric(rt.labels, rt.last_success)
        if rt.duration is not None:
            duration.add_metric(rt.labels, rt.duration)
    yield status
    yield success
    yield duration


def _daemon_metrics(daemons: list[dict[str, Any]]) -> Iterator[Metric]:
    age = GaugeMetricFamily(
        "multiflexi_daemon_heartbeat_age_seconds",
        "Seconds since each daemon's last heartbeat (daemons seen in the last day)",
        labels=_DAEMON_LABELS,
    )
    up = GaugeMetricFamily(
        "multiflexi_daemon_up",
        "1 while a daemon beats (running or draining), 0 once stopped or crashed",
        labels=_DAEMON_LABELS,
    )
    for d in daemons:
        labels = [d["id"], d["kind"], d["host"]]
        age.add_metric(labels, float(d["beat_age"]))
        up.add_metric(labels, 1 if d["alive"] else 0)
    yield age
    yield up


class ProcessCollector(Collector):
    """This process's counters, duration histogram and (for a daemon) its own state."""

    def __init__(self, daemon: DaemonProbe | None = None) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        from multiflexi.monitoring.zabbix import send_failures

        for name, series in counters.counters().items():
            help_text, labels = counters.COUNTERS[name]
            family = CounterMetricFamily(name, help_text, labels=list(labels))
            if not labels:
                family.add_metric([], series.get((), 0.0))
            for values, value in sorted(series.items()):
                if labels:
                    family.add_metric(list(values), value)
            yield family
        buckets, count, total = counters.durations()
        yield HistogramMetricFamily(
            "multiflexi_job_duration_seconds",
            "Wall-clock duration of the jobs this process ran to their end",
            buckets=[*((_le(b), float(n)) for b, n in buckets), ("+Inf", float(count))],
            sum_value=total,
        )
        zabbix = CounterMetricFamily(
            "multiflexi_zabbix_send_failures",
            "Zabbix sends that failed in this process (server down, slow or refusing)",
        )
        zabbix.add_metric([], send_failures())
        yield zabbix
        if self.daemon is not None:
            yield from self._daemon()

    def _daemon(self) -> Iterator[Metric]:
        assert self.daemon is not None
        labels = ["worker", "kind"]
        ids = [self.daemon.worker_id, self.daemon.kind]
        age = GaugeMetricFamily(
            "multiflexi_process_heartbeat_age_seconds",
            "Seconds since this daemon last wrote its heartbeat to the database",
            labels=labels,
        )
        age.add_metric(ids, round(time.monotonic() - self.daemon.last_beat, 3))
        yield age
        for name, (help_text, value) in sorted(self.daemon.gauges().items()):
            gauge = GaugeMetricFamily(name, help_text, labels=labels)
            gauge.add_metric(ids, value)
            yield gauge


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it ("1.0", "3600.0")."""
    return repr(float(bound))


def registry_for(
    db: Database | None, *, process: bool = True, daemon: DaemonProbe | None = None
) -> CollectorRegistry:
    """A private registry (no python_* or process_* noise of the client library): the
    cluster collector when ``db`` is given, this process's collector when ``process``."""
    registry = CollectorRegistry(auto_describe=False)
    if db is not None:
        registry.register(ClusterCollector(db))
    if process:
        registry.register(ProcessCollector(daemon))
    return registry


def render(db: Database) -> bytes:
    """The cluster's metrics in the text exposition (``multiflexi-cli metrics``)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(db, process=False))


def samples(db: Database) -> list[dict[str, Any]]:
    """The cluster's metrics as a list of samples (``metrics -f json``)."""
    out = []
    for metric in registry_for(db, process=False).collect():
        for sample in metric.samples:
            out.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
    return out


def start(
    port: int,
    db: Database | None,
    settings: Settings,
    addr: str | None = None,
    *,
    daemon: DaemonProbe | None = None,
) -> tuple[WSGIServer, threading.Thread]:
    """Start the HTTP endpoint in a daemon thread; returns (server, thread) to stop it.
    ``db`` given: the cluster's metrics too (the scheduler's endpoint)."""
    from prometheus_client import start_http_server

    address = addr or settings.metrics_address
    server, thread = start_http_server(port, addr=address, registry=registry_for(db, daemon=daemon))
    log.info(
        "action=metrics_listen addr=%s port=%s cluster=%s",
        address,
        server.server_port,
        db is not None,
    )
    return server, thread


def serve(
    port: int,
    db: Database | None,
    settings: Settings,
    *,
    daemon: DaemonProbe | None = None,
) -> None:
    """Serve ``/metrics`` until the process ends (see :func:`start`)."""
    start(port, db, settings, daemon=daemon)

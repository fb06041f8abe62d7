"""Prometheus metrics, read from the database at each scrape.

:class:`DatabaseCollector` answers from a few aggregate queries, so every executor on
every host exports the same cluster-wide numbers; only the Zabbix send-failure counter
is per process (it counts this process's sends). ``multiflexi-cli metrics`` prints the
text exposition; :func:`serve` runs prometheus_client's HTTP server with this collector
in a private registry (the executor calls it when ``MULTIFLEXI_METRICS_PORT`` is set).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.metrics")

#: Upper bounds (seconds) of the job duration histogram.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class DatabaseCollector(Collector):
    """Reads job, queue and action counts from the database on every scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        from multiflexi.monitoring.zabbix import send_failures

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
        zabbix = CounterMetricFamily(
            "multiflexi_zabbix_send_failures",
            "Zabbix sends that failed in this process (server down, slow or refusing)",
        )
        zabbix.add_metric([], send_failures())
        yield zabbix

    def _from_database(self) -> Iterator[Metric]:
        from sqlalchemy import case, func, select

        from multiflexi.jobs.holds import waiting_counts
        from multiflexi.scheduling.problems import broken_templates
        from multiflexi.storage.models import Job, JobAction, JobStatus, ScheduleEntry
        from multiflexi.storage.types import utcnow

        with self.db.read() as s:
            by_status: dict[str, int] = {
                str(status): int(n)
                for status, n in s.execute(select(Job.status, func.count()).group_by(Job.status))
            }
            finished = Job.status.in_([JobStatus.SUCCESS, JobStatus.FAILED])
            has_wall = Job.wall_seconds.is_not(None)
            buckets = s.execute(
                select(
                    *(
                        func.sum(case((Job.wall_seconds <= bound, 1), else_=0))
                        for bound in DURATION_BUCKETS
                    ),
                    func.count(),
                    func.sum(Job.wall_seconds),
                ).where(finished, has_wall)
            ).one()
            queued = s.scalar(select(func.count()).select_from(ScheduleEntry)) or 0
            due = (
                s.scalar(
                    select(func.count())
                    .select_from(ScheduleEntry)
                    .where(ScheduleEntry.after <= utcnow())
                )
                or 0
            )
            actions = s.execute(
                select(JobAction.action, JobAction.ok, func.count()).group_by(
                    JobAction.action, JobAction.ok
                )
            ).all()
            broken = broken_templates(s)
            held = waiting_counts(s)[0]

        jobs = GaugeMetricFamily(
            "multiflexi_jobs", "Jobs in the database by status", labels=["status"]
        )
        for status in JobStatus:
            jobs.add_metric([status.value], int(by_status.get(status.value, 0)))
        yield jobs
        running = GaugeMetricFamily("multiflexi_jobs_running", "Jobs running now")
        running.add_metric([], int(by_status.get(JobStatus.RUNNING.value, 0)))
        yield running
        count, total = int(buckets[-2] or 0), float(buckets[-1] or 0.0)
        cumulative = [
            (_le(b), float(n or 0)) for b, n in zip(DURATION_BUCKETS, buckets[:-2], strict=True)
        ]
        histogram = HistogramMetricFamily(
            "multiflexi_job_duration_seconds",
            "Wall-clock duration of finished (success or failed) jobs",
            buckets=[*cumulative, ("+Inf", float(count))],
            sum_value=total,
        )
        yield histogram
        depth = GaugeMetricFamily("multiflexi_queue_depth", "Jobs waiting in the queue")
        depth.add_metric([], int(queued))
        yield depth
        due_now = GaugeMetricFamily("multiflexi_queue_due", "Queued jobs whose time has come")
        due_now.add_metric([], int(due))
        yield due_now
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
            labels=["runtemplate_id", "company", "app"],
        )
        for row in broken:
            each.add_metric([str(row["runtemplate_id"]), row["company"], row["app_code"]], 1)
        yield each
        outcomes = CounterMetricFamily(
            "multiflexi_actions", "Post-run action outcomes", labels=["action", "outcome"]
        )
        failed = 0
        for name, ok, n in actions:
            outcomes.add_metric([name, "ok" if ok else "failed"], int(n))
            failed += 0 if ok else int(n)
        yield outcomes
        failures = CounterMetricFamily("multiflexi_actions_failed", "Post-run actions that failed")
        failures.add_metric([], failed)
        yield failures


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it ("1.0", "3600.0")."""
    return repr(float(bound))


def registry_for(db: Database) -> CollectorRegistry:
    """A private registry holding only the database collector (no process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


def render(db: Database) -> bytes:
    """The Prometheus text exposition of the metrics."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(db))


def samples(db: Database) -> list[dict[str, Any]]:
    """The metrics as a list of samples (``metrics -f json``)."""
    out = []
    for metric in registry_for(db).collect():
        for sample in metric.samples:
            out.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
    return out


def start(
    port: int, db: Database, settings: Settings, addr: str = "0.0.0.0"
) -> tuple[WSGIServer, threading.Thread]:
    """Start the HTTP endpoint in a daemon thread; returns (server, thread) to stop it."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=addr, registry=registry_for(db))
    log.info("action=metrics_listen addr=%s port=%s", addr, server.server_port)
    return server, thread


def serve(port: int, db: Database, settings: Settings) -> None:
    """Serve ``/metrics`` on ``port`` (all addresses) until the process ends."""
    start(port, db, settings)

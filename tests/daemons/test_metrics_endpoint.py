"""Scraping the metrics endpoints of a real executor and a real scheduler over HTTP."""

from __future__ import annotations

import contextlib
import signal
import socket
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from tests.daemons.helpers import EXECUTOR, SCHEDULER, daemons, statuses, wait_until
from tests.factories import make_setup

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def listening(port: int) -> bool:
    try:
        scrape(port)
    except httpx.HTTPError:
        return False
    return True


def test_executor_counts_what_it_did_and_the_scheduler_exports_the_cluster(
    sqlite_db: Database, tmp_path: Path
) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams="-c pass", overlap="allow")
    jobs = [create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id for _ in range(3)]
    ex_port, sch_port = free_port(), free_port()
    (tmp_path / "scheduler").mkdir()
    with contextlib.ExitStack() as stack:
        (ex,) = stack.enter_context(
            daemons(
                sqlite_db,
                tmp_path,
                [[EXECUTOR, "--worker-id", "ex1"]],
                MULTIFLEXI_METRICS_PORT=str(ex_port),
            )
        )
        (sch,) = stack.enter_context(
            daemons(
                sqlite_db,
                tmp_path / "scheduler",
                [[SCHEDULER, "--worker-id", "sch1"]],
                MULTIFLEXI_METRICS_PORT=str(sch_port),
            )
        )
        wait_until(lambda: set(statuses(sqlite_db, jobs).values()) == {"success"}, 60, "jobs")
        wait_until(lambda: listening(ex_port) and listening(sch_port), 30, "both endpoints")
        ex.wait_for_log("action=metrics_listen addr=127.0.0.1")
        sch.wait_for_log("action=metrics_listen addr=127.0.0.1")
        own = scrape(ex_port)
        assert own[("multiflexi_jobs_finished_total", (("status", "success"),))] == 3
        assert own[("multiflexi_jobs_claimed_total", ())] == 3
        ids = (("kind", "executor"), ("worker", "ex1"))
        assert own[("multiflexi_executor_jobs_running", ids)] == 0
        assert 0 <= own[("multiflexi_process_heartbeat_age_seconds", ids)] < 15
        assert own[("multiflexi_job_duration_seconds_count", ())] == 3
        # An executor does not export the cluster's numbers (each would count them).
        assert not any(name == "multiflexi_jobs" for name, _ in own)
        cluster = scrape(sch_port)
        assert cluster[("multiflexi_jobs", (("status", "success"),))] == 3
        up = {
            dict(labels)["worker"]: value
            for (name, labels), value in cluster.items()
            if name == "multiflexi_daemon_up"
        }
        assert up == {"ex1": 1, "sch1": 1}
        ages = [
            value
            for (name, labels), value in cluster.items()
            if name == "multiflexi_daemon_heartbeat_age_seconds" and ("worker", "ex1") in labels
        ]
        assert len(ages) == 1 and 0 <= ages[0] < 15
        last = [
            value
            for (name, labels), value in cluster.items()
            if name == "multiflexi_runtemplate_last_status"
            and ("runtemplate_id", str(rt)) in labels
        ]
        assert sorted(last) == [0, 0, 1]
        # A prune (here: every job deleted) makes the gauges drop, never the counters.
        with sqlite_db.session() as session:
            session.execute(delete(Job))
        assert scrape(sch_port)[("multiflexi_jobs", (("status", "success"),))] == 0
        again = scrape(ex_port)
        assert again[("multiflexi_jobs_finished_total", (("status", "success"),))] == 3
        for daemon in (sch, ex):
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(30) == 0

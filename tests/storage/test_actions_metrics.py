"""Prometheus metrics: the cluster's read from the database, the process's counted."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from multiflexi.actions.config import set_action
from multiflexi.jobs.service import create_job
from multiflexi.monitoring.metrics import registry_for, render, samples, start
from multiflexi.storage.database import Database
from tests.factories import make_script, make_setup
from tests.support_servers import PROBE, closed_port, run_job, settings_for


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def template_labels(db: Database) -> dict[int, tuple[tuple[str, str], ...]]:
    """Each run template's labels, sorted by name as :func:`values` keeps them."""
    from sqlalchemy import select

    from multiflexi.storage.models import Company, RunTemplate

    with db.read() as session:
        rows = session.execute(
            select(RunTemplate.id, RunTemplate.name, Company.slug).join(
                Company, Company.id == RunTemplate.company_id
            )
        ).all()
    return {
        rt_id: (("company", slug), ("runtemplate", name), ("runtemplate_id", str(rt_id)))
        for rt_id, name, slug in rows
    }


def process_values() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return values(generate_latest(registry_for(None)).decode())


def test_cluster_gauges_come_from_the_database_and_counters_from_the_process(
    any_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, _, ok_rt = make_setup(any_db, cmdparams=str(script))
    _, _, bad_rt = make_setup(
        any_db, cmdparams=str(script), fields={"EXIT": {"defval": "1"}}, slug="beta"
    )
    settings = settings_for(any_db)
    set_action(
        any_db,
        settings,
        rt_id=bad_rt,
        mode="fail",
        name="WebHook",
        assignments={"uri": f"http://127.0.0.1:{closed_port()}/", "attempts": "1"},
    )
    before = process_values()
    ok = run_job(any_db, settings, ok_rt)
    run_job(any_db, settings, bad_rt)
    create_job(any_db, settings, runtemplate_id=ok_rt)  # waits in the queue

    got = values(render(any_db).decode())
    labels = template_labels(any_db)
    acme, beta = labels[ok_rt][0][1], labels[bad_rt][0][1]
    assert got[("multiflexi_database_up", ())] == 1
    assert got[("multiflexi_jobs", (("status", "success"),))] == 1
    assert got[("multiflexi_jobs", (("status", "failed"),))] == 1
    assert got[("multiflexi_jobs", (("status", "scheduled"),))] == 1
    assert got[("multiflexi_company_jobs", (("company", acme), ("status", "success")))] == 1
    assert got[("multiflexi_company_jobs", (("company", beta), ("status", "failed")))] == 1
    assert got[("multiflexi_jobs_running", ())] == 0
    assert got[("multiflexi_queue_depth", ())] == 1 and got[("multiflexi_queue_due", ())] == 1
    ok_labels = labels[ok_rt]
    assert got[("multiflexi_runtemplate_last_status", (*ok_labels, ("status", "success")))] == 1
    assert got[("multiflexi_runtemplate_last_status", (*ok_labels, ("status", "failed")))] == 0
    assert ok.end is not None
    success = got[("multiflexi_runtemplate_last_success_timestamp_seconds", ok_labels)]
    assert abs(success - ok.end.timestamp()) < 0.01
    assert got[("multiflexi_runtemplate_last_duration_seconds", ok_labels)] > 0
    bad_labels = labels[bad_rt]
    assert got[("multiflexi_runtemplate_last_status", (*bad_labels, ("status", "failed")))] == 1
    assert ("multiflexi_runtemplate_last_success_timestamp_seconds", bad_labels) not in got
    # What this process did is counted by this process, not in the cluster's numbers.
    assert not any(name.endswith("_total") for name, _ in got)
    after = process_values()

    def grew(name: str, *labels: tuple[str, str]) -> float:
        key = (name, tuple(sorted(labels)))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("multiflexi_jobs_finished_total", ("status", "success")) == 1
    assert grew("multiflexi_jobs_finished_total", ("status", "failed")) == 1
    assert grew("multiflexi_jobs_created_total", ("by", "cli")) == 3
    assert grew("multiflexi_job_duration_seconds_count") == 2
    assert grew("multiflexi_job_duration_seconds_bucket", ("le", "60.0")) == 2
    assert grew("multiflexi_actions_total", ("action", "WebHook"), ("outcome", "failed")) == 1
    assert grew("multiflexi_actions_failed_total") == 1
    assert ("multiflexi_zabbix_send_failures_total", ()) in after
    as_json = {(s["name"], tuple(sorted(s["labels"].items()))): s["value"] for s in samples(any_db)}
    assert as_json[("multiflexi_jobs", (("status", "failed"),))] == 1


def test_deleting_jobs_does_not_make_a_counter_drop(sqlite_db: Database, tmp_path: Path) -> None:
    from multiflexi.storage.models import Job

    _, _, rt = make_setup(sqlite_db, cmdparams="-c pass")
    settings = settings_for(sqlite_db)
    run_job(sqlite_db, settings, rt)
    done = process_values()[("multiflexi_jobs_finished_total", (("status", "success"),))]
    with sqlite_db.session() as session:  # as a prune would
        session.execute(delete(Job))
    assert values(render(sqlite_db).decode())[("multiflexi_jobs", (("status", "success"),))] == 0
    assert process_values()[("multiflexi_jobs_finished_total", (("status", "success"),))] == done


def test_the_metrics_endpoint_answers_a_real_http_get(sqlite_db: Database) -> None:
    assert sqlite_db.settings.metrics_address == "127.0.0.1"  # loopback unless told
    server, thread = start(0, sqlite_db, sqlite_db.settings)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = values(response.text)
    assert got[("multiflexi_database_up", ())] == 1
    assert got[("multiflexi_jobs", (("status", "running"),))] == 0
    # A private registry: no python_gc_* or process_* noise from the client library.
    assert not any(name.startswith(("python_", "process_")) for name, _ in got)


def test_a_database_that_is_gone_answers_with_database_up_zero(tmp_path: Path) -> None:
    from multiflexi.config import settings_from_values

    db = Database(
        settings_from_values(
            {
                "DB_CONNECTION": "pgsql",
                "DB_HOST": "127.0.0.1",
                "DB_PORT": str(closed_port()),
                "MULTIFLEXI_DATA_DIR": str(tmp_path),
            }
        ),
        check_schema=False,
    )
    try:
        got = values(render(db).decode())
    finally:
        db.dispose()
    assert got[("multiflexi_database_up", ())] == 0

"""Prometheus metrics read from the database, over a real HTTP GET."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from multiflexi.actions.config import set_action
from multiflexi.jobs.service import create_job
from multiflexi.monitoring.metrics import render, samples, start
from multiflexi.storage.database import Database
from tests.factories import make_script, make_setup
from tests.support_servers import PROBE, closed_port, run_job, settings_for


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_jobs_durations_queue_and_failed_actions(
    any_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, _, ok_rt = make_setup(any_db, cmdparams=str(script))
    _, _, bad_rt = make_setup(any_db, cmdparams=str(script), fields={"EXIT": {"defval": "1"}})
    settings = settings_for(any_db)
    set_action(
        any_db,
        settings,
        rt_id=bad_rt,
        mode="fail",
        name="WebHook",
        assignments={"uri": f"http://127.0.0.1:{closed_port()}/", "attempts": "1"},
    )
    run_job(any_db, settings, ok_rt)
    run_job(any_db, settings, bad_rt)
    create_job(any_db, settings, runtemplate_id=ok_rt)  # waits in the queue

    got = values(render(any_db).decode())
    assert got[("multiflexi_database_up", ())] == 1
    assert got[("multiflexi_jobs", (("status", "success"),))] == 1
    assert got[("multiflexi_jobs", (("status", "failed"),))] == 1
    assert got[("multiflexi_jobs", (("status", "scheduled"),))] == 1
    assert got[("multiflexi_jobs_running", ())] == 0
    assert got[("multiflexi_queue_depth", ())] == 1 and got[("multiflexi_queue_due", ())] == 1
    assert got[("multiflexi_job_duration_seconds_count", ())] == 2
    assert got[("multiflexi_job_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert got[("multiflexi_job_duration_seconds_bucket", (("le", "60.0"),))] == 2
    assert got[("multiflexi_job_duration_seconds_sum", ())] > 0
    assert got[("multiflexi_actions_total", (("action", "WebHook"), ("outcome", "failed")))] == 1
    assert got[("multiflexi_actions_failed_total", ())] == 1
    assert ("multiflexi_zabbix_send_failures_total", ()) in got
    as_json = {(s["name"], tuple(sorted(s["labels"].items()))): s["value"] for s in samples(any_db)}
    assert as_json[("multiflexi_actions_failed_total", ())] == 1


def test_the_metrics_endpoint_answers_a_real_http_get(sqlite_db: Database) -> None:
    server, thread = start(0, sqlite_db, sqlite_db.settings, addr="127.0.0.1")
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
    assert ("multiflexi_zabbix_send_failures_total", ()) in got

"""The Zabbix monitoring hook over a real job lifecycle, against a local trapper."""

from __future__ import annotations

import json
import time
from pathlib import Path

from multiflexi.actions.payload import load_job_info
from multiflexi.jobs import hooks
from multiflexi.monitoring import zabbix
from multiflexi.monitoring.zabbix import LLD_KEY, send_failures
from multiflexi.storage.database import Database
from multiflexi.storage.models import Company, JobStatus, RunTemplate
from tests.factories import make_script, make_setup
from tests.support_servers import PROBE, TrapperServer, closed_port, run_job, settings_for


def test_monitoring_is_on_only_with_a_server(sqlite_db: Database) -> None:
    kinds = {type(h).__name__ for h in hooks.load_hooks(settings_for(sqlite_db))}
    assert "ZabbixHook" not in kinds and "ActionHook" in kinds
    on = settings_for(sqlite_db, ZABBIX_SERVER="127.0.0.1")
    assert "ZabbixHook" in {type(h).__name__ for h in hooks.load_hooks(on)}


def test_a_job_reports_discovery_start_and_end_with_every_field(
    any_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, _, rt_id = make_setup(any_db, cmdparams=str(script), interv="h")
    with TrapperServer() as trapper:
        settings = settings_for(any_db, **trapper.settings_values("mf-default-host"))
        job = run_job(any_db, settings, rt_id)
        lld, start, done = trapper.wait_for(3)
    info, _, _ = load_job_info(any_db, job.id, None)
    assert not trapper.errors
    for packet in (lld, start, done):
        assert packet.flags == 1 and packet.reserved == 0 and packet.datalen == len(packet.raw)
        assert packet.data["request"] == "sender data"
        [item] = packet.items()
        assert item["host"] == "mf-default-host"
        assert isinstance(item["clock"], int)

    [lld_item] = lld.items()
    assert lld_item["key"] == LLD_KEY
    [macros] = json.loads(lld_item["value"])
    assert macros == {
        "{#PHASE}": "created",
        "{#JOB_ID}": str(job.id),
        "{#APP_ID}": str(info.app_id),
        "{#APP_NAME}": info.app_name,
        "{#APP_CODE}": info.app_code,
        "{#COMPANY_ID}": str(info.company_id),
        "{#COMPANY_NAME}": info.company_name,
        "{#COMPANY_CODE}": info.company_slug,
        "{#RUNTEMPLATE_ID}": str(rt_id),
        "{#RUNTEMPLATE_NAME}": "probe run",
        "{#EXECUTOR}": "Native",
        "{#INTERVAL_SECONDS}": "3600",
        "{#NODATA_PERIOD}": "7200s",
    }

    key = f"job-[{info.company_slug}-{info.app_code}-{rt_id}]"
    [start_item], [done_item] = start.items(), done.items()
    assert start_item["key"] == done_item["key"] == key
    begun = json.loads(start_item["value"])
    assert begun["phase"] == "jobStart" and begun["status"] == "running"
    assert begun["job_id"] == job.id and begun["begin"] and "exitcode" not in begun
    ended = json.loads(done_item["value"])
    assert ended["phase"] == "jobDone" and ended["status"] == "success"
    assert ended["exitcode"] == 0 and ended["exitcode_description"] == "success"
    assert ended["failed"] == 0 and ended["interval_seconds"] == 3600
    assert ended["duration"] > 0 and ended["max_rss_kb"] > 0 and ended["cpu_user"] is not None
    assert ended["artifacts"] == 3  # stdout, stderr, metrics.json
    assert ended["begin"] and ended["end"] and ended["host"]
    assert ended["company_code"] == info.company_slug and ended["runtemplate_id"] == rt_id


def test_the_company_zabbix_host_wins_and_a_failure_is_reported_as_failed(
    sqlite_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, _, rt_id = make_setup(sqlite_db, cmdparams=str(script), fields={"EXIT": {"defval": "2"}})
    with sqlite_db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        company = s.get(Company, rt.company_id if rt else 0)
        assert company is not None
        company.zabbix_host = "tenant-host"
    with TrapperServer() as trapper:
        job = run_job(sqlite_db, settings_for(sqlite_db, **trapper.settings_values()), rt_id)
        packets = trapper.wait_for(3)
    assert {p.items()[0]["host"] for p in packets} == {"tenant-host"}
    ended = json.loads(packets[2].items()[0]["value"])
    assert ended["status"] == "failed" and ended["failed"] == 1 and ended["exitcode"] == 2
    assert ended["exitcode_description"] == "failure" and ended["reason"] == job.reason


def test_a_zabbix_that_is_down_or_hangs_never_fails_or_stalls_jobs(
    sqlite_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, _, rt_id = make_setup(sqlite_db, cmdparams=str(script))
    zabbix._down = False
    before = send_failures()
    down = settings_for(sqlite_db, ZABBIX_SERVER="127.0.0.1", ZABBIX_PORT=str(closed_port()))
    job = run_job(sqlite_db, down, rt_id)
    assert job.status == JobStatus.SUCCESS
    assert send_failures() == before + 3  # created, started, finished
    with TrapperServer(mode="hang") as trapper:
        slow = settings_for(sqlite_db, **trapper.settings_values(), ZABBIX_TIMEOUT="0.3")
        started = time.monotonic()
        job = run_job(sqlite_db, slow, rt_id)
        elapsed = time.monotonic() - started
    assert job.status == JobStatus.SUCCESS
    assert elapsed < 0.3 * 3 + 3.0  # three bounded sends plus the job itself
    assert send_failures() == before + 6

"""The executor daemon as a real process: start-up errors, signals, wake-up latency."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import Worker
from multiflexi.storage.types import utcnow
from tests.daemons.helpers import (
    EXECUTOR,
    SCHEDULER,
    daemon_env,
    daemons,
    job,
    statuses,
    wait_until,
)
from tests.factories import make_setup

SLEEP = "-c 'import sys, time; print(\"started\", flush=True); time.sleep(float(sys.argv[1]))' {}"


def running_with_pid(db: Database, job_id: int) -> bool:
    found = job(db, job_id)
    return found.status == "running" and found.pid is not None


@pytest.mark.parametrize("program", [EXECUTOR, SCHEDULER])
def test_a_missing_environment_file_is_one_line_and_exit_1(
    sqlite_db: Database, tmp_path: Path, program: str
) -> None:
    res = subprocess.run(
        [program, "-e", str(tmp_path / "nope.env")],
        env=daemon_env(sqlite_db),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert "environment file not found" in res.stderr and "Traceback" not in res.stderr


def test_an_unreachable_database_is_one_line_and_exit_1(
    sqlite_db: Database, tmp_path: Path
) -> None:
    env = daemon_env(sqlite_db, DB_CONNECTION="pgsql", DB_HOST="127.0.0.1", DB_PORT="1")
    res = subprocess.run([EXECUTOR], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.startswith("multiflexi-executor: error: cannot connect to pgsql 127.0.0.1:1")
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr


def test_once_runs_the_due_jobs_and_exits_0(sqlite_db: Database, tmp_path: Path) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams="-c 'print(42)'", overlap="allow")
    jobs = [create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id for _ in range(3)]
    later = create_job(
        sqlite_db, sqlite_db.settings, runtemplate_id=rt, at=utcnow() + timedelta(hours=1)
    ).id
    res = subprocess.run(
        [EXECUTOR, "--once"], env=daemon_env(sqlite_db), capture_output=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert set(statuses(sqlite_db, jobs).values()) == {"success"}
    assert statuses(sqlite_db, [later]) == {later: "scheduled"}
    log = res.stderr.decode()
    assert "INFO action=claim job_id=" in log
    # The structured form: ISO UTC time, level, key=value pairs.
    first = log.splitlines()[0].split()
    assert first[0].endswith("Z") and "T" in first[0] and first[1] == "INFO"


def test_sigterm_lets_a_running_job_finish_and_claims_nothing_more(
    sqlite_db: Database, tmp_path: Path
) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams=SLEEP.format(1.5))
    _, _, other = make_setup(sqlite_db, cmdparams="-c pass")
    first = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    with daemons(sqlite_db, tmp_path, [[EXECUTOR]], MULTIFLEXI_SHUTDOWN_GRACE="30") as (ex,):
        wait_until(lambda: running_with_pid(sqlite_db, first), 30, "the job to start")
        ex.signal(signal.SIGTERM)
        ex.wait_for_log("action=drain")
        waiting = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=other).id
        assert ex.wait(60) == 0, ex.log()
    assert job(sqlite_db, first).status == "success"
    assert job(sqlite_db, waiting).status == "scheduled"


def test_a_job_longer_than_the_grace_is_terminated_and_recorded(
    sqlite_db: Database, tmp_path: Path
) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams=SLEEP.format(120))
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    extra = {"MULTIFLEXI_SHUTDOWN_GRACE": "1", "MULTIFLEXI_KILL_GRACE": "1"}
    with daemons(sqlite_db, tmp_path, [[EXECUTOR]], **extra) as (ex,):
        wait_until(lambda: running_with_pid(sqlite_db, job_id), 30, "the job to start")
        ex.signal(signal.SIGTERM)
        assert ex.wait(60) == 0, ex.log()
    done = job(sqlite_db, job_id)
    assert done.status == "failed"
    assert done.reason == "terminated: the executor was stopped"
    assert done.end is not None


def test_a_second_sigterm_cancels_the_running_jobs_at_once(
    sqlite_db: Database, tmp_path: Path
) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams=SLEEP.format(120))
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    extra = {"MULTIFLEXI_SHUTDOWN_GRACE": "600", "MULTIFLEXI_KILL_GRACE": "1"}
    with daemons(sqlite_db, tmp_path, [[EXECUTOR]], **extra) as (ex,):
        wait_until(lambda: running_with_pid(sqlite_db, job_id), 30, "the job to start")
        ex.signal(signal.SIGTERM)
        ex.wait_for_log("action=drain")
        ex.signal(signal.SIGTERM)
        assert ex.wait(30) == 0, ex.log()
    assert job(sqlite_db, job_id).reason == "terminated: the executor was stopped"


def test_sighup_rereads_the_configuration(sqlite_db: Database, tmp_path: Path) -> None:
    env_file = tmp_path / "multiflexi.env"
    env_file.write_text("MULTIFLEXI_MAX_PARALLEL=1\n")
    with daemons(sqlite_db, tmp_path, [[EXECUTOR, "-e", str(env_file)]]) as (ex,):
        ex.wait_for_log("max_parallel=1")
        env_file.write_text("MULTIFLEXI_MAX_PARALLEL=3\nMULTIFLEXI_POLL_INTERVAL=0.2\n")
        ex.signal(signal.SIGHUP)
        ex.wait_for_log("action=reload max_parallel=3 poll_interval=0.2")
        ex.signal(signal.SIGTERM)
        assert ex.wait(30) == 0


def test_a_daemon_is_alive_in_table_worker_until_it_stops(
    sqlite_db: Database, tmp_path: Path
) -> None:
    from multiflexi.workers import list_workers

    def alive() -> list[dict[str, object]]:
        with sqlite_db.read() as session:
            return [w for w in list_workers(session) if w["alive"]]

    argv = [EXECUTOR, "--worker-id", "exec-under-test"]
    with daemons(sqlite_db, tmp_path, [argv, [SCHEDULER]]) as (ex, sch):
        found = wait_until(lambda: len(alive()) == 2 and alive(), 30, "two live daemons")
        assert {w["kind"] for w in found} == {"executor", "scheduler"}
        assert {"exec-under-test"} <= {w["id"] for w in found}
        for proc in (ex, sch):
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    assert alive() == []
    with sqlite_db.read() as session:
        assert session.get_one(Worker, "exec-under-test").stopped is not None


def _latencies(db: Database, tmp_path: Path, rt: int, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        job_id = create_job(db, db.settings, runtemplate_id=rt).id
        wait_until(lambda j=job_id: job(db, j).status == "success", 30, "the job to run")
        done = job(db, job_id)
        assert done.begin is not None and done.schedule is not None
        out.append((done.begin - done.schedule).total_seconds())
    return out


def test_a_due_job_starts_promptly_on_an_idle_executor(any_db: Database, tmp_path: Path) -> None:
    _, _, rt = make_setup(any_db, executable="/bin/true", overlap="allow")
    with daemons(any_db, tmp_path, [[EXECUTOR]]) as (ex,):
        ex.wait_for_log("action=start")
        _latencies(any_db, tmp_path, rt, 2)  # warm-up: imports, first connections
        delays = _latencies(any_db, tmp_path, rt, 9)
        # A job queued for the future starts when due, not one poll later.
        soon = create_job(
            any_db, any_db.settings, runtemplate_id=rt, at=utcnow() + timedelta(seconds=1.5)
        ).id
        wait_until(lambda: job(any_db, soon).status == "success", 30, "the future job")
        ex.signal(signal.SIGTERM)
        assert ex.wait(30) == 0
    future = job(any_db, soon)
    assert future.begin is not None and future.schedule is not None
    late = (future.begin - future.schedule).total_seconds()
    median = statistics.median(delays)
    sys.stderr.write(
        f"\n{any_db.dialect}: due -> claim median {median * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms; future job {late * 1000:.0f} ms late\n"
    )
    assert median < 0.5, delays
    assert 0 <= late < 0.5


def test_metrics_are_served_on_the_configured_port(sqlite_db: Database, tmp_path: Path) -> None:
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with daemons(sqlite_db, tmp_path, [[EXECUTOR]], MULTIFLEXI_METRICS_PORT=str(port)) as (ex,):
        ex.wait_for_log("action=start")

        def scrape() -> str | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return None

        body = wait_until(scrape, 30, "the metrics endpoint")
        ex.signal(signal.SIGTERM)
        assert ex.wait(30) == 0
    assert "multiflexi" in body

"""What an operator reads all day: job:list, job:show, run-template:list, queue:process,
artifact:get, prune, job:logs --follow and --watch -- as text, through the real CLI."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiflexi.cli.output import age, human_duration, reason_text
from multiflexi.storage.database import Database
from tests.conftest import Cli, db_environment
from tests.factories import make_setup

LONG = "a very long name of a run template that goes on and on"


def failing_setup(db: Database) -> tuple[int, int, int]:
    return make_setup(
        db,
        cmdparams="-c 'import sys; print(\"x\" * 3); sys.exit(3)'",
        exit_codes={3: ("Upstream not reachable", "error")},
    )


def run_job(cli: Cli, rt_id: int) -> int:
    job_id = int(cli.json(f"job:create --template {rt_id}")["job_id"])
    cli(f"job:run {job_id} --quiet")
    return job_id


def cli_process(db: Database, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """The console script in a process of its own (for what runs until interrupted)."""
    env = {**os.environ, **db_environment(db), "PYTHONUNBUFFERED": "1"}
    code = "import sys; from multiflexi.cli.main import run; sys.argv[0] = 'multiflexi-cli'; run()"
    return subprocess.Popen([sys.executable, "-c", code, *argv], env=env, **kwargs)  # type: ignore[call-overload, no-any-return]


def in_terminal(db: Database, *argv: str, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a terminal as stdin, stdout and stderr; its exit code and screen."""
    master, slave = pty.openpty()
    proc = cli_process(db, *argv, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other side closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


def test_values_read_as_people_read_them() -> None:
    from datetime import UTC, datetime, timedelta

    assert [human_duration(s) for s in (0.0942, 12.34, 75, 7260, 90000)] == [
        "0.09 s", "12.3 s", "1 min 15 s", "2 h 01 min", "1 d 01 h",
    ]  # fmt: skip
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert age(now - timedelta(minutes=3, seconds=5), now) == "3 min ago"
    assert age(now + timedelta(hours=2), now) == "in 2 h"
    assert age(now, now) == "just now"
    assert reason_text("exit code 3: exit code 3: boom", 3) == "exit code 3: boom"
    assert reason_text("exit code 3", 3) == "" and reason_text("timeout", None) == "timeout"


def test_job_list_fits_120_columns_with_units_age_and_reasons(
    cli: Cli, sqlite_db: Database
) -> None:
    _, _, rt_id = failing_setup(sqlite_db)
    cli.ok(f"run-template:update {rt_id} --name '{LONG}'")
    failed = run_job(cli, rt_id)
    waiting = cli.json(f"job:create --template {rt_id}")["job_id"]
    out = cli.ok("job:list").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["id", "status", "template", "company", "when", "duration",
                                "exit", "reason"]  # fmt: skip
    assert all(len(line) <= 120 for line in lines), [len(line) for line in lines]
    row = next(line for line in lines if line.startswith(f"{failed} "))
    assert "failed" in row and " s " in row and ("ago)" in row or "(just now)" in row)
    assert f"{LONG[:21]}…" in row  # the long name cut, to keep within 120 columns
    assert "  3     Upstream not reach" in row and "exit code 3:" not in row
    assert next(line for line in lines if line.startswith(f"{waiting} ")).split()[1] == "scheduled"
    wide = cli.ok("job:list --wide").stdout
    assert LONG in wide and "runtemplate_id" in wide.splitlines()[0]
    assert "exit code 3: Upstream not reachable" in wide and "age" in wide.splitlines()[0]
    assert cli.json("job:list")[1]["reason"] == "exit code 3: Upstream not reachable"


def test_job_show_rounds_and_says_a_failure_once(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt_id = failing_setup(sqlite_db)
    job_id = int(cli.json(f"job:create --template {rt_id}")["job_id"])
    ran = cli(f"job:run {job_id} --quiet")
    assert ran.exit_code == 3
    assert ran.stderr == f"Job {job_id} failed, exit code 3: Upstream not reachable\n"
    shown = cli.ok(f"job:show {job_id}").stdout
    assert shown.count("Upstream not reachable") == 1
    assert "exitcode          3 (Upstream not reachable)" in shown
    for line in shown.splitlines():
        if line.startswith(("cpu_user", "cpu_system", "duration")):
            number = line.split()[1]
            assert len(number.partition(".")[2]) <= 3, line
    env = cli.ok(f"job:show {job_id} --env").stdout
    assert env.splitlines()[0].split() == ["name", "value", "source", "shadowed", "secret"]
    assert "status" not in env and "Artifacts" not in env and '{"name"' not in env
    assert cli.json(f"job:show {job_id}")["cpu_user"] is not None


def test_run_template_list_shows_next_and_last_run(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass", interv="h")
    _, _, manual = make_setup(sqlite_db, cmdparams="-c pass", interv="n")
    job_id = run_job(cli, rt_id)
    out = cli.ok("runtemplate:list").stdout
    assert out.splitlines()[0].split() == ["id", "name", "company", "schedule", "next", "last",
                                           "last", "status"]  # fmt: skip
    row = next(line for line in out.splitlines() if line.startswith(f"{rt_id} "))
    assert "hourly" in row and "(in " in row and ("ago)" in row or "(just now)" in row)
    assert f"success (job {job_id})" in row
    never = next(line for line in out.splitlines() if line.startswith(f"{manual} "))
    assert "not scheduled" in never and "never" in never
    data = {r["id"]: r for r in cli.json("runtemplate:list")}
    assert data[rt_id]["last_job_id"] == job_id and data[rt_id]["last_status"] == "success"
    assert data[rt_id]["next_run"] is not None and data[manual]["next_run"] is None


def test_artifact_get_writes_bytes_into_a_pipe_and_not_onto_a_terminal(
    cli: Cli, sqlite_db: Database, tmp_path: Path
) -> None:
    code = "open('blob.bin', 'wb').write(bytes(range(256)))"
    _, _, rt_id = make_setup(sqlite_db, cmdparams=f'-c "{code}"')
    job_id = run_job(cli, rt_id)
    (blob,) = [a for a in cli.json(f"artifact:list --job {job_id}") if a["filename"] == "blob.bin"]
    with cli_process(sqlite_db, "artifact:get", str(blob["id"]), stdout=subprocess.PIPE) as piped:
        assert piped.communicate(timeout=60)[0] == bytes(range(256)) and piped.returncode == 0
    code, screen = in_terminal(sqlite_db, "artifact:get", str(blob["id"]))
    assert code == 0 and "use --output blob.bin" in screen and "\x00" not in screen
    missing = cli(f"artifact:get {blob['id']} --output {tmp_path}/nodir/blob.bin")
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"error: cannot write {tmp_path}/nodir/blob.bin: directory {tmp_path}/nodir does not"
        " exist\n"
    )
    assert not (tmp_path / "nodir").exists()


def test_prune_with_nothing_to_do_exits_0_without_asking(cli: Cli, sqlite_db: Database) -> None:
    make_setup(sqlite_db)
    res = cli("prune", input="")
    assert (
        res.exit_code == 0
        and res.stdout == "Nothing to prune: no job matches the retention rules.\n"
    )
    assert cli.json("prune")["jobs_deleted"] == 0


def test_queue_process_reports_each_job_and_the_ids(cli: Cli, sqlite_db: Database) -> None:
    _, _, ok_rt = make_setup(sqlite_db, cmdparams="-c pass", overlap="allow")
    _, _, bad_rt = failing_setup(sqlite_db)
    ok = cli.json(f"job:create --template {ok_rt}")["job_id"]
    bad = cli.json(f"job:create --template {bad_rt}")["job_id"]
    refused = cli("queue:process --limit 0")
    assert refused.exit_code == 1 and "--limit must be at least 1" in refused.stderr
    res = cli.ok("queue:process --progress")
    assert f"job {ok}  probe run  success  " in res.stderr
    assert f"job {bad}  probe run  failed  " in res.stderr
    assert res.stderr.rstrip().endswith("exit code 3: Upstream not reachable")
    assert res.stdout == (
        f"Processed 2 job(s) ({ok}, {bad}): 1 failed, 1 success.\n"
        f"Not successful: {bad} (see multiflexi-cli job:show ID).\n"
    )
    assert cli.ok("queue:process").stdout == "Processed 0 jobs: nothing was due.\n"


def test_queue_process_on_a_terminal_shows_progress(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass", overlap="allow")
    ids = [cli.json(f"job:create --template {rt_id}")["job_id"] for _ in range(2)]
    code, screen = in_terminal(sqlite_db, "queue:process")
    assert code == 0
    assert all(f"job {i}  probe run  success" in screen for i in ids), screen
    for _ in range(25):
        cli.json(f"job:create --template {rt_id}")
    code, screen = in_terminal(sqlite_db, "queue:process", "--concurrency", "2")
    assert code == 0 and "25/25" in screen and "Processed 25 job(s)" in screen, screen


def test_job_logs_follow_says_why_a_job_waits(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass")
    job_id = cli.json(f"job:create --template {rt_id} --at +10m")["job_id"]
    proc = cli_process(sqlite_db, "job:logs", str(job_id), "--follow", stderr=subprocess.PIPE)
    assert proc.stderr is not None
    with proc:
        line = proc.stderr.readline().decode()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert line.startswith(f"job {job_id} is waiting (scheduled): not before ")
    assert "(in 10 min)" in line or "(in 9 min)" in line
    assert (
        f"no executor is alive (start multiflexi-executor, or run it now: multiflexi-cli job:run {job_id})"
        in line
    )


@pytest.mark.parametrize("command", ["queue:status", "job:list", "status"])
def test_watch_draws_anew_until_interrupted(cli: Cli, sqlite_db: Database, command: str) -> None:
    proc = cli_process(sqlite_db, command, "--watch", "0.2", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with proc:
        seen = 0
        while seen < 2:
            line = proc.stdout.readline().decode()
            assert line, "the watch ended by itself"
            seen += line.startswith(f"Every 0.2 s: multiflexi-cli {command}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    streamed = cli_process(
        sqlite_db, command, "--watch", "0.2", "-f", "json", stdout=subprocess.PIPE
    )
    assert streamed.stdout is not None
    with streamed:
        first = streamed.stdout.readline().decode()
        streamed.send_signal(signal.SIGINT)
        assert streamed.wait(timeout=30) == 0
    assert first.strip() in ("{", "[", "[]")  # JSON documents, no headers between them
    bad = cli(f"{command} --watch 0")
    assert bad.exit_code == 1 and "--watch must be more than 0" in bad.stderr


def test_why_a_job_waits_names_overlap_and_busy_executors(sqlite_db: Database) -> None:
    from multiflexi import workers
    from multiflexi.jobs.logs import why_waiting
    from multiflexi.jobs.service import create_job
    from multiflexi.queue import claim_job

    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass", overlap="forbid")
    running = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id).id
    waiting = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id).id
    claim_job(sqlite_db, running, "exec@test", 60)
    workers.register(sqlite_db, "executor@here:1:abc", "executor")
    with sqlite_db.read() as session:
        assert why_waiting(session, waiting) == [
            f"job {running} of the same run template is running (overlap forbid)"
        ]
        assert why_waiting(session, running) == []  # it does not wait
    _, _, other = make_setup(sqlite_db, cmdparams="-c pass")
    free = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=other).id
    with sqlite_db.read() as session:
        assert why_waiting(session, free) == ["the executors are busy with other jobs"]

"""One job's story in a real executor's log: claim, start, end, retry, each line with
``job_id=`` and logfmt values, each event once."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from multiflexi.jobs.service import create_job
from multiflexi.queue import HOSTNAME
from multiflexi.storage.database import Database
from tests.daemons.helpers import EXECUTOR, SCHEDULER, daemon_env
from tests.factories import make_setup

PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"=]+)')


def parse(message: str) -> list[tuple[str, str]]:
    """A logfmt message as (key, value) pairs; fails unless the whole line is pairs."""
    pairs = [(m.group(1), m.group(2)) for m in PAIR.finditer(message)]
    rebuilt = " ".join(f"{k}={v}" for k, v in pairs)
    assert rebuilt == message, f"not logfmt: {message!r}"
    return pairs


def unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def test_a_jobs_story_can_be_grepped_from_the_executor_log(
    sqlite_db: Database, tmp_path: Path
) -> None:
    script = "-c 'import sys; print(\"half done\", file=sys.stderr); sys.exit(3)'"
    _, _, rt = make_setup(
        sqlite_db,
        cmdparams=script,
        max_attempts=2,
        exit_codes={3: ("no data today", "error")},
    )
    job_id = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
    res = subprocess.run(
        [EXECUTOR, "--once"], env=daemon_env(sqlite_db), capture_output=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    lines = res.stderr.decode().splitlines()
    events: dict[str, list[dict[str, str]]] = {}
    for line in lines:
        stamp, level, message = line.split(" ", 2)
        assert stamp.endswith("Z") and level in ("INFO", "WARNING", "ERROR")
        pairs = dict(parse(message))
        assert "'" not in message and "{" not in message, f"a Python repr: {message}"
        if pairs.get("job_id") == str(job_id):
            events.setdefault(pairs["action"], []).append({k: unquote(v) for k, v in pairs.items()})
    assert sorted(events) == ["claim", "finish", "job_start", "retry"], lines
    assert all(len(seen) == 1 for seen in events.values()), "an event logged twice"
    claim = events["claim"][0]
    assert claim["runtemplate_id"] == str(rt) and claim["company"].startswith("acme")
    assert claim["by"] == "cli" and claim["host"] == HOSTNAME and claim["attempt"] == "1"
    assert int(events["job_start"][0]["pid"]) > 0
    end = events["finish"][0]
    assert (end["status"], end["exit_code"]) == ("failed", "3")
    assert end["reason"] == "exit code 3: no data today"
    assert float(end["duration"]) > 0
    retry_id = events["retry"][0]["retry_job_id"]
    # The retry's own story starts with its creation, which names the job it retries.
    created = [
        dict(parse(line.split(" ", 2)[2]))
        for line in lines
        if f"action=create job_id={retry_id} " in line
    ]
    assert len(created) == 1
    assert created[0]["by"] == "retry" and created[0]["retry_of"] == str(job_id)


def test_the_scheduler_logs_each_job_it_creates_by_job_id(sqlite_db: Database) -> None:
    from datetime import UTC, datetime

    _, _, rt = make_setup(
        sqlite_db, executable="/bin/true", interv="h", created=datetime(2026, 1, 1, tzinfo=UTC)
    )
    res = subprocess.run(
        [SCHEDULER, "--once"], env=daemon_env(sqlite_db), capture_output=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    created = [
        dict(parse(line.split(" ", 2)[2]))
        for line in res.stderr.decode().splitlines()
        if "action=create " in line
    ]
    assert len(created) == 1
    assert created[0]["by"] == "scheduler" and created[0]["runtemplate_id"] == str(rt)
    assert int(created[0]["job_id"]) > 0


def test_every_log_call_in_the_code_is_a_logfmt_template() -> None:
    """Literal parts of each ``log.x("...")`` template are pairs too: a value with a space
    written into the template would slip past the formatter's quoting."""
    import ast

    src = Path(__file__).resolve().parents[2] / "src"
    bad = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("debug", "info", "warning", "error", "critical")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
            ):
                continue
            template = node.args[0]
            if not (isinstance(template, ast.Constant) and isinstance(template.value, str)):
                bad.append(f"{path}:{node.lineno}: not a literal template")
                continue
            message = re.sub(r"%[-.0-9]*[sdf]", "x", template.value)
            if " ".join(f"{k}={v}" for k, v in parse_pairs(message)) != message:
                bad.append(f"{path}:{node.lineno}: {template.value}")
    assert bad == []


def parse_pairs(message: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in PAIR.finditer(message)]

"""What the system writes stays private: the SQLite database (with its WAL files), the
master key and job directories are readable by their owner only, whatever the umask; a
planted secret never reaches the executor daemon's log, even at DEBUG level.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from multiflexi.storage.models import JobStatus
from tests.daemons.helpers import BIN, EXECUTOR, all_final, daemons, statuses, wait_until
from tests.factories import make_script, make_setup
from tests.reliability.helpers import stdout_of

CLI = str(BIN / "multiflexi-cli")
SECRET = "Pl4nted-D43mon-S3cret"

#: Reports the mode and owner of its own job directory and of the job root above it.
STAT_SELF = """
import json, os, stat, sys
tmp = os.environ["MULTIFLEXI_TMP"]
def describe(path):
    st = os.stat(path)
    return {"mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid}
print(json.dumps({"job_dir": describe(tmp), "job_root": describe(os.path.dirname(tmp))}))
"""


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_database_master_key_and_job_directories_are_private(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "fresh"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MULTIFLEXI_"))},
        "MULTIFLEXI_DATA_DIR": str(data),
    }
    env.pop("ENCRYPTION_MASTER_KEY", None)
    script = make_script(tmp_path, STAT_SELF, "stat_self.py")
    definition = tmp_path / "app.json"
    definition.write_text(
        json.dumps(
            {
                "name": "Stat Self",
                "description": "reports the modes of its directories",
                "executable": sys.executable,
                "cmdparams": str(script),
                "environment": {"APP_PASSWORD": {"type": "password", "description": "s"}},
            }
        )
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [CLI, *args], env=env, capture_output=True, text=True, timeout=120, umask=umask
        )
        assert res.returncode == 0, (args, res.stderr)
        return res

    cli("application:import-json", "--file", str(definition))
    cli("company:create", "--name", "Private")
    # A secret configuration value: sealed with the master key, which is created now.
    cli(
        "run-template:create", "--app_id", "1", "--company", "private",
        "--config", f"APP_PASSWORD={SECRET}",
    )  # fmt: skip
    job_id = json.loads(cli("job:create", "--template", "1", "-f", "json").stdout)["job_id"]
    ran = cli("job:run", str(job_id), "-q")
    assert ran.returncode == 0
    seen = json.loads(cli("job:logs", str(job_id)).stdout)

    assert seen["job_dir"] == {"mode": "0o700", "uid": os.getuid()}
    assert seen["job_root"]["mode"] == "0o700"
    assert mode(data) == "0o700"
    database = data / "multiflexi.sqlite"
    assert mode(database) == "0o600"
    for suffix in ("-wal", "-shm"):
        side = database.with_name(database.name + suffix)
        if side.exists():
            assert mode(side) == "0o600", side
    assert mode(data / "master.key") == "0o600"


def test_a_secret_printed_by_a_job_never_reaches_the_daemon_log_at_debug_level(
    sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    printer = make_script(
        tmp_path,
        "import os, sys\n"
        "secret = os.environ['APP_PASSWORD']\n"
        "print('out', secret); print('err', secret, file=sys.stderr)\n"
        "sys.exit(int(sys.argv[2]))\n",
        "printer.py",
    )
    fields = {"APP_PASSWORD": {"type": "password"}, "CODE": {"type": "integer"}}
    # The secret is on the command line too (redacted wherever it is shown or stored).
    cmdparams = f"{printer} {{APP_PASSWORD}} {{CODE}}"
    _, _, ok = make_setup(
        db, cmdparams=cmdparams, fields=fields, config={"APP_PASSWORD": SECRET, "CODE": "0"}
    )
    _, _, failing = make_setup(
        db,
        cmdparams=cmdparams,
        fields=fields,
        config={"APP_PASSWORD": SECRET, "CODE": "3"},
        max_attempts=2,
    )
    argv = [EXECUTOR, "--debug"]  # tracebacks too, if anything goes wrong
    with daemons(db, tmp_path, [argv], MULTIFLEXI_LOG_LEVEL="DEBUG") as (executor,):
        jobs = [create_job(db, db.settings, runtemplate_id=rt).id for rt in (ok, failing)]
        wait_until(lambda: all_final(db, jobs), 60, "the jobs to end")
        # The failed one's retry (same secret, same log) ends too.
        wait_until(lambda: len(statuses(db)) == 3 and all_final(db, list(statuses(db))), 60)
    log = executor.log()
    assert statuses(db, jobs) == {jobs[0]: JobStatus.SUCCESS, jobs[1]: JobStatus.FAILED}
    assert stdout_of(db, jobs[0])[1] == b"out ****\n"  # the job did print it
    assert SECRET not in log

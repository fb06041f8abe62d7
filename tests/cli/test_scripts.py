"""multiflexi-job2script reproduces a run: a directory of its own, the job's environment,
the same result file, the same exit code, from whatever directory it is started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from multiflexi.storage.database import Database
from tests.conftest import Cli
from tests.daemons.helpers import BIN, daemon_env
from tests.factories import make_script, make_setup

#: Writes a result file (relative RESULT_FILE, as the app declares it) and exits 3.
APP = """
import json, os, sys
json.dump({"cwd": os.getcwd(), "tmp": os.environ["MULTIFLEXI_TMP"], "args": sys.argv[1:],
           "banka": os.environ.get("BANKA+")}, open(os.environ["RESULT_FILE"], "w"))
sys.exit(3)
"""


def test_the_console_scripts_name_themselves_in_their_usage(sqlite_db: Database) -> None:
    for tool in ("multiflexi-job2script", "multiflexi-job2env"):
        res = subprocess.run(
            [BIN / tool, "--help"], env=daemon_env(sqlite_db), capture_output=True, timeout=60
        )
        assert res.returncode == 0
        assert res.stdout.decode().splitlines()[0] == f"Usage: {tool} [OPTIONS] ID"


def test_the_script_reproduces_the_run_from_any_directory(
    cli: Cli, sqlite_db: Database, tmp_path: Path
) -> None:
    app = make_script(tmp_path, APP)
    _, _, rt = make_setup(
        sqlite_db,
        executable=sys.executable,
        cmdparams=f"{app} --into {{MULTIFLEXI_TMP}}",
        fields={"RESULT_FILE": {"defval": "result.json"}, "BANKA+": {"defval": "1"}},
    )
    job_id = cli.json("job:create", "--template", rt)["job_id"]
    assert cli("job:run", job_id).exit_code == 3
    script = tmp_path / "job.sh"
    script.write_text(cli.ok("job:script", job_id).stdout)
    for cwd in (tmp_path, Path("/")):
        res = subprocess.run(
            ["env", "-i", f"TMPDIR={tmp_path}", "/bin/bash", str(script)],
            cwd=cwd,
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 3, res.stderr
        workdir = Path(res.stderr.decode().split(" runs in ")[1].strip())
        result = json.loads((workdir / "result.json").read_text())
        assert result == {
            "cwd": str(workdir),
            "tmp": str(workdir),
            "args": ["--into", str(workdir)],
            "banka": "1",
        }
    given = tmp_path / "given"
    script.write_text(cli.ok("job:script", job_id, "--workdir", given).stdout)
    res = subprocess.run(["/bin/bash", str(script)], cwd="/", capture_output=True, timeout=60)
    assert res.returncode == 3
    assert json.loads((given / "result.json").read_text())["cwd"] == str(given)


def test_job_env_file_takes_json_as_one_of_its_formats(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt = make_setup(sqlite_db, executable="/bin/true", fields={"BANKA+": {"defval": "1"}})
    job_id = cli.json("job:create", "--template", rt)["job_id"]
    for argv in (f"job:env-file {job_id} -f json", f"-f json job:env-file {job_id}"):
        env = json.loads(cli.ok(argv).stdout)
        assert env["BANKA+"] == "1" and env["MULTIFLEXI_JOB_ID"] == str(job_id)
    dotenv = cli.ok(f"job2env {job_id} --format dotenv").stdout
    assert 'BANKA+="1"' in dotenv
    assert "env $'BANKA+=1' COMMAND" in cli.ok(f"job2env {job_id}").stdout

"""Published application files use variable names a shell cannot (``BANKA+``, ``BANKA-``)
and ``RESULT_FILE`` values that are not paths (``php://stdout``): both reach the process
exactly as written."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

REAL = (
    REPO
    / "tests"
    / "fixtures"
    / "apps"
    / "real"
    / "AbraFlexi-Tools__payment_simulator.multiflexi.app.json"
)

#: The application's process: what it was given, to stdout.
DUMP = """
import json, os
names = ["BANKA+", "BANKA-", "RESULT_FILE", "ABRAFLEXI_BANK"]
print(json.dumps({n: os.environ.get(n) for n in names}))
"""


def published_app(tmp_path: Path) -> Path:
    """The real payment simulator with the two variables of the published bank app, and a
    Python stand-in for its executable."""
    data = json.loads(REAL.read_text())
    script = tmp_path / "simulator.py"
    script.write_text(DUMP)
    data["executable"] = sys.executable
    data["cmdparams"] = str(script)
    data["environment"]["BANKA+"] = {"type": "string", "description": "incoming", "defval": "1"}
    data["environment"]["BANKA-"] = {"type": "string", "description": "outgoing"}
    path = tmp_path / "simulator.multiflexi.app.json"
    path.write_text(json.dumps(data))
    return path


def test_names_a_shell_cannot_use_are_imported_with_a_warning_and_reach_the_process(
    cli: Any, tmp_path: Path
) -> None:
    path = published_app(tmp_path)
    imported = cli.json("application:import-json", "--file", path)
    warned = [w for w in imported["warnings"] if "BANKA" in w["path"]]
    assert [w["path"] for w in warned] == ["$.environment['BANKA+']", "$.environment['BANKA-']"]
    assert all("passed to the process as it is" in w["message"] for w in warned)
    assert cli("application:import-json", "--file", path, "--strict").exit_code == 0
    app_id = imported["id"]
    company = cli.json("company:create", "--name", "Banka")["company_id"]
    rt = cli.json(
        "run-template:create", "--app_id", app_id, "--company_id", company,
        "--config", "BANKA-=2", "--config", "ABRAFLEXI_BANK=KB",
    )["runtemplate_id"]  # fmt: skip
    job = cli.json("job:create", "--template", rt, "--env", "BANKA+=3")["job_id"]
    res = cli.ok("job:run", job)
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen == {
        "BANKA+": "3",
        "BANKA-": "2",
        "RESULT_FILE": "php://stdout",  # not turned into a path under the job's directory
        "ABRAFLEXI_BANK": "KB",
    }
    shown = cli.json("job:show", job)
    assert shown["status"] == "success", shown["reason"]
    assert not [a for a in shown["artifacts"] if a["state"] != "complete"]

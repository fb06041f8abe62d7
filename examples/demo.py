"""`make demo`: the main job on the embedded SQLite database, with no configuration.

Imports the bundled example application, creates a demo company and run template (once),
then creates a job, runs it in the foreground, shows its record and lists its artifacts —
exactly what an operator would type.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from multiflexi.cli.main import main

HERE = Path(__file__).resolve().parent
APP_FILE = HERE / "apps" / "demo-report.multiflexi.app.json"
COMPANY = "Demo Company"
TEMPLATE = "Demo daily report"


def show(*args: str) -> None:
    print(f"\n$ multiflexi-cli {' '.join(args)}", flush=True)
    code = main(list(args))
    sys.stdout.flush()
    if code not in (0, None):
        raise SystemExit(f"demo: `{' '.join(args)}` failed with exit code {code}")


def query(*args: str) -> tuple[int, Any]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "-f", "json"])
    try:
        return code, json.loads(out.getvalue() or "null")
    except json.JSONDecodeError:
        return code, None


def ident(record: dict[str, Any], *keys: str) -> int:
    for key in (*keys, "id"):
        if key in record:
            return int(record[key])
    raise SystemExit(f"demo: no id in {record}")


def main_demo() -> None:
    # The job's application is a console script of this virtual environment.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    show("application:import-json", "--file", str(APP_FILE))
    code, company = query("company:get", "--name", COMPANY)
    if code != 0:
        show("company:create", "--name", COMPANY, "--email", "ops@example.invalid")
        code, company = query("company:get", "--name", COMPANY)
    company_id = ident(company, "company_id")
    code, templates = query("run-template:list", "--company", str(company_id))
    existing = [t for t in templates or [] if t.get("name") == TEMPLATE]
    if existing:
        rt_id = ident(existing[0], "runtemplate_id")
    else:
        code, app = query("application:get", "--name", "Demo Report")
        code, rt = query(
            "run-template:create",
            "--name", TEMPLATE,
            "--app_id", str(ident(app, "application_id")),
            "--company_id", str(company_id),
            "--interv", "d",
            "--config", "ROWS=5",
            "--config", "API_TOKEN=demo-token-123",
        )  # fmt: skip
        if code != 0:
            raise SystemExit("demo: cannot create the run template")
        rt_id = ident(rt, "runtemplate_id")
    show("runtemplate:show", str(rt_id))
    code, job = query("job:create", "--template", str(rt_id), "--company", str(company_id))
    if code != 0:
        raise SystemExit("demo: cannot create the job")
    job_id = str(ident(job, "job_id"))
    print(f"\n$ multiflexi-cli job:create --template {rt_id} --company {company_id}")
    print(f"Job {job_id} created (scheduled).")
    show("job:run", job_id)
    show("job:show", job_id)
    show("artifact:list", "--job", job_id)
    print(
        f"\nThe token was masked in the stored output. Try: multiflexi-cli job:show {job_id} --env,"
        f" multiflexi-job2script {job_id}, multiflexi-cli artifact:get <id> --output FILE"
    )


if __name__ == "__main__":
    main_demo()

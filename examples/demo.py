"""`make demo`: the main job on the embedded SQLite database, with no configuration.

Imports the bundled example application, creates a demo company and run template (once),
then creates a job, runs it in the foreground, shows its record and lists its artifacts.
Every command is printed exactly as a user would type it (quoted for the shell), with its
real output; where the demo needs an id it asks for JSON and says so with ``| jq``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from multiflexi.cli.main import main

HERE = Path(__file__).resolve().parent
APP_FILE = HERE / "apps" / "demo-report.multiflexi.app.json"
COMPANY = "Demo Company"
TEMPLATE = "Demo daily report"


def relative(arg: str) -> str:
    """A path under the current directory as a user types it: relative."""
    path = Path(arg)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd()))
    return arg


def typed(args: tuple[str, ...], jq: str | None = None) -> str:
    """The command line a user types, quoted for the shell."""
    line = shlex.join(["multiflexi-cli", *args])
    return f"{line} | jq {shlex.quote(jq)}" if jq else line


def show(*args: str) -> None:
    """Print the command, run it; its output is printed as it comes."""
    args = tuple(relative(a) for a in args)
    print(f"\n$ {typed(args)}", flush=True)
    code = main(list(args))
    sys.stdout.flush()
    if code not in (0, None):
        raise SystemExit(f"demo: `{typed(args)}` failed with exit code {code}")


def query(jq: str, *args: str) -> Any:
    """Print ``multiflexi-cli ARGS -f json | jq JQ``, run it, print and return the value
    (None, and the error line, when the command fails)."""
    argv = (*args, "-f", "json")
    print(f"\n$ {typed(argv, jq)}", flush=True)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    if code != 0:
        print(err.getvalue().rstrip(), flush=True)
        return None
    value = pick(json.loads(out.getvalue() or "null"), jq)
    print("" if value is None else value, flush=True)
    return value


def pick(data: Any, jq: str) -> Any:
    """The two jq filters the demo uses: ``.key`` and ``.[] | select(.name == "X") | .id``."""
    if jq.startswith(".[]"):
        wanted = jq.split('"')[1]
        return next((row["id"] for row in data if row.get("name") == wanted), None)
    return data.get(jq.lstrip(".")) if isinstance(data, dict) else None


def main_demo() -> None:
    # The job's application is a console script of this virtual environment.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    show("application:import-json", "--file", str(APP_FILE))
    app_id = query(".id", "application:get", "--name", "Demo Report")
    company_id = query(".id", "company:get", "--name", COMPANY)
    if company_id is None:
        company_id = query(
            ".company_id", "company:create", "--name", COMPANY, "--email", "ops@example.invalid"
        )
    select = f'.[] | select(.name == "{TEMPLATE}") | .id'
    rt_id = query(select, "run-template:list", "--company", str(company_id))
    if rt_id is None:
        rt_id = query(
            ".runtemplate_id",
            "run-template:create",
            "--name", TEMPLATE,
            "--app-id", str(app_id),
            "--company", str(company_id),
            "--interv", "d",
            "--config", "ROWS=5",
            "--config", "API_TOKEN=demo-token-123",
        )  # fmt: skip
        if rt_id is None:
            raise SystemExit("demo: cannot create the run template")
    show("run-template:get", str(rt_id))
    job_id = query(".job_id", "job:create", "--template", str(rt_id))
    if job_id is None:
        raise SystemExit("demo: cannot create the job")
    show("job:run", str(job_id))
    show("job:show", str(job_id))
    show("artifact:list", "--job", str(job_id))
    print(
        f"\nThe token was masked in the stored output. Try: multiflexi-cli job:show {job_id} --env,"
        f" multiflexi-job2script {job_id}, multiflexi-cli artifact:get ID --output FILE;"
        " multiflexi-cli alone lists every command."
    )


if __name__ == "__main__":
    main_demo()

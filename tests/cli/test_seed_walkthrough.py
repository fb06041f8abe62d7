"""The seed's Job documentation, typed as a new user would, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Cli

DEMO_APP = REPO / "examples" / "apps" / "demo-report.multiflexi.app.json"


@pytest.fixture
def demo(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    bindir = str(Path(sys.executable).parent)
    cli.env["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    cli.ok("application:import-json", "--file", DEMO_APP)
    app = cli.json("application:get", "--name", "Demo Report")
    company = cli.json("company:create", "--name", "Acme Corp")
    company_id = company.get("company_id", company.get("id"))
    rt = cli.json(
        "run-template:create",
        "--name",
        "nightly report",
        "--app_id",
        app["id"],
        "--company_id",
        company_id,
        "--config",
        "ROWS=3",
        "--config",
        "API_TOKEN=tok-very-secret",
    )
    rt_id = rt.get("runtemplate_id", rt.get("id"))
    return {"app": app["id"], "company": company_id, "rt": rt_id}


def test_the_seed_walkthrough_works_as_documented(
    cli: Cli, demo: dict[str, int], tmp_path: Path
) -> None:
    assert "nightly report" in cli.ok("runtemplate:list").stdout
    assert "ROWS" in cli.ok(f"runtemplate:show {demo['rt']}").stdout
    assert "acme_corp" in cli.ok("company:list").stdout

    created = cli.ok(f"job:create --template {demo['rt']} --company {demo['company']}")
    job_id = int(created.stdout.split()[1])
    listed = cli.json("job:list")
    assert listed[0]["id"] == job_id and listed[0]["status"] == "scheduled"

    ran = cli(f"job:run {job_id}")
    assert ran.exit_code == 0, ran.stderr
    assert "3 rows" in ran.stdout
    assert "tok-very-secret" not in ran.stdout + ran.stderr

    shown = cli.ok(f"job:show {job_id}").stdout
    assert "success" in shown and "Report written" in shown
    record = cli.json(f"job:show {job_id}")
    assert record["status"] == "success" and record["exitcode"] == 0
    names = {a["filename"] for a in record["artifacts"]}
    assert names == {"stdout.txt", "stderr.txt", "rows.csv", "summary.json"}

    arts = cli.json(f"artifact:list --job {job_id}")
    csv_id = next(a["id"] for a in arts if a["filename"] == "rows.csv")
    assert "rows.csv" in cli.ok(f"artifact:list --job {job_id}").stdout
    assert cli.json(f"artifact:show {csv_id}")["content_type"] == "text/csv"
    target = tmp_path / "out.csv"
    cli.ok(f"artifact:get {csv_id} --output {target}")
    assert target.read_text() == "n,square\n1,1\n2,4\n3,9\n"

    env_file = cli.ok(f"job2env {job_id}").stdout
    assert "ROWS=" in env_file and "tok-very-secret" not in env_file
    script = cli.ok(f"job2script {job_id}").stdout
    assert script.startswith("#!") and "multiflexi-demo-report" in script
    assert "tok-very-secret" not in script

    cli.ok(f"job:delete {job_id}")
    assert cli(f"job:show {job_id}").exit_code == 1
    assert cli.json("job:list") == []


def test_unknown_ids_give_one_clear_line_and_exit_1(cli: Cli) -> None:
    for command in (
        "job:show 999",
        "job:run 999",
        "job:delete 999",
        "artifact:show 5",
        "artifact:list --job 7",
        "job:create --template 42",
    ):
        res = cli(command)
        assert res.exit_code == 1, command
        assert res.stderr.count("\n") == 1 and "not found" in res.stderr, (command, res.stderr)
        assert "Traceback" not in res.stderr


def test_job_run_exits_with_the_jobs_exit_code(cli: Cli, demo: dict[str, int]) -> None:
    job_id = cli.json(f"job:create --template {demo['rt']} --env FAIL_WITH=3")["job_id"]
    res = cli(f"job:run {job_id}")
    assert res.exit_code == 3
    record = cli.json(f"job:show {job_id}")
    assert record["status"] == "failed" and record["exit_meaning"] == "Upstream not reachable"


def test_the_console_scripts_reproduce_the_job(
    cli: Cli, demo: dict[str, int], tmp_path: Path
) -> None:
    job_id = cli.json(f"job:create --template {demo['rt']}")["job_id"]
    cli.ok(f"job:run {job_id}")
    env = {**os.environ, **cli.env}
    bindir = Path(sys.executable).parent
    script = subprocess.run(
        [bindir / "multiflexi-job2script", str(job_id), "--reveal", "--yes"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / "job.sh"
    path.write_text(script)
    outdir = tmp_path / "replay"
    outdir.mkdir()
    replay = subprocess.run(
        ["bash", str(path)],
        env={"PATH": env["PATH"], "MULTIFLEXI_TMP_OVERRIDE": str(outdir)},
        capture_output=True,
        text=True,
        cwd=outdir,
    )
    assert replay.returncode == 0, replay.stderr
    assert "connecting with token tok-very-secret" in replay.stdout
    envfile = subprocess.run(
        [bindir / "multiflexi-job2env", str(job_id)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from dotenv import dotenv_values

    values = dotenv_values(stream=__import__("io").StringIO(envfile))
    assert values["ROWS"] == "3" and values["API_TOKEN"] != "tok-very-secret"
    assert json.dumps(values)


def test_job_list_works_on_a_brand_new_database(cli: Cli) -> None:
    res = cli.ok("job:list")
    assert res.stdout.strip() == "No jobs found."
    assert cli.json("job:list --status failed,lost --limit 5") == []
    bad = cli("job:list --status nonsense")
    assert bad.exit_code == 1 and "unknown status" in bad.stderr


def readme_walkthrough() -> list[str]:
    """The shell blocks of the README's "Walk-through" section, as written."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Walk-through\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n```", 1)[0] for block in section.split("```sh\n")[1:]]


def test_the_readme_walkthrough_works_as_written_on_a_fresh_database(tmp_path: Path) -> None:
    """Every line of the README's walk-through, run by bash as a user would paste it, in a
    directory with the repository's examples and virtual environment; every output shown
    in a ``#   `` comment must be printed."""
    import shutil

    if shutil.which("jq") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("jq is not installed (.ci/run installs it)")
        pytest.skip("jq is not installed")
    blocks = readme_walkthrough()
    assert len(blocks) == 2 and "job:run 1" in blocks[0] and "jq" in blocks[1]
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_", "VIRTUAL_ENV"))
    }
    env["TMPDIR"] = str(tmp_path)
    script = "set -euo pipefail\n" + "\n".join(blocks)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout
    shown = [line[4:] for b in blocks for line in b.splitlines() if line.startswith("#   ")]
    assert len(shown) >= 8
    for line in shown:
        assert line in done.stdout, (line, done.stdout)
    assert (work / "rows.csv").read_text() == "n,square\n1,1\n2,4\n3,9\n"
    assert (work / "job_script.sh").read_text().startswith("#!")
    assert "ROWS=" in (work / "job.env").read_text()
    assert "s3cret" not in done.stdout and "t0ken" not in done.stdout

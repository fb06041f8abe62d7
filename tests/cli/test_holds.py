"""Switching a company, application or run template off and on through the CLI: what
the confirmation says, what job:create, job:run, queue:status, queue:list and job:list
say about its jobs (issue 32, item 3)."""

from __future__ import annotations

from multiflexi.storage.database import Database
from tests.conftest import Cli
from tests.daemons.helpers import queue_jobs, statuses
from tests.factories import make_setup


def test_a_disabled_company_holds_its_jobs_and_says_so(cli: Cli, sqlite_db: Database) -> None:
    _, company, rt = make_setup(sqlite_db, executable="/bin/true")
    waiting = queue_jobs(sqlite_db, [rt], 2)

    off = cli.ok(f"company:update {company} --enabled false").stdout.strip()
    assert off == (
        f"Company {company} updated: enabled true -> false; 2 waiting job(s) held until the"
        " company is enabled again"
    )
    assert cli.json(f"company:update {company} --enabled false")["updated"] is False

    created = cli(f"job:create --template {rt}")
    assert created.exit_code == 1 and created.stdout == ""
    assert created.stderr.count("\n") == 1 and "is disabled; enable it" in created.stderr
    ran = cli(f"job:run {waiting[0]}")
    assert ran.exit_code == 1
    assert ran.stderr.strip().endswith(
        f"job {waiting[0]} is held: company {company} ({_name(cli, company)}) is disabled;"
        " enable it to run the job"
    )
    detached = cli(f"job:run {waiting[0]} --detach")
    assert detached.exit_code == 1 and "is held: company" in detached.stderr
    assert statuses(sqlite_db) == {job_id: "scheduled" for job_id in waiting}

    assert cli.json("queue:status")["held"] == 2
    assert "\nheld        2 waiting job(s) of a disabled company" in cli.ok("queue:status").stdout
    assert {row["held"] for row in cli.json("queue:list")} == {"company disabled"}
    assert {row["held"] for row in cli.json("job:list")} == {"company disabled"}
    assert "company disabled" in cli.ok("job:list").stdout
    assert cli.ok("queue:process").stdout.strip() == (
        "Processed 0 jobs: nothing was due. 2 due job(s) held (company or application"
        " disabled, template inactive)."
    )

    on = cli.ok(f"company:update {company} --enabled true").stdout.strip()
    assert on.endswith("enabled false -> true; 2 waiting job(s) may run again")
    assert cli.json("queue:process")["processed"] == 2
    assert {row["held"] for row in cli.json("job:list")} == {None}


def _name(cli: Cli, company: int) -> str:
    return str(cli.json(f"company:get {company}")["name"])


def test_run_template_and_application_updates_say_what_changed(
    cli: Cli, sqlite_db: Database
) -> None:
    app_id, _, rt = make_setup(sqlite_db, executable="/bin/true")
    queue_jobs(sqlite_db, [rt], 1)
    off = cli.ok(f"run-template:update {rt} --active false --name nightly").stdout
    assert f"RunTemplate {rt} updated: " in off
    assert "active true -> false" in off and "name 'probe run' -> 'nightly'" in off
    assert off.rstrip().endswith("1 waiting job(s) held until the run template is enabled again")
    assert cli.json(f"run-template:update {rt} --active true")["changed"] == {
        "active": {"from": False, "to": True}
    }
    app = cli.ok(f"application:update {app_id} --enabled false").stdout.strip()
    assert app.endswith(
        "updated: enabled true -> false; 1 waiting job(s) held until the application is"
        " enabled again"
    )

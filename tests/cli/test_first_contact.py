"""What a newcomer meets first: the overview, noun listings, ``help``, and the same
spelling rules on every command (``_`` or ``-``, ids or slugs, ``-e``/``-f`` anywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiflexi.cli.overview import grouped, table_lines
from multiflexi.storage.database import Database
from tests.conftest import Cli
from tests.factories import make_setup


def test_no_arguments_print_a_grouped_overview_and_exit_0(cli: Cli) -> None:
    res = cli()
    assert res.exit_code == 0 and res.stderr == ""
    for section in ("Jobs:", "Queue:", "Artifacts:", "Run templates:", "Companies:",
                    "Applications:", "Credentials:", "Daemons and monitoring:",
                    "Housekeeping:"):  # fmt: skip
        assert f"\n{section}\n" in res.stdout, section
    assert "  job:list " in res.stdout and "multiflexi-executor" in res.stdout
    jobs = res.stdout.index("\nJobs:")
    queue = res.stdout.index("\nQueue:")
    assert jobs < res.stdout.index("job:run") < queue
    assert all(len(line) <= 100 for line in res.stdout.splitlines())
    assert [r["command"] for r in cli.json()][:2] == ["action:list", "application:create"]


def test_a_command_of_a_new_noun_gets_a_section_of_its_own() -> None:
    sections = dict(grouped(["job:list", "user:create", "user:list", "status"]))
    assert sections["Jobs"] == ["job:list"]
    assert sections["User"] == ["user:create", "user:list"]
    assert sections["Daemons and monitoring"] == ["status"]
    (line,) = table_lines([("a", "x" * 200)], width=40)
    assert len(line) == 40 and line.endswith("x…")


@pytest.mark.parametrize("noun", ["job", "jobs"])
def test_a_noun_alone_lists_its_commands(cli: Cli, noun: str) -> None:
    res = cli.ok(noun)
    lines = [line.split()[0] for line in res.stdout.splitlines() if line.startswith("  ")]
    assert "job:list" in lines and "job:run" in lines
    assert all(name.startswith("job:") for name in lines)
    assert "queue:list" not in res.stdout
    assert [r["command"] for r in cli.json(noun)] == sorted(lines)
    env = cli.ok("company:env").stdout
    assert "company:env:set" in env and "company:create" not in env


def test_help_shows_one_command(cli: Cli) -> None:
    res = cli.ok("help job:list")
    assert res.stdout.startswith("Usage: multiflexi-cli job:list [OPTIONS]")
    assert "--status" in res.stdout
    assert "Jobs:" in cli.ok("help").stdout
    assert "job:create" in cli.ok("help job").stdout
    assert cli.ok("help runtemplate:list").stdout.startswith(
        "Usage: multiflexi-cli run-template:list"
    )
    unknown = cli("help nosuch")
    assert unknown.exit_code == 2 and "unknown command 'nosuch'" in unknown.stderr


def test_every_option_works_with_dash_and_underscore(cli: Cli, sqlite_db: Database) -> None:
    _, company_id, rt_id = make_setup(sqlite_db, slug="acme_corp")
    for spelling in ("--runtemplate_id", "--runtemplate-id"):
        assert cli.json(f"run-template:list-credentials {spelling} {rt_id}") == []
    for spelling in ("--company_id", "--company-id"):
        rows = cli.json(f"company-app:list {spelling} {company_id}")
        assert rows[0]["company_id"] == company_id
        assert cli.json(f"run-template:list {spelling} {company_id}")[0]["id"] == rt_id
    for spelling in ("--job_id", "--job-id"):
        assert cli(f"artifact:list {spelling} 99").stderr == "error: job 99 not found\n"
    for spelling in ("--dry_run", "--dry-run"):
        cli.ok(f"prune {spelling}")
    created = cli.json(f"job:create --runtemplate-id {rt_id} --company_id {company_id}")
    assert created["runtemplate_id"] == rt_id


def test_a_company_is_named_by_id_or_slug(cli: Cli, sqlite_db: Database) -> None:
    make_setup(sqlite_db, slug="other")
    company = cli.json("company:create --name 'Acme Corp'")["company_id"]
    app = cli.json("application:create --name Tool --executable true")["id"]
    assigned = cli.json(f"company-app:assign --company acme_corp --app_id {app}")
    assert assigned["company_id"] == company and assigned["runtemplate_id"]
    assert cli.json("company-app:list --company acme_corp")[0]["app_id"] == app
    cli.ok("company:env:set --company acme_corp PROXY=http://proxy")
    assert cli.json(f"company:env:list --company {company}")[0]["name"] == "PROXY"
    assert cli.json("company:get acme_corp")["id"] == company
    cli.ok("company:update acme_corp --email ops@example.com")
    assert cli.json(f"company:get {company}")["email"] == "ops@example.com"
    missing = cli("company-app:list --company nosuch")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1
    assert "'nosuch'" in missing.stderr


def test_environment_option_before_or_after_the_command(cli: Cli, tmp_path: Path) -> None:
    del cli.env["DB_DATABASE"]  # the process environment would win over the file
    env = tmp_path / "other.env"
    env.write_text(f"DB_DATABASE={tmp_path / 'other.sqlite'}\n")
    cli.ok(f"-e {env} company:create --name Before")
    cli.ok(f"company:create --name After -e {env}")
    cli.ok(f"company:create --name Equals --environment={env}")
    names = [c["name"] for c in cli.json(f"company:list -e {env}")]
    assert names == ["Before", "After", "Equals"]
    assert cli.json("company:list") == []  # the default database is untouched


@pytest.mark.parametrize("command", ["job:logs 1", "job:script 1"])
def test_raw_output_commands_refuse_json_in_one_line(cli: Cli, command: str) -> None:
    for argv in (f"{command} -f json", f"-f json {command}"):
        res = cli(argv)
        assert res.exit_code == 2
        (line,) = res.stderr.splitlines()
        assert "-f json is not available" in line


def test_typos_are_not_found_rather_than_empty(cli: Cli, sqlite_db: Database) -> None:
    make_setup(sqlite_db)
    (company,) = cli.json("company:list")
    for option, message in (
        ("--company nosuch", "company 'nosuch' not found"),
        ("--company 77", "company '77' not found"),
        ("--app 'no such app'", "application 'no such app' not found"),
        ("--app 42", "application '42' not found"),
        ("--template 999", "run template 999 not found"),
    ):
        res = cli(f"job:list {option}")
        assert (res.exit_code, res.stderr) == (1, f"error: {message}\n"), option
    assert cli.ok(f"job:list --company {company['slug']}").stdout == "No jobs found.\n"
    for command, message in (
        ("queue:clear --runtemplate 999 --yes", "run template 999 not found"),
        ("queue:clear --company nosuch --yes", "'nosuch' not found"),
        ("credential:list --company nosuch", "company 'nosuch' not found"),
        ("prune --runtemplate 999 --dry-run", "run template 999 not found"),
        ("artifact:list --job 99", "job 99 not found"),
    ):
        res = cli(command)
        assert res.exit_code == 1 and message in res.stderr, (command, res.stderr)


def test_a_read_command_does_not_create_a_missing_sqlite_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "typo.sqlite"
    cli.env["DB_DATABASE"] = str(missing)
    for command in ("job:list", "queue:status", "status", "company:list", "job:show 1"):
        res = cli(command)
        assert res.exit_code == 1, command
        assert res.stderr == (
            f"error: database {missing} does not exist (from DB_DATABASE); check"
            " -e/DB_DATABASE, or create it with `multiflexi-cli db:migrate`\n"
        )
    assert not missing.exists()
    cli.ok("company:create --name First")  # a command that writes creates it
    assert missing.exists()


def test_a_read_command_creates_the_default_database_in_the_data_directory(
    cli: Cli, tmp_path: Path
) -> None:
    """Zero configuration: no DB_DATABASE, a new data directory, and the first command --
    one that only reads -- makes and migrates the database (README's quick start)."""
    data_dir = tmp_path / "fresh"
    cli.env = {"MULTIFLEXI_DATA_DIR": str(data_dir)}
    res = cli.ok("status")
    assert "does not exist" not in res.stderr
    assert (data_dir / "multiflexi.sqlite").exists()
    assert cli.ok("job:list").stdout == "No jobs found.\n"
    assert cli.json("status")["database"]["up_to_date"] is True


def test_a_broken_env_file_line_is_named(cli: Cli, tmp_path: Path) -> None:
    env = tmp_path / "broken.env"
    env.write_text("DB_CONNECTION=sqlite\n# a comment\nthis line is broken\n")
    res = cli(f"job:list -e {env}")
    assert res.exit_code == 1
    assert res.stderr == f"error: {env}, line 3: not KEY=VALUE: 'this line is broken'\n"


def test_cron_nicknames_are_accepted(cli: Cli, sqlite_db: Database) -> None:
    app_id, company_id, _ = make_setup(sqlite_db)
    for nick, fields in (("@daily", "0 0 * * *"), ("@hourly", "0 * * * *")):
        rt = cli.json(f"run-template:create --app-id {app_id} --company {company_id} --cron {nick}")
        assert cli.json(f"run-template:get {rt['runtemplate_id']}")["cron"] == fields
    bad = cli(f"run-template:create --app-id {app_id} --company {company_id} --cron @reboot")
    assert bad.exit_code == 1 and "has 1 field" in bad.stderr


#: Commands that need no argument: each prints one JSON document with -f json.
NO_ARGUMENT = (
    "action:list", "application:list", "company:list", "company-app:list", "credential:list",
    "credential-type:list", "run-template:list", "job:list", "queue:list", "queue:status",
    "status", "metrics", "storage:usage", "db:status", "prune --dry-run", "prune",
    "queue:fix --dry-run", "housekeeping --dry-run", "queue:process", "queue:clear --yes", "job",
)  # fmt: skip


@pytest.mark.parametrize("command", NO_ARGUMENT)
def test_every_command_honours_json(cli: Cli, sqlite_db: Database, command: str) -> None:
    import json

    make_setup(sqlite_db)
    res = cli(f"{command} -f json")
    assert res.exit_code == 0, res.stderr
    json.loads(res.stdout)


def test_json_is_refused_where_the_output_is_raw_bytes(cli: Cli) -> None:
    for command in ("artifact:get 1 --output -", "artifact:save --id 1 --file -"):
        res = cli(f"{command} -f json")
        assert res.exit_code == 2 and "-f json is not available" in res.stderr, command

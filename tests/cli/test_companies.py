"""company:*, company:env:* and company-app:* through the real CLI entry point."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy import func, select

from multiflexi.companies.service import company_env_layer, get_company
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Base,
    Company,
    CompanyApp,
    Job,
    RunTemplate,
    ScheduleEntry,
)


def make_app(db: Database, name: str = "Importer", uuid: str | None = None) -> int:
    with db.session() as s:
        app = App(name=name, executable="/bin/true", uuid=uuid or str(uuid4()))
        s.add(app)
        s.flush()
        return app.id


def make_job(db: Database, rt_id: int, status: str, queued: bool = False) -> int:
    from datetime import UTC, datetime

    with db.session() as s:
        rt = s.get_one(RunTemplate, rt_id)
        job = Job(app_id=rt.app_id, company_id=rt.company_id, runtemplate_id=rt.id, status=status)
        s.add(job)
        s.flush()
        if queued:
            s.add(ScheduleEntry(job=job.id, after=datetime.now(UTC)))
        return job.id


def counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            t.name: s.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


# -- company:* --------------------------------------------------------------------------


def test_create_derives_a_readable_unique_slug_and_get_finds_it_every_way(cli: Any) -> None:
    first = cli.json("company:create", "--name", "Acme Corp", "--ic", "12345678")
    assert first["created"] is True
    assert first["company"]["slug"] == "acme_corp"
    second = cli.json("company:create", "--name", "Acme-Corp")
    assert second["company"]["slug"] == "acme_corp_2"
    accented = cli.ok("company:create", "--name", "Účetní s.r.o.")
    assert "slug ucetni_s_r_o" in accented.stdout

    cid = first["company_id"]
    assert cli.json("company:get", cid)["name"] == "Acme Corp"
    assert cli.json("company:get", "--id", cid)["slug"] == "acme_corp"
    assert cli.json("company:get", "--slug", "acme_corp_2")["name"] == "Acme-Corp"
    assert cli.json("company:get", "--name", "Účetní s.r.o.")["slug"] == "ucetni_s_r_o"
    assert cli.json("company:get", "--ic", "12345678")["id"] == cid
    rows = cli.json("company:list")
    assert [r["slug"] for r in rows] == ["acme_corp", "acme_corp_2", "ucetni_s_r_o"]
    text = cli.ok("companies:list").stdout
    assert "acme_corp_2" in text.splitlines()[2]


def test_create_with_all_fields_and_explicit_slug(cli: Any) -> None:
    data = cli.json(
        *[
            "company:create",
            "--name",
            "Beta",
            "--slug",
            "beta-x",
            "--email",
            "ops@beta.cz",
            "--zabbix-host",
            "beta.zabbix",
            "--enabled",
            "false",
        ]
    )
    company = data["company"]
    assert (company["slug"], company["email"], company["zabbix_host"]) == (
        "beta-x",
        "ops@beta.cz",
        "beta.zabbix",
    )
    assert company["enabled"] is False


def test_wrong_input_is_refused_and_leaves_the_database_as_it_was(
    cli: Any, sqlite_db: Database
) -> None:
    cli.ok("company:create", "--name", "Acme Corp")
    before = counts(sqlite_db)
    cases = [
        (("company:create", "--name", "ACME corp"), "company with name 'ACME corp' already exists"),
        (
            ("company:create", "--name", "X", "--slug", "acme_corp"),
            "slug 'acme_corp' already exists",
        ),
        (("company:create", "--name", "X", "--slug", "Bad Slug"), "invalid slug 'Bad Slug'"),
        (("company:create", "--name", "X", "--email", "nope"), "invalid e-mail address"),
        (
            ("company:create", "--name", "X", "--enabled", "perhaps"),
            "--enabled must be true or false",
        ),
        (("company:get", "99"), "company 99 not found"),
        (("company:get", "--slug", "nope"), "no company with slug 'nope'"),
        (("company:update", "--id", "99", "--name", "Z"), "company 99 not found"),
        (("company:remove", "--id", "99"), "company 99 not found"),
        (("company:get", "abc"), "no company with slug 'abc'"),  # an id or a slug
    ]
    for args, message in cases:
        res = cli(*args)
        assert res.exit_code == 1, args
        assert message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
    assert counts(sqlite_db) == before


def test_misuse_exits_2(cli: Any) -> None:
    assert cli("company:create").exit_code == 2
    assert cli("company:get").exit_code == 2
    assert cli("company:update").exit_code == 2
    assert cli("company:env:set", "A=1").exit_code == 2  # no --id
    assert cli("company:env:set", "--id", "1", "NOEQUALS").exit_code == 2


def test_json_errors_have_status_and_message(cli: Any) -> None:
    res = cli("company:get", "--id", "7", "-f", "json")
    assert res.exit_code == 1
    assert res.json() == {"status": "error", "message": "company 7 not found"}


def test_update_reports_changes_and_no_changes(cli: Any) -> None:
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    cli.ok("company:create", "--name", "Other")
    data = cli.json("company:update", cid, "--name", "Acme Ltd", "--enabled", "no")
    assert data["updated"] is True
    assert data["changes"] == ["name", "enabled"]
    assert data["company"]["slug"] == "acme"  # slugs are stable identifiers
    assert data["company"]["updated"] is not None
    same = cli.json("company:update", "--id", cid, "--name", "Acme Ltd")
    assert same["updated"] is False and same["message"] == "No changes detected"
    res = cli("company:update", "--id", cid, "--name", "other")
    assert res.exit_code == 1 and "already exists" in res.stderr
    assert cli.json("company:update", cid, "--slug", "acme-ltd")["company"]["slug"] == "acme-ltd"


def test_times_are_shown_in_the_configured_time_zone(cli: Any) -> None:
    cli.env["MULTIFLEXI_TIMEZONE"] = "Asia/Kolkata"
    created = cli.json("company:create", "--name", "Acme")["company"]["created"]
    assert created.endswith("+05:30")


def test_remove_refuses_with_run_templates_unless_forced(cli: Any, sqlite_db: Database) -> None:
    app = make_app(sqlite_db)
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    rt = cli.json("company-app:assign", "--company_id", cid, "--app_id", app)["runtemplate_id"]
    cli.ok("company:env:set", "--id", cid, "A=1")
    before = counts(sqlite_db)
    res = cli("company:remove", "--id", cid)
    assert res.exit_code == 1
    assert f"has 1 run template(s) ({rt}); add --force" in res.stderr
    assert counts(sqlite_db) == before
    data = cli.json("company:remove", "--id", cid, "--force")
    assert data == {"company_id": cid, "removed": True, "removed_runtemplates": [rt]}
    after = counts(sqlite_db)
    assert (after["company"], after["runtemplate"], after["companyenv"], after["companyapp"]) == (
        0,
        0,
        0,
        0,
    )
    assert after["apps"] == 1


def test_remove_refuses_while_the_company_has_jobs_even_with_force(
    cli: Any, sqlite_db: Database
) -> None:
    app = make_app(sqlite_db)
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    rt = cli.json("company-app:assign", "--company_id", cid, "--app_id", app)["runtemplate_id"]
    make_job(sqlite_db, rt, "success")
    before = counts(sqlite_db)
    res = cli("company:remove", "--id", cid, "--force")
    assert res.exit_code == 1
    assert "has 1 job(s); jobs are kept as audit records" in res.stderr
    assert counts(sqlite_db) == before


# -- company:env:* ----------------------------------------------------------------------


def test_environment_set_list_unset_and_layer(cli: Any, sqlite_db: Database) -> None:
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    cli.ok("company:env:set", "--id", cid, "ABRAFLEXI_URL=https://a.cz", "ABRAFLEXI_PASSWORD=pw")
    cli.ok("company:env:set", "--company-id", cid, "ABRAFLEXI_URL=https://b.cz", "EMPTY=")
    rows = cli.json("company:env:list", "--id", cid)
    assert rows == [
        {"name": "ABRAFLEXI_PASSWORD", "value": "••••••••", "secret": True},
        {"name": "ABRAFLEXI_URL", "value": "https://b.cz", "secret": False},
        {"name": "EMPTY", "value": "", "secret": False},
    ]
    assert "pw" not in cli.ok("company:env:list", "--id", cid).stdout.split()
    revealed = cli.json("company:env:list", "--id", cid, "--reveal")
    assert revealed[0]["value"] == "pw"

    with sqlite_db.read() as s:
        layer = company_env_layer(s, get_company(s, cid))
    assert [(v.name, v.value, v.source, v.secret) for v in layer] == [
        ("ABRAFLEXI_PASSWORD", "pw", f"company:{cid}", True),
        ("ABRAFLEXI_URL", "https://b.cz", f"company:{cid}", False),
        ("EMPTY", "", f"company:{cid}", False),
    ]

    assert cli.json("company:env:unset", "--id", cid, "EMPTY")["unset"] == ["EMPTY"]
    before = counts(sqlite_db)
    res = cli("company:env:unset", "--id", cid, "ABRAFLEXI_URL", "NOPE")
    assert res.exit_code == 1 and "has no variable NOPE" in res.stderr
    assert cli("company:env:set", "--id", cid, "OK=1", "=2").exit_code == 2
    assert cli("company:env:list", "--id", 99).exit_code == 1
    assert counts(sqlite_db) == before
    # A name a shell cannot use is still a name a process takes (published apps use them).
    cli.ok("company:env:set", "--id", cid, "BANKA+=2")
    assert "BANKA+" in [r["name"] for r in cli.json("company:env:list", "--id", cid)]


# -- company-app:* ----------------------------------------------------------------------


def test_assign_creates_a_default_run_template_once(cli: Any, sqlite_db: Database) -> None:
    app = make_app(sqlite_db, "Bank Import", uuid="6f1c7a3e-0000-4000-8000-000000000001")
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    data = cli.json(
        "company-app:assign",
        "--company-id",
        cid,
        "--app-uuid",
        "6f1c7a3e-0000-4000-8000-000000000001",
    )
    assert data["status"] == "success" and data["app_id"] == app
    with sqlite_db.read() as s:
        rt = s.get_one(RunTemplate, data["runtemplate_id"])
        assert (rt.name, rt.interv, rt.company_id, rt.app_id) == ("Bank Import", "n", cid, app)
    again = cli("company-app:assign", "--company_id", cid, "--app_id", app)
    assert again.exit_code == 0
    assert "already assigned" in again.stdout
    assert counts(sqlite_db)["runtemplate"] == 1

    rows = cli.json("company-app:list", "--company_id", cid)
    assert rows[0]["app_name"] == "Bank Import"
    assert rows[0]["runtemplate_ids"] == [data["runtemplate_id"]]
    assert cli.json("company-app:list", "--app_id", app)[0]["company_slug"] == "acme"
    assert cli.ok("companyapp:list").stdout.count("Bank Import") == 1


def test_assign_with_unknown_company_or_app_changes_nothing(cli: Any, sqlite_db: Database) -> None:
    app = make_app(sqlite_db)
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    before = counts(sqlite_db)
    assert (
        "company 42 not found"
        in cli("company-app:assign", "--company_id", 42, "--app_id", app).stderr
    )
    assert (
        "application 42 not found"
        in cli("company-app:assign", "--company_id", cid, "--app_id", 42).stderr
    )
    assert (
        "no application with UUID"
        in cli("company-app:assign", "--company_id", cid, "--app_uuid", "x").stderr
    )
    assert cli("company-app:assign", "--company_id", cid).exit_code == 2
    assert cli("company-app:assign", "--app_id", app).exit_code == 2
    assert counts(sqlite_db) == before


def test_unassign_deletes_the_pair_run_templates_and_cancels_waiting_jobs(
    cli: Any, sqlite_db: Database
) -> None:
    app = make_app(sqlite_db)
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    rt = cli.json("company-app:assign", "--company_id", cid, "--app_id", app)["runtemplate_id"]
    done = make_job(sqlite_db, rt, "success")
    waiting = make_job(sqlite_db, rt, "scheduled", queued=True)
    data = cli.json("company-app:unassign", "--company_id", cid, "--app_id", app)
    assert data["removed_runtemplates"] == [rt]
    with sqlite_db.read() as s:
        assert s.scalars(select(CompanyApp)).all() == []
        assert s.get(RunTemplate, rt) is None
        finished = s.get_one(Job, done)
        assert (finished.status, finished.runtemplate_id) == ("success", None)
        cancelled = s.get_one(Job, waiting)
        assert (cancelled.status, cancelled.reason) == ("cancelled", "run template deleted")
        assert s.scalars(select(ScheduleEntry)).all() == []
    res = cli("company-app:unassign", "--company_id", cid, "--app_id", app)
    assert (
        res.exit_code == 1 and f"application {app} is not assigned to company {cid}" in res.stderr
    )


def test_unassign_is_refused_while_a_job_runs(cli: Any, sqlite_db: Database) -> None:
    app = make_app(sqlite_db)
    cid = cli.json("company:create", "--name", "Acme")["company_id"]
    rt = cli.json("company-app:assign", "--company_id", cid, "--app_id", app)["runtemplate_id"]
    job = make_job(sqlite_db, rt, "running")
    before = counts(sqlite_db)
    res = cli("company-app:unassign", "--company_id", cid, "--app_id", app)
    assert res.exit_code == 1
    assert f"job(s) {job} of run template(s) {rt} are running" in res.stderr
    assert counts(sqlite_db) == before
    with sqlite_db.read() as s:
        assert s.get_one(Company, cid).name == "Acme"

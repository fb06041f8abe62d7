"""credential:*, credential-type:* and run-template credential bindings, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from multiflexi.secrets import NOT_SET, REDACTED
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Company,
    CreData,
    Credential,
    CredentialType,
    CrTypeField,
    RunTemplate,
    RunTplCred,
)

UPSTREAM = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "upstream-tests"
SQLSERVER = str(UPSTREAM / "sqlserver.credprototype.json")
ENVFILE = str(UPSTREAM / "envfile.credprototype.json")
SECRET = "Tr0ub4dor&3-clear-text"
SQL_VALUES = [
    "--field", "DB_CONNECTION=sqlsrv", "--field", "DB_HOST=db.example.com",
    "--field", "DB_DATABASE=ledger", "--field", "DB_USERNAME=ledger",
    "--field", f"DB_PASSWORD={SECRET}",
]  # fmt: skip


def seed(db: Database) -> dict[str, int]:
    """Companies acme and beta, each with a run template, made with the models directly."""
    with db.session() as s:
        acme, beta = Company(name="Acme", slug="acme"), Company(name="Beta", slug="beta")
        app = App(name="probe", executable="env")
        s.add_all([acme, beta, app])
        s.flush()
        rt, rt_beta = (RunTemplate(app_id=app.id, company_id=c.id, name="rt") for c in (acme, beta))
        s.add_all([rt, rt_beta])
        s.flush()
        return {"acme": acme.id, "beta": beta.id, "rt": rt.id, "rt_beta": rt_beta.id}


def counts(db: Database) -> dict[str, int]:
    models = (CredentialType, CrTypeField, Credential, CreData, RunTplCred)
    with db.read() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0 for m in models}


@pytest.fixture
def world(cli: Any, sqlite_db: Database) -> dict[str, int]:
    """Seeded companies, the SQLServer type imported, and one credential of acme."""
    ids = seed(sqlite_db)
    ids["sql"] = cli.json("credential-type:import-json", "--file", SQLSERVER)["credential_type_id"]
    created = cli.json("credential:create", "--name", "ledger", "--company", "acme", "--type",
                       "SQLServer", *SQL_VALUES)  # fmt: skip
    ids["cred"] = created["credential_id"]
    return ids


def test_types_import_from_upstream_prototypes_and_are_listed(cli: Any) -> None:
    first = cli.json("credential-type:import-json", "--file", SQLSERVER)
    assert first["status"] == "success" and first["created"] is True
    assert first["code"] == "SQLServer" and "DB_PASSWORD" in first["fields"]
    assert cli.json("credential-type:import-json", "--file", SQLSERVER)["created"] is False
    cli.ok("credential-type:import-json", "--file", ENVFILE)
    listed = cli.json("credential-type:list")
    assert [t["code"] for t in listed] == ["SQLServer", "EnvFile"]
    assert listed[0]["company_id"] is None
    assert "SQLServer" in cli.ok("credential-type:list").stdout
    assert [t["code"] for t in cli.json("credential-prototype:list")] == ["SQLServer", "EnvFile"]
    assert "EnvFile" in cli.ok("credtype list").stdout
    newest = cli.json("credential-type:list", "--limit", 1, "--order", "D")
    assert [t["code"] for t in newest] == ["EnvFile"]
    assert [t["code"] for t in cli.json("credential-type:list", "--offset", 1)] == ["EnvFile"]


def test_a_type_is_shown_by_id_uuid_or_code(cli: Any) -> None:
    type_id = cli.json("credential-type:import-json", "--file", SQLSERVER)["credential_type_id"]
    by_id = cli.json("credential-type:get", "--id", type_id)
    assert by_id == cli.json("credential-type:get", "--uuid", by_id["uuid"])
    assert by_id == cli.json("credential-type:get", "--code", "SQLServer")
    assert by_id == cli.json("credential-type:get", type_id)
    password = next(f for f in by_id["fields"] if f["keyword"] == "DB_PASSWORD")
    assert password["secret"] is True and password["required"] is True
    text = cli.ok("credential-type:get", "--code", "SQLServer").stdout
    assert "DB_PASSWORD" in text and "password" in text
    missing = cli("credential-type:get", "--code", "Nope")
    assert missing.exit_code == 1 and "not found" in missing.stderr
    assert cli("credential-type:get").exit_code == 2


def test_an_invalid_definition_reports_every_violation_and_changes_nothing(
    cli: Any, sqlite_db: Database, tmp_path: Path
) -> None:
    before = counts(sqlite_db)
    res = cli("credential-type:import-json", "--file", UPSTREAM / "test.credential-type.json")
    assert res.exit_code == 1
    assert "'version' is a required property" in res.stderr and "'id' was unexpected" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"$schema": "https://example.org/credential-prototype.json",
                               "code": "X1", "uuid": "u", "name": "X", "version": "1.0",
                               "fields": [{"keyword": "lower-case", "type": "blob"}]}))  # fmt: skip
    res = cli("credential-type:import-json", "--file", bad, "-f", "json")
    assert res.exit_code == 1 and res.json()["status"] == "error"
    assert "$.fields[0].type" in res.stderr and "$.fields[0].keyword" in res.stderr
    assert cli("credential-type:validate-json", "--file", bad).exit_code == 1
    assert cli.json("credential-type:validate-json", "--file", SQLSERVER)["valid"] is True
    assert counts(sqlite_db) == before


def test_a_type_is_created_from_options_globally_or_for_a_company(
    cli: Any, sqlite_db: Database
) -> None:
    ids = seed(sqlite_db)
    made = cli.json("credential-type:create", "--code", "Demo", "--name", "Demo",
                    "--field", "TOKEN:secret:required", "--field", "PORT:integer",
                    "--field", "MODE:string::secret")  # fmt: skip
    shown = cli.json("credential-type:get", "--id", made["credential_type_id"])
    fields = {f["keyword"]: f for f in shown["fields"]}
    assert fields["TOKEN"]["secret"] and fields["TOKEN"]["required"]
    assert fields["PORT"]["type"] == "integer" and not fields["PORT"]["secret"]
    assert fields["MODE"]["secret"] and shown["company_id"] is None
    own = cli.json(
        "credential-type:create", "--code", "BetaOnly", "--name", "B", "--company", "beta"
    )
    assert cli.json("credential-type:get", own["credential_type_id"])["company_id"] == ids["beta"]
    assert [t["code"] for t in cli.json("credential-type:list", "--company", "acme")] == ["Demo"]
    before = counts(sqlite_db)
    dup = cli("credential-type:create", "--code", "Demo", "--name", "Again")
    assert dup.exit_code == 1 and "already has code 'Demo'" in dup.stderr
    assert (
        cli("credential-type:create", "--code", "X2", "--name", "X", "--field", "A:blob").exit_code
        == 1
    )
    assert cli("credential-type:create", "--name", "no code").exit_code == 2
    assert counts(sqlite_db) == before


def test_a_credential_is_created_listed_shown_and_redacted(cli: Any, world: dict[str, int]) -> None:
    cred = cli.json("credential:get", "--id", world["cred"])
    assert cred["company"] == "acme" and cred["credential_type"] == "SQLServer"
    assert cred["fields"]["DB_HOST"] == "db.example.com"
    assert cred["fields"]["DB_PASSWORD"] == REDACTED
    assert cred["fields"]["DB_PORT"] is None
    text = cli.ok("credential:get", world["cred"]).stdout
    assert REDACTED in text and "db.example.com" in text
    listed = cli.json("credential:list", "--company", "acme")
    assert [c["id"] for c in listed] == [world["cred"]]
    assert listed[0]["fields"]["DB_PASSWORD"] == REDACTED
    assert "ledger" in cli.ok("credential:list").stdout
    assert cli.json("credential:list", "--company", "beta") == []
    assert [c["id"] for c in cli.json("credential:list", "--type", "SQLServer")] == [world["cred"]]
    for output in (cli.ok("credential:list").stdout, text, json.dumps(cred)):
        assert SECRET not in output


def test_upstream_option_spellings_are_accepted(cli: Any, world: dict[str, int]) -> None:
    for i, (company, ctype) in enumerate(
        [("--company_id", "--credential_type_id"), ("--company-id", "--credential-type-id")]
    ):
        made = cli.json("credential:create", "--name", f"n{i}", company, world["acme"], ctype,
                        world["sql"], *SQL_VALUES[:-2], "--field", "DB_PASSWORD:a:b=c")  # fmt: skip
        revealed = cli.json("credential:get", made["credential_id"], "--reveal", "--yes")
        assert revealed["fields"]["DB_PASSWORD"] == "a:b=c"
    legacy = cli.json("runtemplate:assign-credential", "--runtemplate_id", world["rt"],
                      "--credential-id", world["cred"])  # fmt: skip
    assert legacy["status"] == "ok"


def test_reveal_asks_first_and_shows_clear_text_only_when_confirmed(
    cli: Any, world: dict[str, int]
) -> None:
    refused = cli("credential:get", world["cred"], "--reveal", input="y\n")
    assert refused.exit_code == 1 and "--yes" in refused.stderr and SECRET not in refused.stdout
    shown = cli.json("credential:get", world["cred"], "--reveal", "--yes")
    assert shown["fields"]["DB_PASSWORD"] == SECRET
    assert shown["fields"]["DB_OPTIONS"] is None
    assert SECRET in cli.ok("credential:get", world["cred"], "--reveal", "-y").stdout


def test_the_database_file_never_holds_a_secret_in_clear_text(
    cli: Any, world: dict[str, int], sqlite_db: Database
) -> None:
    cli.ok("credential:update", world["cred"], "--field", f"DB_PASSWORD={SECRET}-2")
    path = sqlite_db.settings.sqlite_path
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    assert files
    for file in files:
        assert SECRET.encode() not in file.read_bytes(), file
    with sqlite_db.read() as s:
        values = list(s.scalars(select(CreData.value)))
    assert values and not any(SECRET in v for v in values)


def test_a_wrong_master_key_is_one_clear_error(cli: Any, world: dict[str, int]) -> None:
    # The world's secrets were sealed with the key file of the data dir.
    cli.env["ENCRYPTION_MASTER_KEY"] = "second-key"
    res = cli("credential:get", world["cred"], "--reveal", "--yes")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "master key mismatch" in line and "(from ENCRYPTION_MASTER_KEY)" in line
    refused = cli("credential:create", "--name", "keyed", "--company", "acme",
                  "--type", "SQLServer", *SQL_VALUES)  # fmt: skip
    assert refused.exit_code == 1 and refused.stderr == res.stderr
    assert cli.json("credential:get", world["cred"])["fields"]["DB_PASSWORD"] == REDACTED


def test_update_changes_values_keeps_blank_secrets_and_unsets(
    cli: Any, world: dict[str, int]
) -> None:
    cid = world["cred"]
    res = cli.json("credential:update", "--id", cid, "--name", "renamed", "--field", "DB_PASSWORD=",
                   "--field", "DB_PORT=1433", "--field", "DB_OPTIONS=encrypt=false")  # fmt: skip
    assert res["updated"] is True and res["changed"] == ["DB_PORT", "DB_OPTIONS", "name"]
    cli.ok("credential:update", cid, "--unset", "DB_OPTIONS")
    shown = cli.json("credential:get", cid, "--reveal", "--yes")
    assert shown["name"] == "renamed" and shown["fields"]["DB_PASSWORD"] == SECRET
    assert shown["fields"]["DB_PORT"] == "1433" and shown["fields"]["DB_OPTIONS"] is None
    assert cli.json("credential:update", cid)["updated"] is False


BAD_UPDATES = [
    (
        ["--field", "NOPE=1"],
        1,
        "unknown field NOPE for credential type SQLServer; valid: DB_CONNECTION",
    ),
    (["--field", "DB_PORT=abc"], 1, "DB_PORT (integer): expected an integer"),
    (["--field", "DB_HOST="], 1, "cannot be emptied: DB_HOST"),
    (["--unset", "DB_USERNAME"], 1, "cannot be emptied: DB_USERNAME"),
    (["--field", "broken"], 2, "expected --field KEY=VALUE"),
    (["--name", "other", "--field", "DB_PORT=x"], 1, "DB_PORT"),
]

BAD_CREATES = [
    (["--company", "acme", "--type", "SQLServer"], 2, "missing --name"),
    (["--name", "x", "--type", "SQLServer"], 2, "missing --company"),
    (["--name", "x", "--company", "acme"], 2, "missing --credential-type-id"),
    (["--name", "x", "--company", "nobody", "--type", "SQLServer"], 1, "company 'nobody' not found"),
    (["--name", "x", "--company", "99999999999", "--type", "SQLServer"], 1, "not found"),
    (["--name", "x", "--company", "acme", "--type", "Nope"], 1, "credential type with code 'Nope' not found"),
    (["--name", "x", "--company", "acme", "--type", "SQLServer", "--field", "DB_HOST=h"], 1,
     "required field(s) of SQLServer not set: DB_CONNECTION, DB_DATABASE"),
    (["--name", "ledger", "--company", "acme", "--type", "SQLServer", *SQL_VALUES], 1,
     "already has a credential named 'ledger'"),
    (["--name", "x", "--company", "acme", "--type", "SQLServer", *SQL_VALUES, "--field", "DB_PORT=p"],
     1, "expected an integer"),
    (["--name", "x", "--company", "acme", "--type", "SQLServer", *SQL_VALUES, "--field", "FOO=1"],
     1, "unknown field FOO"),
    (["--name", "x", "--company", "acme", "--credential-type-id", "abc"], 1, "whole number"),
]  # fmt: skip


def test_a_bad_update_changes_nothing(cli: Any, world: dict[str, int], sqlite_db: Database) -> None:
    before = counts(sqlite_db)
    shown = cli.json("credential:get", world["cred"], "--reveal", "--yes")
    for args, code, message in BAD_UPDATES:
        res = cli("credential:update", world["cred"], *args)
        assert (res.exit_code, message in res.stderr) == (code, True), (args, res.stderr)
        assert counts(sqlite_db) == before
    assert cli.json("credential:get", world["cred"], "--reveal", "--yes") == shown


def test_a_bad_create_changes_nothing(cli: Any, world: dict[str, int], sqlite_db: Database) -> None:
    before = counts(sqlite_db)
    for args, code, message in BAD_CREATES:
        res = cli("credential:create", *args)
        assert (res.exit_code, message in res.stderr) == (code, True), (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
        assert counts(sqlite_db) == before


def test_bindings_assign_list_replace_and_unassign(cli: Any, world: dict[str, int]) -> None:
    rt, cid = world["rt"], world["cred"]
    first = cli.json("run-template:assign-credential", "--id", rt, "--credential_id", cid)
    assert first == {"status": "ok", "runtemplate_id": rt, "credential_id": cid,
                     "prototype": "SQLServer", "assigned": True, "replaced": []}  # fmt: skip
    other = cli.json("credential:create", "--name", "second", "--company", "acme", "--type",
                     "SQLServer", *SQL_VALUES)["credential_id"]  # fmt: skip
    text = cli.ok("run-template:assign-credential", "--id", rt, "--credential_id", other).stdout
    assert f"replacing #{cid}" in text
    listed = cli.json("run-template:list-credentials", "--id", rt)
    assert [c["id"] for c in listed] == [other]
    assert "second" in cli.ok("run-template:list-credentials", rt).stdout
    missing = cli("run-template:unassign-credential", "--id", rt, "--credential_id", cid)
    assert missing.exit_code == 1 and "not assigned" in missing.stderr
    cli.ok("run-template:unassign-credential", "--id", rt, "--credential_id", other)
    assert cli.json("run-template:list-credentials", "--id", rt) == []


def test_bindings_refuse_other_companies_and_unknown_ids(
    cli: Any, world: dict[str, int], sqlite_db: Database
) -> None:
    before = counts(sqlite_db)
    res = cli(
        "run-template:assign-credential", "--id", world["rt_beta"], "--credential_id", world["cred"]
    )
    assert res.exit_code == 1 and "belongs to company" in res.stderr
    res = cli("run-template:assign-credential", "--id", 999, "--credential_id", world["cred"])
    assert res.exit_code == 1 and "run template 999 not found" in res.stderr
    res = cli("run-template:assign-credential", "--id", world["rt"], "--credential_id", 999)
    assert res.exit_code == 1 and "credential 999 not found" in res.stderr
    assert cli("run-template:assign-credential", "--id", world["rt"]).exit_code == 2
    assert cli("run-template:list-credentials", "--id", 999).exit_code == 1
    assert counts(sqlite_db) == before


def test_removing_a_credential_unbinds_it_and_frees_its_type(
    cli: Any, world: dict[str, int], sqlite_db: Database
) -> None:
    cli.ok("run-template:assign-credential", "--id", world["rt"], "--credential_id", world["cred"])
    refused = cli("credential-type:delete", "--id", world["sql"])
    assert refused.exit_code == 1 and "is used by 1 credential(s)" in refused.stderr
    removed = cli.json("credential:remove", "--id", world["cred"])
    assert removed["removed"] is True and removed["unassigned_runtemplates"] == [world["rt"]]
    assert cli.json("run-template:list-credentials", "--id", world["rt"]) == []
    assert cli("credential:remove", "--id", world["cred"]).exit_code == 1
    assert cli.json("credential-type:delete", "--id", world["sql"])["deleted"] is True
    assert counts(sqlite_db) == {t: 0 for t in counts(sqlite_db)}


def test_secret_fields_unset_show_not_set(cli: Any, sqlite_db: Database) -> None:
    seed(sqlite_db)
    cli.ok("credential-type:create", "--code", "Tok", "--name", "Tok", "--field", "TOKEN:secret")
    made = cli.json("credential:create", "--name", "t", "--company", "acme", "--type", "Tok")
    shown = cli.json("credential:get", made["credential_id"])
    assert shown["fields"] == {"TOKEN": NOT_SET}

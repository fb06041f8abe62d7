"""application:* through the real entry point, in text and JSON, against a fresh SQLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from multiflexi.storage.database import Database
from multiflexi.storage.models import App, AppArtifact, AppExitCode, Company, ConfField, RunTemplate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "apps"
REAL = FIXTURES / "real"
PROBE = REAL / "multiflexi-probe__probe.multiflexi.app.json"
BROKEN = REAL / "abraflexi-reminder__abraflexi-reminder.multiflexi.app.json"
LENIENT_ONLY = REAL / "kb-statement-tools__rb_statement_mailer.multiflexi.app.json"
SCHEMA_INVALID = FIXTURES / "upstream-tests" / "test.schema-invalid.multiflexi.app.json"
VALID = FIXTURES / "upstream-tests" / "app-with-exitcodes.app.json"
RECORD_KEYS = [
    "id", "uuid", "code", "name", "description", "version", "executable", "cmdparams", "setup",
    "deploy", "homepage", "image", "ociimage", "requirements", "tags", "resultfile", "deffile",
    "enabled", "created", "updated",
]  # fmt: skip


def rows(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
            for m in (App, ConfField, AppArtifact, AppExitCode)
        }


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


# -- import ---------------------------------------------------------------------------


def test_import_creates_then_updates_and_warns_on_stderr(cli: Any) -> None:
    first = cli.ok("application:import-json", "--file", PROBE)
    assert first.stdout.startswith("Application #1 'MultiFlexi Probe' created from ")
    assert "warning: $.cmdparamsTemplate: ${VAR} placeholders stored as {VAR}" in first.stderr
    second = cli.ok("application:import-json", "--file", PROBE)
    assert "Application #1 'MultiFlexi Probe' updated" in second.stdout


def test_import_in_json_lists_the_warnings(cli: Any) -> None:
    data = cli.json("application:import-json", "--file", LENIENT_ONLY)
    assert list(data) == ["status", "file", "id", "uuid", "code", "name", "warnings"]
    assert data["status"] == "created" and data["name"] == "RB statement mailer"
    assert {"path": "$.ociimage", "message": "empty string read as no image"} in data["warnings"]
    assert {
        "path": "$.environment.STATEMENTS_DIR.type",
        "message": "'directory' read as 'file-path'",
    } in data["warnings"]


def test_the_broken_file_is_refused_with_its_location_and_nothing_is_stored(
    cli: Any, sqlite_db: Database
) -> None:
    res = cli("application:import-json", "--file", BROKEN)
    assert res.exit_code == 1
    assert_one_error_line(
        res.stderr, "line 255 column 6: trailing comma before '}' at line 256 column 3"
    )
    assert rows(sqlite_db)["apps"] == 0


def test_strict_import_refuses_what_lenient_import_accepts(cli: Any, sqlite_db: Database) -> None:
    cli.ok("application:import-json", "--file", PROBE)
    before = rows(sqlite_db)
    res = cli("application:import-json", "--file", LENIENT_ONLY, "--strict")
    assert res.exit_code == 1
    assert_one_error_line(
        res.stderr, "not valid against the schema", "$.ociimage", "$.requirements"
    )
    assert rows(sqlite_db) == before
    cli.ok("application:import-json", "--file", LENIENT_ONLY)
    assert rows(sqlite_db)["apps"] == before["apps"] + 1
    assert cli.json("application:import-json", "--file", VALID, "--strict")["warnings"] == []


def test_a_refused_import_reports_in_json_too(cli: Any) -> None:
    res = cli("application:import-json", "--file", SCHEMA_INVALID, "-f", "json")
    assert res.exit_code == 1
    assert res.json()["status"] == "error"
    assert (
        "$.environment.INVALID_ENV_STRUCTURE: a declaration must be an object"
        in res.json()["message"]
    )


def test_import_needs_an_existing_file(cli: Any, tmp_path: Path) -> None:
    res = cli("application:import-json", "--file", tmp_path / "none.json")
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "file not found")
    assert cli("application:import-json").exit_code == 2


def test_legacy_spellings_reach_the_same_command(cli: Any) -> None:
    cli.ok("application", "import-json", "--file", PROBE)
    assert [a["name"] for a in cli.json("app:list")] == ["MultiFlexi Probe"]


# -- validate -------------------------------------------------------------------------


def test_validate_reports_a_valid_file_with_exit_0(cli: Any) -> None:
    assert cli.ok("application:validate-json", "--file", VALID).stdout.strip().endswith(": valid")
    data = cli.json("application:validate-json", "--file", VALID)
    assert data == {"valid": True, "file": str(VALID), "violations": []}


def test_validate_reports_every_violation_with_its_path_and_exit_1(cli: Any) -> None:
    res = cli("application:validate-json", "--file", SCHEMA_INVALID)
    assert res.exit_code == 1
    assert res.stdout.splitlines()[1:] == [
        "  $.environment.INVALID_ENV_STRUCTURE: 'should be array not object' is not of type 'object'",
        "  $.executable: 123 is not of type 'string'",
        "  $.requirements: {'should': 'be array or string, not object'} is not of type 'array'",
        "  $.uuid: 'test-schema-invalid-uuid-67890' is not a 'uuid'",
    ]
    data = cli("application:validate-json", "--file", SCHEMA_INVALID, "-f", "json").json()
    assert data["valid"] is False and len(data["violations"]) == 4
    assert data["violations"][1] == {
        "path": "$.executable",
        "message": "123 is not of type 'string'",
    }


def test_validate_is_strict_about_what_lenient_import_normalises(cli: Any) -> None:
    res = cli("application:validate-json", "--file", LENIENT_ONLY, "-f", "json")
    assert res.exit_code == 1
    assert [v["path"] for v in res.json()["violations"]] == [
        "$",
        "$.environment.STATEMENTS_DIR.type",
        "$.ociimage",
        "$.requirements",
    ]


def test_validate_reports_a_syntax_error_as_a_violation(cli: Any) -> None:
    res = cli("application:validate-json", "--file", BROKEN, "-f", "json")
    assert res.exit_code == 1
    assert res.json()["violations"] == [
        {
            "path": "$",
            "message": "line 255 column 6: trailing comma before '}' at line 256 column 3",
        }
    ]


# -- export and round trip ------------------------------------------------------------


def test_export_to_stdout_and_to_a_file_give_the_same_document_and_unknown_ids_are_not_found(
    cli: Any, tmp_path: Path
) -> None:
    cli.ok("application:import-json", "--file", PROBE)
    to_stdout = cli.ok("application:export-json", "--id", 1, "--file", "-").stdout
    out = tmp_path / "probe.json"
    data = cli.json("application:export-json", "1", "--file", out)
    assert data == {"exported": True, "id": 1, "file": str(out)}
    assert out.read_text(encoding="utf-8") == to_stdout
    document = json.loads(to_stdout)
    assert document["cmdparams"] == "{FILE_UPLOAD}"
    assert document["environment"]["APP_DEBUG"]["defval"] is False
    assert document["kubernetes"]["helm"]["releaseName"] == "multiflexi-probe"
    res = cli("application:export-json", "--id", 7)
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "no application with id 7")


def test_export_then_import_gives_the_identical_application(cli: Any, tmp_path: Path) -> None:
    for path in (PROBE, REAL / "abraflexi-isds__abraflexi-isds.multiflexi.app.json"):
        imported = cli.json("application:import-json", "--file", path)
        before = cli.json("application:get", imported["id"])
        exported = tmp_path / f"{imported['id']}.json"
        cli.ok("application:export-json", "--id", imported["id"], "--file", exported)
        again = cli.json("application:import-json", "--file", exported, "--strict")
        assert again["status"] == "updated"
        assert all("unknown key kept" in w["message"] for w in again["warnings"])
        after = cli.json("application:get", imported["id"])
        volatile = ("updated", "deffile")
        assert {k: v for k, v in after.items() if k not in volatile} == {
            k: v for k, v in before.items() if k not in volatile
        }


def test_list_pages_with_limit_and_offset(cli: Any) -> None:
    assert cli.json("application:list") == []
    for path in (PROBE, VALID, LENIENT_ONLY):
        cli.ok("application:import-json", "--file", path)
    assert [a["id"] for a in cli.json("application:list")] == [1, 2, 3]
    page = cli.json("application:list", "--limit", 1, "--offset", 1)
    assert [a["id"] for a in page] == [2] and list(page[0]) == RECORD_KEYS
    text = cli.ok("application:list").stdout.splitlines()
    assert text[0].split() == ["id", "code", "name", "version", "enabled", "uuid", "executable"]
    assert len(text) == 4


def test_get_finds_by_id_uuid_and_name_and_shows_declarations(cli: Any) -> None:
    cli.ok("application:import-json", "--file", VALID)
    by_id = cli.json("application:get", "--id", 1)
    assert cli.json("application:get", "1") == by_id
    assert cli.json("application:get", "--uuid", by_id["uuid"]) == by_id
    assert cli.json("application:get", "--name", "Example App with Exit Codes") == by_id
    assert list(by_id)[: len(RECORD_KEYS)] == RECORD_KEYS
    assert by_id["environment"]["EXAMPLE_OPTION"]["required"] is True
    assert by_id["exitCodes"]["3"] == {
        "description": "Connection error - failed to connect to service",
        "severity": "warning",
        "retry": True,
        "extra": {"translations": {"description": {
            "en": "Connection error - failed to connect to service",
            "cs": "Chyba připojení - nepodařilo se připojit ke službě",
        }}},
    }  # fmt: skip
    text = cli.ok("application:get", "1").stdout
    assert "Environment (1):" in text and "Exit codes (8):" in text


def test_get_redacts_defaults_of_secret_variables(cli: Any) -> None:
    cli.ok("application:import-json", "--file", PROBE)
    assert cli.json("application:get", 1)["environment"]["PASSWORD"]["defval"] == "••••••••"


def test_get_of_an_unknown_application_is_not_found_and_without_selector_misuse(cli: Any) -> None:
    res = cli("application:get", "--name", "nope")
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "no application with name 'nope'")
    assert cli("application:get").exit_code == 2
    assert cli("application:get", "abc").exit_code == 1


# -- create, update, delete -----------------------------------------------------------


def test_create_generates_uuid_and_code(cli: Any) -> None:
    data = cli.json(
        "application:create", "--name", "Backup Tool", "--executable", "backup",
        "--cmdparams", "--to ${TARGET}", "--appversion", "1.2", "--tags", "a,b", "--enabled", "false",
    )  # fmt: skip
    assert list(data) == RECORD_KEYS
    assert (data["code"], data["cmdparams"], data["version"]) == ("BTOOL", "--to {TARGET}", "1.2")
    assert data["tags"] == ["a", "b"] and data["enabled"] is False and len(data["uuid"]) == 36
    text = cli.ok("application:create", "--name", "Other", "--executable", "x").stdout
    assert text.startswith("Application created: #2 'Other' (code OTHER, uuid ")


def test_create_refuses_missing_fields_duplicates_and_bad_uuids(
    cli: Any, sqlite_db: Database
) -> None:
    assert cli("application:create", "--name", "A").exit_code == 2
    cli.ok("application:create", "--name", "A", "--executable", "a")
    res = cli("application:create", "--name", "A", "--executable", "b")
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "name 'A' already belongs to application #1")
    res = cli("application:create", "--name", "B", "--executable", "b", "--uuid", "nope")
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "uuid must be a UUID")
    assert rows(sqlite_db)["apps"] == 1


def test_update_changes_only_the_given_fields(cli: Any) -> None:
    created = cli.json("application:create", "--name", "A", "--executable", "a", "--homepage", "h")
    updated = cli.json(
        "application:update", "--uuid", created["uuid"], "--version", "2", "--enabled", "false"
    )
    assert (updated["version"], updated["enabled"], updated["homepage"]) == ("2", False, "h")
    assert (
        cli.ok("application:update", "1", "--enabled").stdout.strip()
        == "Application #1 'A' updated: enabled false -> true"
    )
    assert cli.json("application:get", 1)["enabled"] is True


def test_update_without_fields_or_target_is_misuse(cli: Any) -> None:
    cli.ok("application:create", "--name", "A", "--executable", "a")
    res = cli("application:update", "--id", 1)
    assert res.exit_code == 2
    assert_one_error_line(res.stderr, "nothing to update")
    assert cli("application:update", "--version", "2").exit_code == 2
    assert cli("application:update", "--id", 9, "--version", "2").exit_code == 1


def test_delete_removes_the_application(cli: Any, sqlite_db: Database) -> None:
    cli.ok("application:import-json", "--file", VALID)
    assert cli.json("application:delete", "--id", 1) == {
        "deleted": True,
        "id": 1,
        "name": "Example App with Exit Codes",
    }
    assert rows(sqlite_db) == {"apps": 0, "conffield": 0, "app_artifacts": 0, "app_exit_codes": 0}
    res = cli("application:delete", "1")
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "no application with id 1")


def test_delete_is_refused_while_a_run_template_uses_the_application(
    cli: Any, sqlite_db: Database
) -> None:
    cli.ok("application:import-json", "--file", VALID)
    with sqlite_db.session() as s:
        company = Company(name="ACME", slug="acme")
        s.add(company)
        s.flush()
        s.add(RunTemplate(app_id=1, company_id=company.id, name="nightly"))
    before = rows(sqlite_db)
    res = cli("application:delete", "--id", 1)
    assert res.exit_code == 1
    assert_one_error_line(res.stderr, "is used by 1 run template(s) (#1); delete them first")
    assert rows(sqlite_db) == before


def test_every_command_has_help_with_the_format_option(cli: Any) -> None:
    for verb in (
        "list",
        "get",
        "create",
        "update",
        "delete",
        "import-json",
        "export-json",
        "validate-json",
    ):
        assert "--format" in cli.ok(f"application:{verb}", "--help").stdout, verb

"""Credential field kinds, value checks and JSON definitions: pure code, no database."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from multiflexi.credentials.typejson import (
    DefinitionError,
    load_schema,
    parse_document,
    read_document,
)
from multiflexi.credentials.types import (
    FIELD_TYPES,
    FieldSpec,
    looks_secret,
    new_spec,
    option_values,
    parse_field_spec,
    value_problem,
)
from multiflexi.errors import Invalid, NotFound, UsageError

UPSTREAM = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "upstream-tests"
REFERENCE_SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "schema"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((UPSTREAM / name).read_text())
    return data


@pytest.mark.parametrize(
    ("field_type", "value", "ok"),
    [
        ("string", "anything at all", True),
        ("integer", "3306", True),
        ("integer", "-1", True),
        ("integer", "33.06", False),
        ("integer", "port", False),
        ("number", "3.5", True),
        ("number", "1e3", True),
        ("number", "nan", False),
        ("number", "three", False),
        ("boolean", "TRUE", True),
        ("boolean", "off", True),
        ("boolean", "maybe", False),
        ("email", "ops@example.com", True),
        ("email", "ops@", False),
        ("url", "https://fioapi.fio.cz/v1", True),
        ("url", "fioapi.fio.cz", False),
        ("password", "", True),
        ("textarea", "line1\nline2", True),
        ("file", "/etc/app/.env", True),
    ],
)
def test_values_are_checked_against_their_field_type(field_type: str, value: str, ok: bool) -> None:
    assert (value_problem(field_type, value) is None) is ok


def test_a_select_value_must_be_one_of_its_options() -> None:
    options = ("MySQL", "PostgreSQL")
    assert value_problem("select", "MySQL", options) is None
    problem = value_problem("select", "Oracle", options)
    assert problem is not None and "MySQL, PostgreSQL" in problem


def test_options_are_read_from_strings_or_value_label_objects() -> None:
    assert option_values(["a", "b"]) == ("a", "b")
    assert option_values([{"value": "x", "label": "X"}]) == ("x",)
    assert option_values(None) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TOKEN", FieldSpec("TOKEN")),
        ("TOKEN:secret", FieldSpec("TOKEN", "secret")),
        ("PORT:integer:required", FieldSpec("PORT", "integer", required=True)),
        ("KEY:string:required:secret", FieldSpec("KEY", "string", required=True, secret=True)),
        ("KEY:STRING:secret", FieldSpec("KEY", "string", secret=True)),
    ],
)
def test_field_specs_from_the_command_line(text: str, expected: FieldSpec) -> None:
    assert parse_field_spec(text) == expected


def test_password_and_secret_fields_are_secret_and_others_only_when_declared() -> None:
    assert FieldSpec("A", "password").is_secret
    assert FieldSpec("A", "secret").is_secret
    assert FieldSpec("A", "string", secret=True).is_secret
    assert not FieldSpec("A", "string").is_secret
    assert set(FIELD_TYPES) >= {"password", "secret", "select", "textarea", "file"}


def test_a_bad_field_spec_says_what_is_wrong() -> None:
    with pytest.raises(Invalid, match="unknown field type 'blob'"):
        parse_field_spec("KEY:blob")
    with pytest.raises(UsageError, match="unknown flag 'optional'"):
        parse_field_spec("KEY:string:optional")
    with pytest.raises(UsageError, match="KEY:TYPE"):
        parse_field_spec("bad=key:string")
    with pytest.raises(UsageError, match="KEY:TYPE"):
        parse_field_spec(":string")
    # A name a process takes, though a shell cannot use it (published apps have them).
    assert parse_field_spec("BANKA+:string").keyword == "BANKA+"


def test_a_spec_from_options_gets_a_uuid_and_rejects_duplicates() -> None:
    spec = new_spec("Demo", "Demo", [FieldSpec("A"), FieldSpec("B", "integer")])
    assert len(spec.uuid) == 36
    with pytest.raises(Invalid, match="duplicate 'A'"):
        new_spec("Demo", "Demo", [FieldSpec("A"), FieldSpec("A")])
    with pytest.raises(Invalid, match="code"):
        new_spec("x", "Demo", [])


def test_the_bundled_schemas_are_the_upstream_ones() -> None:
    if not REFERENCE_SCHEMAS.is_dir():
        pytest.skip("upstream reference schemas not available")
    for kind in ("credential-type", "credential-prototype"):
        upstream = json.loads((REFERENCE_SCHEMAS / f"{kind}.json").read_text())
        assert load_schema(kind) == upstream


def test_an_upstream_prototype_becomes_a_type_with_its_fields() -> None:
    spec = parse_document(load("sqlserver.credprototype.json"))
    assert (spec.code, spec.uuid, spec.name, spec.version) == (
        "SQLServer",
        "84c157ce-57d5-45cd-ae67-75fdfedab57f",
        "SQL Server",
        "1.0",
    )
    assert spec.url == "https://www.microsoft.com/sql-server"
    by_key = {f.keyword: f for f in spec.fields}
    assert list(by_key)[:2] == ["DB_CONNECTION", "DB_HOST"]
    assert by_key["DB_PASSWORD"].is_secret and by_key["DB_PASSWORD"].required
    assert by_key["DB_PORT"].type == "integer" and not by_key["DB_PORT"].required


def test_the_credential_type_shape_with_localized_names_and_options() -> None:
    data = load("test.credential-type.json")
    del data["id"]
    data["version"] = "1.0"
    spec = parse_document(data)
    assert spec.name == "Database Credentials"
    by_key = {f.keyword: f for f in spec.fields}
    assert by_key["DATABASE_TYPE"].options[0] == ("MySQL", "MySQL")
    assert by_key["DATABASE_TYPE"].default == "MySQL"
    assert by_key["DATABASE_PORT"].default == "3306"
    assert by_key["DATABASE_PORT"].type == "number"
    assert by_key["DATABASE_USER"].description == "The username for database authentication."


def test_every_violation_is_reported_with_its_path() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_document(load("test.credential-type.json"), "test.credential-type.json")
    err = caught.value
    assert "$: 'version' is a required property" in err.violations
    assert any("'id' was unexpected" in v for v in err.violations)
    assert "test.credential-type.json" in err.message and "\n" not in err.message


def test_a_document_is_judged_by_the_schema_it_declares() -> None:
    data = load("fiobank.credprototype.json")
    with pytest.raises(DefinitionError, match="credential-prototype") as caught:
        parse_document(data)
    paths = {v.split(":")[0] for v in caught.value.violations}
    assert {"$.name", "$.description", "$.fields[1].name"} <= paths


def test_a_prototype_with_plain_strings_imports() -> None:
    data = load("fiobank.credprototype.json")
    data["name"], data["description"] = "Fio Bank", "Fio Bank API"
    for fld in data["fields"]:
        fld["name"], fld["description"] = fld["name"]["en"], fld["description"]["en"]
    spec = parse_document(data)
    assert [f.keyword for f in spec.fields] == ["ACCOUNT_NUMBER", "FIO_TOKEN", "FIO_TOKEN_NAME"]
    assert spec.fields[1].required and spec.fields[0].hint == "123456789/2010"
    assert [f.is_secret for f in spec.fields] == [False, True, False]


@pytest.mark.parametrize(
    ("keyword", "secret"),
    [
        ("DB_PASSWORD", True),
        ("FIO_TOKEN", True),
        ("API_KEY", True),
        ("CLIENT_SECRET", True),
        ("PRIVATE_KEY", True),
        ("FIO_TOKEN_NAME", False),
        ("TOKEN_URL", False),
        ("DB_HOST", False),
        ("ACCOUNT_NUMBER", False),
    ],
)
def test_imported_fields_named_like_secrets_are_secret(keyword: str, secret: bool) -> None:
    assert looks_secret(keyword) is secret


def test_a_definition_may_say_a_secret_looking_field_is_not_secret() -> None:
    data = load("envfile.credprototype.json")
    data["fields"] = [{"keyword": "TOKEN", "type": "string", "secret": False}]
    assert not parse_document(data).fields[0].is_secret


def test_semantic_problems_are_reported_with_paths() -> None:
    data = {
        "uuid": "6b0d2f8c-1111-4a4a-8888-1234567890ab",
        "code": "Dup",
        "name": "Dup",
        "version": "1.0",
        "fields": [
            {"keyword": "A", "type": "integer", "default_value": "x"},
            {"keyword": "A", "type": "string"},
        ],
    }
    with pytest.raises(DefinitionError) as caught:
        parse_document(data)
    assert "$.fields[1].keyword: duplicate 'A'" in caught.value.violations
    assert any(
        v.startswith("$.fields[0].default: expected an integer") for v in caught.value.violations
    )


def test_unreadable_files_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="file not found"):
        read_document(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(Invalid, match="not valid JSON: line 1"):
        read_document(str(bad))
    array = tmp_path / "array.json"
    array.write_text("[]")
    with pytest.raises(DefinitionError, match="JSON object"):
        read_document(str(array))


def test_the_documented_definitions_import() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "credentials.md"
    blocks = re.findall(r"```json\n(.*?)```", docs.read_text(), re.S)
    definitions = [json.loads(b) for b in blocks if '"fields": [' in b and '"uuid"' in b]
    codes = [parse_document(d).code for d in definitions]
    assert codes == ["FioBank", "EnvFile", "SQL"]
    fio = parse_document(definitions[0])
    assert [f.is_secret for f in fio.fields] == [False, True, False]
    sql = {f.keyword: f for f in parse_document(definitions[2]).fields}
    assert sql["DATABASE_PORT"].default == "3306" and sql["DATABASE_TYPE"].default == "MySQL"

"""Application definition files without a database: parsing, schema, normalisation, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from multiflexi.apps import appjson
from multiflexi.apps.normalize import check, normalize
from multiflexi.apps.spec import json_path
from multiflexi.errors import AppDefinitionError, NotFound

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "apps"
REAL = sorted((FIXTURES / "real").glob("*.json"))
BROKEN = "abraflexi-reminder__abraflexi-reminder.multiflexi.app.json"
IMPORTABLE = [p for p in REAL if p.name != BROKEN]


def minimal(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "$schema": appjson.SCHEMA_URL,
        "name": "Demo",
        "description": "A demo",
        "executable": "demo",
        "environment": {},
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def env(**declarations: Any) -> dict[str, Any]:
    return minimal(environment=declarations)


def paths(violations: list[Any]) -> list[str]:
    return [v.path for v in violations]


# -- parsing --------------------------------------------------------------------------


def test_the_one_broken_real_file_is_refused_with_the_line_and_column_of_its_trailing_comma() -> (
    None
):
    with pytest.raises(AppDefinitionError) as err:
        appjson.read_document(FIXTURES / "real" / BROKEN)
    assert err.value.message.endswith(
        "line 255 column 6: trailing comma before '}' at line 256 column 3"
    )
    assert err.value.violations == [
        "$: line 255 column 6: trailing comma before '}' at line 256 column 3"
    ]


def test_a_syntax_error_reports_line_and_column() -> None:
    with pytest.raises(
        AppDefinitionError, match=r"x.json: line 2 column 14: Expecting ',' delimiter"
    ):
        appjson.parse_document(b'{"name": "a",\n "exec": "b" "c"}', "x.json")


def test_a_file_that_is_not_utf8_is_refused_with_the_position_of_the_bad_byte() -> None:
    with pytest.raises(
        AppDefinitionError, match=r"line 2 column 11: not UTF-8 \(byte 0xE9 at offset 12\)"
    ):
        appjson.parse_document(b'{\n "name": "\xe9"}', "x.json")


def test_duplicate_keys_are_refused_with_their_path() -> None:
    raw = b'{"name": "a", "environment": {"A": {"type": "string", "type": "bool"}}, "name": "b"}'
    with pytest.raises(AppDefinitionError) as err:
        appjson.parse_document(raw)
    assert err.value.violations == [
        "$: duplicate key 'name'",
        "$.environment.A: duplicate key 'type'",
    ]


@pytest.mark.parametrize("raw", [b"[]", b'"app"', b"3", b"null"])
def test_a_top_level_that_is_not_an_object_is_refused(raw: bytes) -> None:
    with pytest.raises(AppDefinitionError, match="the top level must be an object"):
        appjson.parse_document(raw)


def test_nesting_deeper_than_the_limit_is_refused_with_its_path() -> None:
    raw = ('{"a": ' + "[" * 70 + "1" + "]" * 70 + "}").encode()
    with pytest.raises(AppDefinitionError, match=r"\$\.a(\[0\]){63}: nested deeper than 64 levels"):
        appjson.parse_document(raw)


def test_pathological_nesting_is_refused_without_a_recursion_error() -> None:
    with pytest.raises(AppDefinitionError, match="nested deeper than 64 levels"):
        appjson.parse_document(b"[" * 200_000)


def test_a_file_larger_than_8_mib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(appjson.MAX_BYTES + 1)
    with pytest.raises(AppDefinitionError, match=r"larger than the limit of 8388608"):
        appjson.read_document(big)


def test_nan_is_not_json() -> None:
    with pytest.raises(AppDefinitionError, match="NaN is not allowed"):
        appjson.parse_document(b'{"a": NaN}')


def test_a_byte_order_mark_is_skipped_with_a_warning() -> None:
    doc = appjson.parse_document(b'\xef\xbb\xbf{"name": "a"}')
    assert doc.data == {"name": "a"}
    assert [str(w) for w in doc.warnings] == ["$: UTF-8 byte order mark ignored"]


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="file not found"):
        appjson.read_document(tmp_path / "nope.json")


def test_json_paths_quote_keys_that_are_not_identifiers() -> None:
    assert json_path(["environment", "A-B", 0, "it's"]) == "$.environment['A-B'][0]['it\\'s']"


# -- schema -----------------------------------------------------------------------------


def test_schema_validation_reports_every_violation_with_its_path() -> None:
    data = appjson.read_document(
        FIXTURES / "upstream-tests" / "test.schema-invalid.multiflexi.app.json"
    ).data
    assert [str(v) for v in appjson.validate(data)] == [
        "$.environment.INVALID_ENV_STRUCTURE: 'should be array not object' is not of type 'object'",
        "$.executable: 123 is not of type 'string'",
        "$.requirements: {'should': 'be array or string, not object'} is not of type 'array'",
        "$.uuid: 'test-schema-invalid-uuid-67890' is not a 'uuid'",
    ]


def test_a_legacy_type_is_a_violation_naming_the_allowed_values() -> None:
    violations = appjson.validate(env(FOO={"type": "boolean"}))
    assert len(violations) == 1
    assert str(violations[0]).startswith(
        "$.environment.FOO.type: 'boolean' is not one of ['string', "
    )


def test_localized_strings_report_the_offending_language() -> None:
    violations = appjson.validate(minimal(name={"en": "A", "xx": "B"}))
    assert paths(violations) == ["$.name"]
    assert "'xx' was unexpected" in violations[0].message


def test_a_canonical_definition_is_valid_and_exports_unchanged() -> None:
    data = appjson.read_document(FIXTURES / "upstream-tests" / "app-with-exitcodes.app.json").data
    assert appjson.validate(data) == []
    spec, warnings = normalize(data)
    assert warnings == []
    assert appjson.to_document(spec) == data


def test_check_adds_the_problems_the_schema_does_not_catch_without_repeating_it() -> None:
    data = minimal(name="", environment={"bad=name": {}, "X": "text"}, executable=None)
    assert [str(v) for v in check(data)] == [
        "$: 'executable' is a required property",
        "$.environment.X: 'text' is not of type 'object'",
        "$.name: empty: an application needs a name",
        "$.environment['bad=name']: not a variable name: it contains '=', which ends a variable's name in an environment",
    ]


# -- normalisation ----------------------------------------------------------------------


def warned(data: dict[str, Any]) -> tuple[Any, list[str]]:
    spec, warnings = normalize(data)
    return spec, [str(w) for w in warnings]


@pytest.mark.parametrize(
    ("changes", "attribute", "expected", "warning"),
    [
        (
            {"tags": "a, b,,c"},
            "tags",
            ("a", "b", "c"),
            "$.tags: comma-separated string read as a list",
        ),
        ({"topics": ["x"], "tags": ["y"]}, "tags", ("y", "x"), "$.topics: legacy key read as tags"),
        (
            {"requirements": "FioBank"},
            "requirements",
            ("FioBank",),
            "$.requirements: comma-separated",
        ),
        ({"ociimage": ""}, "ociimage", "", "$.ociimage: empty string read as no image"),
        ({"$schema": None}, "name", "Demo", "$['$schema']: missing"),
        (
            {"cmdparams": "-i ${IN} {OUT}"},
            "cmdparams",
            "-i {IN} {OUT}",
            "$.cmdparams: ${VAR} placeholders",
        ),
        (
            {"cmdparams": "", "cmdparamsTemplate": "${A}"},
            "cmdparams",
            "{A}",
            "$.cmdparamsTemplate: ${VAR}",
        ),
        ({"version": 2}, "version", "2", "$.version: a number converted to the string '2'"),
        (
            {"multiflexi": "1.0"},
            "extra",
            {"keys": {"multiflexi": "1.0"}},
            "$.multiflexi: unknown key kept",
        ),
    ],
)
def test_lenient_import_normalises_top_level_drift_with_a_warning(
    changes: dict[str, Any], attribute: str, expected: Any, warning: str
) -> None:
    spec, warnings = warned(minimal(**changes))
    assert getattr(spec, attribute) == expected
    assert any(w.startswith(warning) for w in warnings), warnings


@pytest.mark.parametrize(
    ("given", "field_type", "secret"),
    [
        ("boolean", "bool", False),
        ("checkbox", "bool", False),
        ("switch", "bool", False),
        ("number", "integer", False),
        ("select", "set", False),
        ("directory", "file-path", False),
        ("secret", "password", True),
        ("Bool", "bool", False),
    ],
)
def test_legacy_variable_types_are_read_as_current_ones(
    given: str, field_type: str, secret: bool
) -> None:
    spec, warnings = warned(env(V={"type": given}))
    assert (spec.fields[0].type, spec.fields[0].secret) == (field_type, secret)
    assert warnings == [f"$.environment.V.type: {given!r} read as {field_type!r}"]


def test_text_stays_text_and_password_is_secret_without_warnings() -> None:
    spec, warnings = warned(env(T={"type": "text"}, P={"type": "password"}, S={"secret": True}))
    assert [(f.type, f.secret) for f in spec.fields] == [
        ("text", False),
        ("password", True),
        ("string", True),
    ]
    assert warnings == []


@pytest.mark.parametrize(
    ("field_type", "defval", "stored", "warning"),
    [
        ("bool", False, "false", None),
        ("bool", "False", "false", "'False' normalised to 'false'"),
        ("bool", "yes", "true", "'yes' normalised to 'true'"),
        ("bool", "{OTHER}", "{OTHER}", None),
        ("integer", 5, "5", None),
        ("integer", "5", "5", None),
        ("integer", "05", "5", "'05' normalised to '5'"),
        ("integer", "5.0", "5", "'5.0' normalised to '5'"),
        ("integer", "many", "many", "'many' is not an integer; kept as it is"),
        ("float", 1.5, "1.5", None),
        ("float", "1.50", "1.5", "'1.50' normalised to '1.5'"),
        ("string", True, "true", "True stored as the string 'true'"),
        ("string", 7, "7", "7 stored as the string '7'"),
        ("string", None, None, None),
    ],
)
def test_defaults_are_stored_as_canonical_strings(
    field_type: str, defval: Any, stored: str | None, warning: str | None
) -> None:
    spec, warnings = warned(env(V={"type": field_type, "defval": defval}))
    assert spec.fields[0].defval == stored
    assert warnings == ([f"$.environment.V.defval: {warning}"] if warning else [])


def test_unknown_categories_are_dropped_and_known_ones_get_their_spelling() -> None:
    spec, warnings = warned(env(A={"category": "ISDS"}, B={"category": "api"}))
    assert [f.category for f in spec.fields] == ["", "API"]
    assert warnings[0].startswith("$.environment.A.category: unknown category 'ISDS' dropped")
    assert warnings[1] == "$.environment.B.category: 'api' read as 'API'"


def test_every_declaration_attribute_is_kept() -> None:
    decl = {
        "type": "set",
        "name": {"en": "Mode", "cs": "Režim"},
        "description": {"cs": "Popis", "en": "Description"},
        "hint": "pick one",
        "note": "n",
        "defval": "a",
        "required": True,
        "secret": False,
        "multiline": True,
        "expiring": True,
        "category": "Behavior",
        "options": {"a": "A", "b": "B"},
        "placeholder": "x",
    }
    spec, warnings = warned(env(MODE=decl))
    f = spec.fields[0]
    assert (f.name, f.description, f.hint, f.note, f.defval) == (
        "Mode",
        "Description",
        "pick one",
        "n",
        "a",
    )
    assert (f.required, f.secret, f.multiline, f.expiring, f.category) == (
        True,
        False,
        True,
        True,
        "Behavior",
    )
    assert f.options == {"a": "A", "b": "B"}
    assert f.extra == {
        "translations": {"name": decl["name"], "description": decl["description"]},
        "attributes": {"placeholder": "x"},
    }
    assert warnings == []


def test_localized_names_use_english_else_the_first_language_and_keep_translations() -> None:
    spec, _ = warned(
        minimal(name={"cs": "Aplikace", "de": "Anwendung"}, description={"de": "D", "en": "E"})
    )
    assert (spec.name, spec.description) == ("Aplikace", "E")
    assert spec.extra["translations"] == {
        "name": {"cs": "Aplikace", "de": "Anwendung"},
        "description": {"de": "D", "en": "E"},
    }


def test_legacy_exit_code_keys_and_shapes_are_read_as_exit_codes() -> None:
    spec, warnings = warned(
        minimal(
            exitcodes={"0": {"en": "Success", "cs": "Úspěch"}, "3": "Retry later"},
            returnCodes={
                "3": {"description": "ignored"},
                "4": {"description": "x", "severity": "fatal", "retry": "yes"},
            },
        )
    )
    assert [(e.code, e.description, e.severity, e.retry) for e in spec.exit_codes] == [
        (0, "Success", "error", False),
        (3, "Retry later", "error", False),
        (4, "x", "error", True),
    ]
    assert spec.exit_codes[0].extra == {
        "translations": {"description": {"en": "Success", "cs": "Úspěch"}}
    }
    assert "$.exitcodes: legacy key read as exitCodes" in warnings
    assert "$.returnCodes['3']: exit code 3 is already declared; this one is ignored" in warnings
    assert "$.returnCodes['4'].severity: unknown severity 'fatal'; 'error' assumed" in warnings


def test_artifacts_keep_name_path_type_and_description() -> None:
    spec, _ = warned(
        minimal(
            artifacts=[
                {"name": {"en": "Report"}, "path": r".*\.json$", "type": "file", "description": "d"}
            ]
        )
    )
    a = spec.artifacts[0]
    assert (a.name, a.path, a.type, a.description) == ("Report", r".*\.json$", "file", "d")


def test_every_real_error_is_reported_at_once_with_its_location() -> None:
    data = minimal(
        name=None, executable=None, environment={"1=BAD": {}, "ok": [], "Ab": {}, "AB": {}}
    )
    with pytest.raises(AppDefinitionError) as err:
        normalize(data)
    assert err.value.violations == [
        "$.name: missing: an application needs a name",
        "$.executable: missing: an application needs an executable",
        "$.environment['1=BAD']: not a variable name: it contains '=', which ends a variable's name in an environment",
        "$.environment.ok: a declaration must be an object, not an array",
        "$.environment.AB: differs only in case from 'Ab'",
    ]


@pytest.mark.parametrize("environment", [[], "A,B", 3])
def test_an_environment_that_is_not_an_object_is_refused(environment: Any) -> None:
    with pytest.raises(AppDefinitionError, match=r"^\$\.environment: must be an object"):
        normalize(minimal(environment=environment))


def test_an_empty_name_is_taken_from_the_file_name_with_a_warning() -> None:
    spec, warnings = normalize(minimal(name=""), "java_app.multiflexi.app.json")
    assert spec.name == "java_app"
    assert "$.name: empty; named 'java_app' after its file name" in [str(w) for w in warnings]


def test_values_too_long_for_their_column_are_refused() -> None:
    with pytest.raises(AppDefinitionError, match=r"\$\.version: longer than 64 characters"):
        normalize(minimal(version="1" * 65))


# -- export -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", IMPORTABLE, ids=lambda p: p.name[:40])
def test_every_other_real_file_imports_and_its_export_reads_back_to_the_same_spec(
    path: Path,
) -> None:
    spec, _ = normalize(appjson.read_document(path).data, path.name)
    assert spec.name and spec.executable
    exported = appjson.to_document(spec)
    again, _ = normalize(json.loads(appjson.dumps(exported)))
    assert again == spec


def test_export_writes_defaults_in_the_type_their_field_declares() -> None:
    spec, _ = normalize(
        env(
            B={"type": "bool", "defval": "True"},
            I={"type": "integer", "defval": "05"},
            S={"defval": "x"},
        )
    )
    environment = appjson.to_document(spec)["environment"]
    assert [environment[k]["defval"] for k in ("B", "I", "S")] == [True, 5, "x"]


def test_codes_are_short_upper_case_and_distinct_candidates_follow() -> None:
    assert appjson.code_stem("AbraFlexi Digest daily") == "AFDDAILY"
    assert appjson.code_stem("Test App") == "TESTAPP"
    assert appjson.code_stem("Žluťoučký kůň") == "ZKUN"
    assert appjson.code_stem("中文") == "APP"
    candidates = appjson.code_candidates("MultiFlexi Probe")
    assert [next(candidates) for _ in range(3)] == ["MFPROBE", "MFPROBE2", "MFPROBE3"]

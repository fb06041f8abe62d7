"""Configuration values against the declared types, and run-template settings."""

from __future__ import annotations

from typing import Any

import pytest

from multiflexi.env.layers import EnvVar
from multiflexi.errors import Invalid
from multiflexi.runtemplates.values import (
    FieldSpec,
    canonical_type,
    check_settings,
    describe_value,
    missing_required,
    normalize_value,
    option_values,
    resolve_schedule,
    validate_config,
)
from multiflexi.secrets import REDACTED


@pytest.mark.parametrize(
    ("ftype", "options", "value", "stored"),
    [
        ("string", None, "  as is  ", "  as is  "),
        ("text", None, "line 1\nline 2", "line 1\nline 2"),
        ("integer", None, "42", "42"),
        ("integer", None, " -007 ", "-7"),
        ("integer", None, "+3", "3"),
        ("float", None, "3.14", "3.14"),
        ("float", None, "-1e3", "-1e3"),
        ("bool", None, "TRUE", "true"),
        ("bool", None, "yes", "true"),
        ("bool", None, "1", "true"),
        ("bool", None, "off", "false"),
        ("bool", None, "0", "false"),
        ("email", None, "ops@example.com", "ops@example.com"),
        ("url", None, "https://example.com/api", "https://example.com/api"),
        ("url", None, "file:///tmp/x", "file:///tmp/x"),
        ("set", ["a", "b"], "b", "b"),
        ("set", {"cz": "Czech", "en": "English"}, "cz", "cz"),
        ("set", [{"value": "x", "label": "X"}], "x", "x"),
        ("set", None, "anything", "anything"),
        ("file-path", None, "/srv/in.csv", "/srv/in.csv"),
        ("password", None, "s3cr3t", "s3cr3t"),
        ("secret", None, "tok", "tok"),
        ("checkbox", None, "on", "true"),
        ("number", None, "12", "12"),
        ("select", ["p", "q"], "q", "q"),
        ("mystery", None, "kept", "kept"),
    ],
)
def test_values_of_the_declared_type_are_normalised(
    ftype: str, options: Any, value: str, stored: str
) -> None:
    assert normalize_value(FieldSpec("KEY", ftype, options=options), value) == stored


@pytest.mark.parametrize(
    ("ftype", "options", "value", "expected"),
    [
        ("integer", None, "4.2", "expected an integer, got '4.2'"),
        ("integer", None, "", "expected an integer"),
        ("integer", None, "ten", "expected an integer"),
        ("float", None, "abc", "expected a number"),
        ("float", None, "nan", "expected a finite number"),
        ("float", None, "inf", "expected a finite number"),
        ("bool", None, "maybe", r"expected a boolean \(true/false\)"),
        ("email", None, "not-an-email", "expected an e-mail address"),
        ("email", None, "a@b", "expected an e-mail address"),
        ("url", None, "example.com", "expected a URL"),
        ("url", None, "http://", "expected a URL"),
        ("set", ["a", "b"], "c", "expected one of a, b, got 'c'"),
        ("set", {"cz": "Czech"}, "Czech", "expected one of cz"),
        ("file-path", None, "  ", "expected a file path"),
        ("string", None, "nul\x00byte", "expected text without NUL"),
    ],
)
def test_wrong_values_name_the_key_and_the_expected_type(
    ftype: str, options: Any, value: str, expected: str
) -> None:
    with pytest.raises(Invalid, match=f"configuration key KEY: {expected}"):
        normalize_value(FieldSpec("KEY", ftype, options=options), value)


def test_errors_never_repeat_a_secret_value() -> None:
    spec = FieldSpec("PIN", "integer", secret=True)
    with pytest.raises(Invalid) as err:
        normalize_value(spec, "hunter2")
    assert "hunter2" not in str(err.value)
    assert "(hidden)" in str(err.value)


def test_secret_fields_are_recognised_by_flag_or_type() -> None:
    assert FieldSpec("A", "password").is_secret
    assert FieldSpec("A", "secret").is_secret
    assert FieldSpec("A", "string", secret=True).is_secret
    assert not FieldSpec("A", "string").is_secret


def test_option_values_from_list_or_mapping() -> None:
    assert option_values(["a", 1]) == ["a", "1"]
    assert option_values({"k": "Label"}) == ["k"]
    assert option_values(None) == []
    assert canonical_type(None) == "string"
    assert canonical_type("Boolean") == "bool"


FIELDS = [
    FieldSpec("URL", "url", required=True),
    FieldSpec("COUNT", "integer", defval="5", required=True),
    FieldSpec("DEBUG", "bool"),
]


def test_validate_config_normalises_known_keys_and_refuses_unknown_ones() -> None:
    got = validate_config(FIELDS, {"DEBUG": "yes", "COUNT": "07"})
    assert got == {"DEBUG": "true", "COUNT": "7"}
    with pytest.raises(Invalid, match=r"unknown configuration key TYPO .*--force"):
        validate_config(FIELDS, {"TYPO": "1"})
    assert validate_config(FIELDS, {"TYPO": "1"}, force=True) == {"TYPO": "1"}


def test_validate_config_refuses_invalid_key_names_even_with_force() -> None:
    with pytest.raises(Invalid, match="invalid configuration key '1=X'"):
        validate_config(FIELDS, {"1=X": "v"}, force=True)


def test_validate_config_takes_names_a_process_accepts_but_a_shell_does_not() -> None:
    assert validate_config(FIELDS, {"BANKA+": "v", "1X": "w"}, force=True) == {
        "BANKA+": "v",
        "1X": "w",
    }


def test_empty_value_is_kept_to_mean_remove() -> None:
    assert validate_config(FIELDS, {"COUNT": ""}) == {"COUNT": ""}


def test_missing_required_ignores_keys_with_a_default() -> None:
    assert missing_required(FIELDS, {}) == ["URL"]
    assert missing_required(FIELDS, {"URL": "https://x.org"}) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "  "}, "name must not be empty"),
        ({"interv": "x"}, "unknown interval 'x'"),
        ({"cron": "61 * * * *"}, "minute value 61"),
        ({"delay": -1}, "delay must be at least 0"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"retry_min_gap": -5}, "retry_min_gap must be at least 0"),
        ({"retry_backoff": "random"}, "retry_backoff must be one of none, fixed"),
        ({"overlap": "queue"}, "overlap must be one of forbid, allow, skip"),
        ({"executor": "rm -rf"}, "invalid executor name"),
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        check_settings(changes)


def test_settings_are_normalised() -> None:
    got = check_settings({"interv": "D", "overlap": "Skip", "timeout": 0, "name": " Nightly "})
    assert got == {"interv": "d", "overlap": "skip", "timeout": None, "name": "Nightly"}


@pytest.mark.parametrize(
    ("current", "interv", "cron", "expected"),
    [
        (("n", None), None, None, ("n", None)),
        (("n", None), "d", None, ("d", None)),
        (("n", None), None, "0 1 * * *", ("c", "0 1 * * *")),
        (("n", None), "c", "0 1 * * *", ("c", "0 1 * * *")),
        (("c", "0 1 * * *"), "h", None, ("h", None)),  # another interval clears the cron
        (("c", "0 1 * * *"), "c", None, ("c", "0 1 * * *")),
        (("c", "0 1 * * *"), None, "5 5 * * *", ("c", "5 5 * * *")),
        (("d", None), None, None, ("d", None)),
    ],
)
def test_schedule_changes(
    current: tuple[str, str | None],
    interv: str | None,
    cron: str | None,
    expected: tuple[str, str | None],
) -> None:
    assert resolve_schedule(current, interv, cron) == expected


@pytest.mark.parametrize(
    ("current", "interv", "cron", "message"),
    [
        (("n", None), "d", "0 1 * * *", "--cron needs interval c"),
        (("n", None), "c", None, "needs a cron expression"),
        (("d", None), "c", None, "needs a cron expression"),
    ],
)
def test_contradictory_schedules_are_refused(
    current: tuple[str, str | None], interv: str | None, cron: str | None, message: str
) -> None:
    with pytest.raises(Invalid, match=message):
        resolve_schedule(current, interv, cron)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(Invalid, match="unknown run template setting colour"):
        check_settings({"colour": "red"})


def test_sealed_looking_values_are_refused_for_secret_keys() -> None:
    fields = [FieldSpec("PASSWORD", "password"), FieldSpec("NOTE", "string")]
    with pytest.raises(Invalid, match="PASSWORD: values starting with 'mfenc:v1:'"):
        validate_config(fields, {"PASSWORD": "mfenc:v1:abc"})
    assert validate_config(fields, {"NOTE": "mfenc:v1:abc"}) == {"NOTE": "mfenc:v1:abc"}


def var(value: str, source: str, *shadowed: EnvVar, secret: bool = False) -> EnvVar:
    return EnvVar("K", value, source, secret=secret, shadowed=shadowed)


DEFAULT_D = var("d", "app:1 default")


@pytest.mark.parametrize(
    ("spec", "effective", "encrypted", "value", "default", "source", "missing"),
    [
        (FieldSpec("K", defval="d"), var("v", "runtemplate:5", DEFAULT_D), False, "v", "d", "runtemplate:5", False),
        (FieldSpec("K", defval="d"), DEFAULT_D, False, "d", "d", "app:1 default", False),
        (FieldSpec("K", defval="d"), var("c", "company:2", DEFAULT_D), False, "c", "d", "company:2", False),
        (FieldSpec("K", required=True), None, False, None, None, None, True),
        (FieldSpec("K", required=True), var("", "company:2"), False, None, None, None, True),
        (FieldSpec("K", required=True), var("g", "global"), False, "g", None, "global", False),
        (FieldSpec("K", required=True, defval="d"), DEFAULT_D, False, "d", "d", "app:1 default", False),
        (
            FieldSpec("K", "password", defval="pw"),
            var(REDACTED, "runtemplate:5", var("pw", "app:1 default", secret=True), secret=True),
            True,
            REDACTED,
            REDACTED,
            "runtemplate:5",
            False,
        ),
        (FieldSpec("K", "password", required=True), None, False, None, None, None, True),
    ],
)  # fmt: skip
def test_describe_value_gives_the_effective_value_its_source_and_redacts_secrets(
    spec: FieldSpec,
    effective: EnvVar | None,
    encrypted: bool,
    value: str | None,
    default: str | None,
    source: str | None,
    missing: bool,
) -> None:
    got = describe_value("K", spec, effective, encrypted)
    assert (got["value"], got["default"], got["source"], got["missing"]) == (
        value,
        default,
        source,
        missing,
    )
    assert got["declared"] is True
    shadowed = effective.shadowed if effective is not None else ()
    assert [s["source"] for s in got["shadowed"]] == [s.source for s in shadowed]
    if got["secret"]:
        assert all(s["value"] == REDACTED for s in got["shadowed"])


def test_describe_value_of_an_undeclared_key() -> None:
    got = describe_value(
        "X", None, EnvVar("X", REDACTED, "runtemplate:5"), encrypted=True, stored_type="password"
    )
    assert got == {
        "name": "X",
        "type": "password",
        "value": REDACTED,
        "source": "runtemplate:5",
        "shadowed": [],
        "default": None,
        "secret": True,
        "required": False,
        "missing": False,
        "declared": False,
    }

"""Macros: ``{VAR}`` and ``${VAR}``, one pass, never re-expanded."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiflexi.env.layers import Env, EnvVar
from multiflexi.env.macros import expand, expand_env, placeholders


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{A}", "alpha"),
        ("${A}", "alpha"),
        ("x{A}y${B}z", "xalphaybetaz"),
        ("{A}{A}", "alphaalpha"),
        ("{UNKNOWN}", "{UNKNOWN}"),
        ("${UNKNOWN}", "${UNKNOWN}"),
        ("{EMPTY}-", "-"),
        ("{ lower_ok }", "{ lower_ok }"),
        ("{lower_ok}", "yes"),
        ("{1A}", "{1A}"),
        ("{A", "{A"),
        ("{{A}}", "{alpha}"),
        ("$A", "$A"),
        ("", ""),
        ("no macros at all", "no macros at all"),
    ],
)
def test_expand_replaces_known_macros_and_leaves_the_rest(template: str, expected: str) -> None:
    values = {"A": "alpha", "B": "beta", "EMPTY": "", "lower_ok": "yes"}
    assert expand(template, values) == expected


def test_substituted_text_is_never_expanded_again() -> None:
    values = {"A": "{B}", "B": "${C}", "C": "deep"}
    assert expand("{A}|{B}|{C}", values) == "{B}|${C}|deep"


def test_a_value_referring_to_itself_cannot_loop() -> None:
    assert expand("{A}", {"A": "{A}{A}"}) == "{A}{A}"


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True),
        st.text(alphabet="{}$AB_x ", max_size=12),
        max_size=5,
    ),
    st.text(alphabet="{}$AB_x ", max_size=30),
)
def test_expand_matches_a_single_regex_pass(values: dict[str, str], template: str) -> None:
    reference = re.sub(
        r"\$?\{([A-Za-z_][A-Za-z0-9_]*)\}",
        lambda m: values.get(m.group(1), m.group(0)),
        template,
    )
    assert expand(template, values) == reference


def env(**values: str) -> Env:
    return Env(EnvVar(name, value, source=f"src:{name}") for name, value in values.items())


def test_expand_env_uses_the_unexpanded_values_whatever_the_order() -> None:
    forward = expand_env(env(C="c", B="{C}", A="{B}"))
    backward = expand_env(env(A="{B}", B="{C}", C="c"))
    for result in (forward, backward):
        assert result["B"].value == "c"
        assert result["A"].value == "{C}", "one pass: chains do not resolve"


def test_expand_env_survives_cycles() -> None:
    result = expand_env(env(A="{B}", B="{A}"))
    assert (result["A"].value, result["B"].value) == ("{A}", "{B}")


def test_expand_env_keeps_provenance_secrecy_and_description() -> None:
    original = Env(
        [
            EnvVar("TOKEN", "t0ken", source="credential:3", secret=True),
            EnvVar("URL", "https://x/?t={TOKEN}", source="app:1", description="endpoint"),
        ]
    )
    result = expand_env(original)
    assert result["URL"] == EnvVar(
        "URL", "https://x/?t=t0ken", source="app:1", description="endpoint"
    )
    assert result["TOKEN"] == original["TOKEN"]
    assert list(result) == ["TOKEN", "URL"]


def test_expand_env_without_macros_returns_the_same_env() -> None:
    original = env(A="plain", B="{not a macro}")
    assert expand_env(original) is original


def test_placeholders_lists_names_in_order_without_duplicates() -> None:
    assert placeholders("--a {A} --b ${B} {A} {1X} {C") == ["A", "B"]
    assert placeholders("") == []

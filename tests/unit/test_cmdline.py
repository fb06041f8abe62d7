"""The command line: split the template first, expand inside each word, no shell."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiflexi.env.cmdline import (
    REDACTED,
    build_argv,
    display,
    redact_argv,
    resolve_executable,
)
from multiflexi.errors import Invalid

HOSTILE = [
    "two words",
    "it's",
    'say "hi"',
    "$HOME",
    "${PATH}",
    "`id`",
    "$(rm -rf /)",
    "a; b && c | d > e",
    "line1\nline2",
    "back\\slash",
    "#not-a-comment",
    "*?[glob]",
    "{OTHER}",
    "ünïcødé ☃",
    "  padded  ",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_arrives_as_one_intact_argument(value: str) -> None:
    argv = build_argv("app", "--name {NAME} --x ${NAME} -q", {"NAME": value, "OTHER": "o"})
    assert argv == ["app", "--name", value, "--x", value, "-q"]


def test_words_of_the_template_follow_posix_quoting() -> None:
    argv = build_argv(
        "app",
        """-a 'single {A}' -b "double {A}" -c esc\\ aped --d={A}x {A}{A} '' #hash""",
        {"A": "v w"},
    )
    assert argv == [
        "app", "-a", "single v w", "-b", "double v w", "-c", "esc aped",
        "--d=v wx", "v wv w", "", "#hash",
    ]  # fmt: skip


def test_a_word_that_is_only_an_empty_or_undefined_macro_is_dropped() -> None:
    argv = build_argv("app", "{EMPTY} -x ${UNDEFINED} {SET} '{EMPTY}'", {"EMPTY": "", "SET": "s"})
    assert argv == ["app", "-x", "s"]


def test_an_undefined_macro_inside_a_longer_word_stays_as_written() -> None:
    assert build_argv("app", "--opt={MISSING} --e={EMPTY}", {"EMPTY": ""}) == [
        "app",
        "--opt={MISSING}",
        "--e=",
    ]


def test_the_executable_is_expanded_too() -> None:
    assert build_argv("{BIN}/tool", "", {"BIN": "/opt/my apps"}) == ["/opt/my apps/tool"]


def test_an_executable_that_expands_to_nothing_is_invalid() -> None:
    with pytest.raises(Invalid, match="executable"):
        build_argv("{EXE}", "", {"EXE": ""})


@pytest.mark.parametrize("template", ["--name 'unterminated", 'say "hi', "trailing\\"])
def test_an_unbalanced_template_is_invalid_with_a_clear_message(template: str) -> None:
    with pytest.raises(Invalid, match="cannot be split"):
        build_argv("app", template, {})


@given(st.lists(st.text(), max_size=4))
def test_any_values_survive_build_argv(values: list[str]) -> None:
    names = [f"V{i}" for i in range(len(values))]
    template = " ".join(f"{{{n}}}" for n in names)
    argv = build_argv("app", template, dict(zip(names, values, strict=True)))
    assert argv == ["app", *[v for v in values if v]]


def test_display_quotes_for_a_shell_and_round_trips() -> None:
    argv = ["app", *HOSTILE, ""]
    assert shlex.split(display(argv)) == argv


def test_redact_argv_hides_every_occurrence_of_every_secret() -> None:
    argv = ["app", "--password=hunter2", "hunter2", "user:hunter2@host/hunter2", "safe"]
    assert redact_argv(argv, ["hunter2", ""]) == [
        "app",
        f"--password={REDACTED}",
        REDACTED,
        f"user:{REDACTED}@host/{REDACTED}",
        "safe",
    ]


def test_redact_argv_replaces_longer_secrets_first() -> None:
    assert redact_argv(["abcdef"], ["abc", "abcdef"], mask="*") == ["*"]
    assert redact_argv(["x"], [], mask="*") == ["x"]


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(stat.S_IRWXU)
    return path


def test_resolve_executable_searches_the_jobs_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = _executable(bindir / "tool")
    assert resolve_executable("tool", str(bindir)) == str(tool)
    assert resolve_executable("tool", "/nonexistent") is None
    assert resolve_executable("sh", None) is not None, "no PATH: the system default"
    assert resolve_executable("", str(bindir)) is None


def test_resolve_executable_checks_paths_exist_and_are_executable(tmp_path: Path) -> None:
    tool = _executable(tmp_path / "tool")
    plain = tmp_path / "plain"
    plain.write_text("data")
    assert resolve_executable(str(tool), None) == str(tool)
    assert resolve_executable(str(plain), None) is None
    assert resolve_executable(str(tmp_path / "missing"), None) is None
    assert resolve_executable(str(tmp_path), None) is None, "a directory is not a program"
    assert resolve_executable("./tool", None, cwd=tmp_path) == "./tool"
    old = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert resolve_executable("./tool", None) == "./tool"
    finally:
        os.chdir(old)

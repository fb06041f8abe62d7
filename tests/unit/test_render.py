"""job2env and job2script output, proven by reading it back with the real readers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiflexi.errors import Invalid
from multiflexi.scripts.render import (
    LITERAL_DOLLAR,
    quote_env_value,
    render_env_file,
    render_script,
)

SHELLS = [s for s in ("bash", "sh") if shutil.which(s)]
#: Variables a shell adds to the environment of what it runs.
SHELL_ADDS = {"PWD", "SHLVL", "_", "OLDPWD"}

TRICKY = [
    "",
    "plain",
    "two words",
    "it's",
    'say "hi"',
    "both ' and \"",
    "$HOME and $1 and $$ and $",
    "${HOME}",
    "${UNSET:-default}",
    "it's ${X}",
    "`id`",
    "$(id)",
    "back\\slash",
    "ends with backslash\\",
    "\\\\ two",
    "\\n is not a newline",
    "line1\nline2\n",
    "\n",
    "# not a comment",
    "value # trailing",
    "tab\there",
    "  padded  ",
    "ünïcødé ☃ 😀",
    "p@$$w0rd'\"\\x",
    "=equals=",
    "export X=1",
]


def read_with_dotenv(path: Path) -> dict[str, str | None]:
    return dict(dotenv_values(path))


def read_with_shell(shell: str, path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["env", "-i", shell, "-c", "set -a; . ./" + path.name + "; set +a; env -0"],
        cwd=path.parent,
        capture_output=True,
        check=True,
        timeout=30,
    )
    pairs = (item.split(b"=", 1) for item in out.stdout.split(b"\0") if item)
    return {k.decode(): v.decode() for k, v in pairs}


def assert_round_trip(tmp: Path, variables: Sequence[tuple[str, str]]) -> None:
    path = tmp / "job.env"
    path.write_text(render_env_file(variables, header=["test file"]), encoding="utf-8")
    expected = dict(variables)
    assert read_with_dotenv(path) == expected
    for shell in SHELLS:
        got = read_with_shell(shell, path)
        assert {k: got.get(k) for k in expected} == expected, shell


def test_tricky_values_read_back_identically_with_dotenv_and_shells(tmp_path: Path) -> None:
    assert_round_trip(tmp_path, [(f"V{i}", value) for i, value in enumerate(TRICKY)])


def test_a_100_kb_value_reads_back(tmp_path: Path) -> None:
    big = ("x'y\"z$w\\ \n" * 10_000)[:100_000]
    assert_round_trip(tmp_path, [("BIG", big), ("SMALL", "s")])


def test_simple_values_use_single_quotes_and_a_literal_dollar_is_explained() -> None:
    assert quote_env_value("A", "plain $x") == "'plain $x'"
    assert quote_env_value("A", "it's") == '"it\'s"'
    assert quote_env_value("A", "a\\b") == '"a\\\\b"'
    assert quote_env_value("A", "${X}") == f'"{LITERAL_DOLLAR}{{X}}"'
    text = render_env_file([("A", "${X}")], header=["h"])
    assert text.splitlines()[0] == "# h"
    assert any(line.startswith("#") and LITERAL_DOLLAR in line for line in text.splitlines())
    assert render_env_file([("A", "v")]) == "A='v'\n"


def test_header_lines_stay_comments_even_with_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "job.env"
    header = ["App v1 Job #3", "evil\nINJECTED=1", "cr\rALSO=1", ""]
    path.write_text(render_env_file([("A", "1")], header=header), encoding="utf-8")
    assert read_with_dotenv(path) == {"A": "1"}
    for shell in SHELLS:
        got = read_with_shell(shell, path)
        assert "INJECTED" not in got and "ALSO" not in got


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a\0b", "NUL byte"),
        ("a\rb", "carriage return"),
        ("it's `id`", "backtick"),
        ("back\\`tick", "backtick"),
        ("${X} `id`", "backtick"),
    ],
)
def test_values_no_quoting_can_carry_are_refused(value: str, why: str) -> None:
    with pytest.raises(Invalid, match=why):
        render_env_file([("A", value)])


def test_a_backtick_alone_is_fine_in_single_quotes(tmp_path: Path) -> None:
    assert_round_trip(tmp_path, [("A", "`id` and $(id)")])


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "é", "__MULTIFLEXI_UNSET__"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(Invalid):
        render_env_file([(name, "v")])


def _refused(value: str) -> bool:
    """Exactly the values render_env_file must refuse (see the module documentation)."""
    needs_double = "'" in value or "\\" in value or re.search(r"\$\{[^}:]*(?::-[^}]*)?\}", value)
    return "\r" in value or ("`" in value and bool(needs_double))


env_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"))
shell_heavy = st.text(alphabet="'\"$`\\{}:-#\n\r ab_=!*;()", max_size=20)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(env_text | shell_heavy, min_size=1, max_size=8))
def test_any_text_either_round_trips_or_is_refused(tmp_path: Path, values: list[str]) -> None:
    accepted = []
    for value in values:
        try:
            quote_env_value("V", value)
        except Invalid:
            assert _refused(value), repr(value)
        else:
            assert not _refused(value), repr(value)
            accepted.append(value)
    assert_round_trip(tmp_path, [(f"V{i}", v) for i, v in enumerate(accepted)])


# -- the launcher script -----------------------------------------------------------------

PROBE = (
    "import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, sys.stdout)"
)

SCRIPT_VALUES = [
    *TRICKY,
    "a\rb",
    "it's `id`",
    "$(touch /tmp/multiflexi-pwned)",
    "'; exit 3; '",
]


def run_script(
    tmp: Path, variables: list[tuple[str, str, str]], argv: list[str]
) -> dict[str, object]:
    script = tmp / "job.sh"
    script.write_text(render_script(variables, argv, header=["App v1 job #7"]), encoding="utf-8")
    script.chmod(0o700)
    out = subprocess.run(["env", "-i", str(script)], capture_output=True, check=True, timeout=30)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_script_gives_the_program_exactly_its_argv_and_environment(tmp_path: Path) -> None:
    variables = [(f"V{i}", v, f"source {i}\nsecond line") for i, v in enumerate(SCRIPT_VALUES)]
    variables.append(("PYTHONCOERCECLOCALE", "0", "test"))
    args = [*SCRIPT_VALUES, "--flag=a b"]
    probe = run_script(tmp_path, variables, [sys.executable, "-c", PROBE, *args])
    assert probe["argv"] == args
    env = probe["env"]
    assert isinstance(env, dict)
    assert {k: env.get(k) for k, _, _ in variables} == {k: v for k, v, _ in variables}
    assert set(env) - {k for k, _, _ in variables} <= SHELL_ADDS


def test_the_script_layout() -> None:
    text = render_script([("A", "x y", "app:1 default")], ["prog", "a b"], header=["hdr"])
    assert text == (
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        "\n"
        "# hdr\n"
        "\n"
        "# source: app:1 default\n"
        "export A='x y'\n"
        "\n"
        "exec prog 'a b'\n"
    )


@given(
    values=st.lists(env_text, max_size=4),
    args=st.lists(env_text, max_size=4),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_values_and_arguments_survive_the_script(
    tmp_path: Path, values: list[str], args: list[str]
) -> None:
    variables = [(f"V{i}", v, "s") for i, v in enumerate(values)]
    variables.append(("PYTHONCOERCECLOCALE", "0", "test"))
    probe = run_script(tmp_path, variables, [sys.executable, "-c", PROBE, *args])
    assert probe["argv"] == args
    env = probe["env"]
    assert isinstance(env, dict)
    assert {k: env.get(k) for k, _, _ in variables} == {k: v for k, v, _ in variables}


def test_the_script_refuses_what_cannot_be_carried() -> None:
    with pytest.raises(Invalid, match="empty"):
        render_script([], [])
    with pytest.raises(Invalid, match="NUL"):
        render_script([("A", "a\0", "s")], ["prog"])
    with pytest.raises(Invalid, match="NUL"):
        render_script([], ["prog", "a\0"])
    with pytest.raises(Invalid):
        render_script([("BAD-NAME", "v", "s")], ["prog"])

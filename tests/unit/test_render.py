"""job2env and job2script output, proven by reading it back with the real readers: bash and
sh for the shell format and the script, python-dotenv for the dotenv format, systemd's own
parsing rules for the systemd format, json for json."""

from __future__ import annotations

import json
import os
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
    ansi_c,
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
    "it's `id`",
    "back\\slash",
    "ends with backslash\\",
    "\\\\ two",
    "\\n is not a newline",
    "line1\nline2\n",
    "\n",
    "carriage\rreturn\r\n",
    "# not a comment",
    "value # trailing",
    "tab\there",
    "  padded  ",
    "ünïcødé ☃ 😀",
    "p@$$w0rd'\"\\x",
    "=equals=",
    "export X=1",
    "'",
    "''",
]
env_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"))
shell_heavy = st.text(alphabet="'\"$`\\{}:-#\n\r ab_=!*;()", max_size=20)
ANY = env_text | shell_heavy


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


def write(tmp: Path, variables: Sequence[tuple[str, str]], fmt: str) -> Path:
    path = tmp / f"job.{fmt}"
    path.write_text(render_env_file(variables, header=["test file"], fmt=fmt), encoding="utf-8")
    return path


def read_systemd(text: str) -> dict[str, str]:
    """What systemd's ``EnvironmentFile=`` reads: the states of ``parse_env_file_internal``
    (systemd src/basic/env-file.c) that our files use -- keys, comments, single- and
    double-quoted values -- followed to the letter; then names that are not valid
    (``env_name_is_valid``: letters, digits, _, not starting with a digit) are dropped, as
    systemd drops them."""
    out: dict[str, str] = {}
    state, key, value = "PRE_KEY", "", ""
    for c in text + "\n":
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif c not in " \t\n\r":
                state, key, value = "KEY", c, ""
        elif state == "KEY":
            if c in "\n\r":
                state = "PRE_KEY"
            elif c == "=":
                state = "PRE_VALUE"
            else:
                key += c
        elif state == "PRE_VALUE":
            if c in "\n\r":
                out[key.strip()] = value
                state = "PRE_KEY"
            elif c == "'":
                state = "SINGLE"
            elif c == '"':
                state = "DOUBLE"
            elif c not in " \t":
                raise AssertionError(f"unquoted value in our file: {key!r}")
        elif state == "SINGLE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value += c
        elif state == "DOUBLE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                raise AssertionError("our systemd files use no escapes")
            else:
                value += c
        elif state == "COMMENT" and c in "\n\r":
            state = "PRE_KEY"
    valid = {k: v for k, v in out.items() if k and not k[0].isdigit()}
    return {k: v for k, v in valid.items() if all(ch.isalnum() or ch == "_" for ch in k)}


def assert_every_format_reads_back(tmp: Path, variables: Sequence[tuple[str, str]]) -> None:
    expected = dict(variables)
    shell_file = write(tmp, variables, "shell")
    for shell in SHELLS:
        got = read_with_shell(shell, shell_file)
        assert {k: got.get(k) for k in expected} == expected, shell
    assert dotenv_values(write(tmp, variables, "dotenv")) == expected
    systemd_text = render_env_file(variables, fmt="systemd")
    assert read_systemd(systemd_text) == expected
    assert json.loads(render_env_file(variables, fmt="json")) == expected


def test_tricky_values_read_back_identically_in_every_format(tmp_path: Path) -> None:
    assert_every_format_reads_back(tmp_path, [(f"V{i}", v) for i, v in enumerate(TRICKY)])


def test_a_100_kb_value_reads_back(tmp_path: Path) -> None:
    big = ("x'y\"z$w\\ \n\r`" * 10_000)[:100_000]
    assert_every_format_reads_back(tmp_path, [("BIG", big), ("SMALL", "s")])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(ANY, min_size=1, max_size=8))
def test_any_text_without_nul_reads_back_in_every_format(tmp_path: Path, values: list[str]) -> None:
    assert_every_format_reads_back(tmp_path, [(f"V{i}", v) for i, v in enumerate(values)])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=ANY)
def test_a_shell_line_python_dotenv_would_misread_says_so(tmp_path: Path, value: str) -> None:
    text = render_env_file([("V", value)])
    warned = text.startswith("# python-dotenv reads V differently")
    path = tmp_path / "one.env"
    path.write_text(text[text.index("V=") :])
    os.environ.pop("__MULTIFLEXI_UNSET__", None)
    assert warned == (dotenv_values(path).get("V") != value), repr(value)


def test_the_shell_format_uses_single_quotes_and_explains_only_when_needed() -> None:
    assert render_env_file([("A", "v")]) == "A=v\n"
    assert render_env_file([("A", "two words")]) == "A='two words'\n"
    text = render_env_file([("A", "it's")])
    assert text == (
        "# python-dotenv reads A differently: use --format dotenv for it\nA='it'\"'\"'s'\n"
    )
    dotenv = render_env_file([("A", "${X}")], fmt="dotenv")
    assert f'A="{LITERAL_DOLLAR}{{X}}"' in dotenv.splitlines()
    assert any(line.startswith("#") and LITERAL_DOLLAR in line for line in dotenv.splitlines())


def test_names_a_shell_cannot_set_are_carried_where_the_reader_can(tmp_path: Path) -> None:
    variables = [("BANKA+", "in'come"), ("BANKA-", "out\ngo"), ("OK", "1")]
    shell = render_env_file(variables)
    assert (
        f"# not a name a shell can set; to pass it: env {ansi_c('BANKA+=in' + chr(39) + 'come')} COMMAND"
        in shell
    )
    assert "# not a name a shell can set; to pass it: env $'BANKA-=out\\ngo' COMMAND" in shell
    assert read_with_shell("bash", write(tmp_path, variables, "shell"))["OK"] == "1"
    assert dotenv_values(write(tmp_path, variables, "dotenv")) == dict(variables)
    assert read_systemd(render_env_file(variables, fmt="systemd")) == {"OK": "1"}
    assert "systemd takes only names a shell could use" in render_env_file(variables, fmt="systemd")
    assert json.loads(render_env_file(variables, fmt="json")) == dict(variables)


def test_an_ansi_c_word_is_one_line_that_bash_reads_back() -> None:
    text = "a'b\\c\nd\re\tf\x01g 😀 \u200b"
    word = ansi_c(text)
    assert "\n" not in word and "\r" not in word
    out = subprocess.run(
        ["bash", "-c", f"printf %s {word}"], capture_output=True, check=True, timeout=30
    )
    assert out.stdout.decode() == text


def test_header_lines_stay_comments_even_with_line_breaks(tmp_path: Path) -> None:
    header = ["App v1 Job #3", "evil\nINJECTED=1", "cr\rALSO=1", ""]
    for fmt in ("shell", "dotenv", "systemd"):
        path = tmp_path / f"h.{fmt}"
        path.write_text(render_env_file([("A", "1")], header=header, fmt=fmt), encoding="utf-8")
        if fmt == "dotenv":
            assert dotenv_values(path) == {"A": "1"}
        elif fmt == "systemd":
            assert read_systemd(path.read_text()) == {"A": "1"}
        else:
            for shell in SHELLS:
                got = read_with_shell(shell, path)
                assert "INJECTED" not in got and "ALSO" not in got


@pytest.mark.parametrize("name", ["", "A=B", "A\0B"])
def test_names_no_environment_can_hold_are_refused(name: str) -> None:
    with pytest.raises(Invalid):
        render_env_file([(name, "v")])


def test_a_nul_is_refused_and_so_is_an_unknown_format() -> None:
    with pytest.raises(Invalid, match="NUL"):
        render_env_file([("A", "a\0b")])
    with pytest.raises(Invalid, match="unknown format"):
        render_env_file([("A", "a")], fmt="yaml")


# -- the launcher script -----------------------------------------------------------------

PROBE = (
    "import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': dict(os.environ),"
    " 'cwd': os.getcwd()}, sys.stdout); sys.exit(int(os.environ.get('EXIT', '0')))"
)
JOB_DIR = "/var/lib/multiflexi/jobs/7"


def run_script(
    tmp: Path,
    variables: list[tuple[str, str, str]],
    argv: list[str],
    *,
    workdir: str | None = None,
    cwd: Path | None = None,
) -> tuple[int, dict[str, object]]:
    script = tmp / "job.sh"
    text = render_script(
        variables, argv, header=["App v1 job #7"], job_id=7, job_dir=JOB_DIR, workdir=workdir
    )
    script.write_text(text, encoding="utf-8")
    out = subprocess.run(
        ["env", "-i", f"TMPDIR={tmp}", "bash", str(script)],
        capture_output=True,
        timeout=30,
        cwd=cwd or tmp,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return out.returncode, result


def job_variables(values: Sequence[str]) -> list[tuple[str, str, str]]:
    variables = [(f"V{i}", v, f"source {i}\nsecond line") for i, v in enumerate(values)]
    return [
        *variables,
        ("PYTHONCOERCECLOCALE", "0", "test"),
        ("MULTIFLEXI_TMP", JOB_DIR, "multiflexi"),
        ("RESULT_FILE", f"{JOB_DIR}/result.json", "app:1 default"),
        ("OTHER_JOB", f"{JOB_DIR}7/x", "company:1"),  # another job's directory: kept
        ("BANKA+", "in'come", "runtemplate:3"),
    ]


def test_the_script_runs_in_a_fresh_directory_with_exactly_the_jobs_environment(
    tmp_path: Path,
) -> None:
    variables = job_variables([*TRICKY, "$(touch /tmp/multiflexi-pwned)", "'; exit 3; '"])
    args = [*TRICKY, "--flag=a b", f"--out={JOB_DIR}/out.csv"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs = []
    for cwd in (tmp_path, elsewhere):  # from any directory, the same
        code, probe = run_script(tmp_path, variables, [sys.executable, "-c", PROBE, *args], cwd=cwd)
        assert code == 0
        runs.append(probe)
    for probe in runs:
        workdir = str(probe["cwd"])
        assert workdir.startswith(str(tmp_path / "multiflexi-job-7."))
        assert os.listdir(workdir) == []
        assert probe["argv"] == [*args[:-1], f"--out={workdir}/out.csv"]
        expected = {k: v for k, v, _ in variables}
        expected |= {"MULTIFLEXI_TMP": workdir, "RESULT_FILE": f"{workdir}/result.json"}
        assert probe["env"] == expected
    assert runs[0]["cwd"] != runs[1]["cwd"]


def test_the_script_exits_with_the_commands_code_and_honours_workdir(tmp_path: Path) -> None:
    variables = [("PATH", os.defpath, "host"), ("EXIT", "3", "override")]
    given_dir = str(tmp_path / "given" / "dir")
    code, probe = run_script(tmp_path, variables, [sys.executable, "-c", PROBE], workdir=given_dir)
    assert code == 3
    assert probe["cwd"] == given_dir


@given(values=st.lists(env_text, max_size=4), args=st.lists(env_text, max_size=4))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_values_and_arguments_survive_the_script(
    tmp_path: Path, values: list[str], args: list[str]
) -> None:
    variables = [(f"V{i}", v, "s") for i, v in enumerate(values)]
    variables.append(("PYTHONCOERCECLOCALE", "0", "test"))
    _, probe = run_script(tmp_path, variables, [sys.executable, "-c", PROBE, *args])
    assert probe["argv"] == args
    assert probe["env"] == {k: v for k, v, _ in variables}


def test_the_script_refuses_what_cannot_be_carried() -> None:
    with pytest.raises(Invalid, match="empty"):
        render_script([], [])
    with pytest.raises(Invalid, match="NUL"):
        render_script([("A", "a\0", "s")], ["prog"])
    with pytest.raises(Invalid, match="NUL"):
        render_script([], ["prog", "a\0"])
    with pytest.raises(Invalid):
        render_script([("A=B", "v", "s")], ["prog"])

"""Hostile environment values survive a real job and both exports exactly.

A job gets one-off values (``create_job`` overrides, as ``job:create --env K=V``) with
newlines, quotes, ``$``, backticks, backslashes, macros, unicode and 100 KB of text. The
application dumps the environment and arguments it received. Then:

* ``multiflexi-job2script`` gives a bash script that, run under ``env -i``, hands the
  application exactly the same environment and arguments, in a directory of its own
  (``MULTIFLEXI_TMP`` is that directory);
* ``multiflexi-job2env`` gives a file that bash (``set -a; . file``) reads back to exactly
  the same values, whatever they are; where python-dotenv would read a line differently a
  comment says so, and ``--format dotenv`` gives a file python-dotenv reads exactly;
* a NUL is refused when the job is created, with one clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiflexi.errors import Invalid
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.scripts.job import job_env_file, job_script
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, JobStatus
from tests.conftest import Cli
from tests.daemons.helpers import BIN, daemon_env
from tests.factories import make_script, make_setup
from tests.reliability.helpers import stdout_of

#: Prints what it received: its arguments and its whole environment.
DUMP = "import json, os, sys\nprint(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}))\n"
#: What bash adds to an environment by itself.
SHELL_VARIABLES = {"PWD", "SHLVL", "_", "OLDPWD"}
BASH = "/bin/bash"

#: Values every export must carry exactly.
REPRESENTABLE = {
    "V_NEWLINES": "line 1\nline 2\n\nlast\n",
    "V_SINGLE": "it's",
    "V_DOUBLE": 'say "hi"',
    "V_QUOTES": "'\"'\"",
    "V_DOLLAR": "$HOME ${NOPE_UNDEFINED} $$ $(id) $1 $",
    "V_DOLLAR_QUOTE": 'it\'s $HOME and "${NOPE_UNDEFINED}"',
    "V_BACKTICK": "`id` and $(id)",
    "V_BACKSLASH": "a\\b \\n \\\\ \\$x \\",
    "V_MACRO": "{V_SINGLE} and ${V_DOUBLE}",
    "V_UNICODE": "žluťoučký kůň 😀 \u200b\u00a0",
    "V_SPACES": "  padded\tand\ttabbed  ",
    "V_COMMENT": "value # not a comment",
    "V_HASH": "#starts with a hash",
    "V_EQUALS": "a=b=c",
    "V_EMPTY": "",
    "V_EXPORT": "export X=1",
    "V_BIG": ('100 KB of $dollars, "quotes", \\backslashes\\ and\nnewlines ' * 1700)[:100_000],
}
#: Values python-dotenv reads differently from bash in the shell format.
DOTENV_DIFFERS = {
    "V_CR": "carriage\rreturn\r\n",
    "V_BACKTICK_QUOTE": "it's `id`",
    "V_BACKTICK_BRACE": "`x` ${NOPE_UNDEFINED}",
}
ARGUMENT = "one argument; with spaces, 'quotes', \"double\", $(id) and\na newline"


def run_job(db: Database, rt: int, overrides: dict[str, str]) -> int:
    """Create a job with one-off values and run it to its end, in-process."""
    job = create_job(db, db.settings, runtemplate_id=rt, overrides=overrides)
    claim = claim_job(db, job.id, new_worker_id("test"), db.settings.lease_seconds)
    status = JobRunner(db, db.settings, job_hooks=[]).perform_job(claim)
    assert status == JobStatus.SUCCESS, status
    return job.id


def seen_by_app(db: Database, job_id: int) -> dict[str, Any]:
    received: dict[str, Any] = json.loads(stdout_of(db, job_id)[1])
    return received


def run_script(text: str, tmp: Path) -> dict[str, Any]:
    """Run a job2script script with nothing inherited; the app dumps what it got."""
    path = tmp / "job.sh"
    path.write_text(text)
    res = subprocess.run(
        ["env", "-i", BASH, str(path)], capture_output=True, timeout=60, cwd=tmp, check=True
    )
    received: dict[str, Any] = json.loads(res.stdout)
    return received


def source_env_file(text: str, tmp: Path, dump: Path) -> dict[str, str]:
    """What bash holds after ``set -a; . job.env``, as the app sees it."""
    path = tmp / "job.env"
    path.write_text(text)
    source = 'set -a; . "$1"; set +a; exec "$2" "$3"'
    res = subprocess.run(
        ["env", "-i", BASH, "-c", source, "_", str(path), sys.executable, str(dump)],
        capture_output=True,
        timeout=60,
        cwd=tmp,
        check=True,
    )
    env: dict[str, str] = json.loads(res.stdout)["env"]
    return env


def without_shell(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in SHELL_VARIABLES}


def same_run(script_env: dict[str, str], job_env: dict[str, str]) -> None:
    """The script's run got the job's environment, in a directory of its own."""
    got = without_shell(script_env)
    assert got.pop("MULTIFLEXI_TMP") != job_env["MULTIFLEXI_TMP"]
    assert got == {k: v for k, v in job_env.items() if k != "MULTIFLEXI_TMP"}


def cli_tool(
    db: Database, tool: str, job_id: int, *args: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / tool), str(job_id), *args],
        env=daemon_env(db),
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    return make_script(tmp_path, DUMP, "dump.py")


def test_hostile_values_round_trip_through_a_job_job2script_and_job2env(
    sqlite_db: Database, tmp_path: Path, dump: Path
) -> None:
    db = sqlite_db
    _, _, rt = make_setup(db, cmdparams=f"{dump} {{V_ARG}}")
    job_id = run_job(db, rt, {**REPRESENTABLE, "V_ARG": ARGUMENT})
    app = seen_by_app(db, job_id)
    assert app["argv"] == [ARGUMENT]
    for key, value in REPRESENTABLE.items():
        if key != "V_MACRO":
            assert app["env"][key] == value, key
    # Macros in values are expanded once, never again.
    assert app["env"]["V_MACRO"] == 'it\'s and say "hi"'

    script = cli_tool(db, "multiflexi-job2script", job_id)
    assert script.returncode == 0, script.stderr
    again = run_script(script.stdout.decode(), tmp_path)
    assert again["argv"] == app["argv"]
    same_run(again["env"], app["env"])

    env_file = cli_tool(db, "multiflexi-job2env", job_id)
    assert env_file.returncode == 0, env_file.stderr
    assert without_shell(source_env_file(env_file.stdout.decode(), tmp_path, dump)) == app["env"]
    dotenv_file = cli_tool(db, "multiflexi-job2env", job_id, "--format", "dotenv")
    (tmp_path / "job.env").write_bytes(dotenv_file.stdout)
    assert dotenv_values(tmp_path / "job.env") == app["env"]


def test_values_python_dotenv_reads_differently_are_flagged_never_refused(
    sqlite_db: Database, tmp_path: Path, dump: Path
) -> None:
    db = sqlite_db
    _, _, rt = make_setup(db, cmdparams=str(dump))
    for key, value in DOTENV_DIFFERS.items():
        job_id = run_job(db, rt, {key: value})
        app = seen_by_app(db, job_id)
        assert app["env"][key] == value
        script = cli_tool(db, "multiflexi-job2script", job_id)
        assert script.returncode == 0, script.stderr
        same_run(run_script(script.stdout.decode(), tmp_path)["env"], app["env"])
        env_file = cli_tool(db, "multiflexi-job2env", job_id)
        assert env_file.returncode == 0, env_file.stderr
        text = env_file.stdout.decode()
        assert f"# python-dotenv reads {key} differently: use --format dotenv for it" in text
        assert without_shell(source_env_file(text, tmp_path, dump)) == app["env"]
        dotenv_file = cli_tool(db, "multiflexi-job2env", job_id, "--format", "dotenv")
        (tmp_path / "job.env").write_bytes(dotenv_file.stdout)
        assert dotenv_values(tmp_path / "job.env") == app["env"]


def test_a_nul_is_refused_when_the_job_is_created(sqlite_db: Database, cli: Cli) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams="-c pass")
    with pytest.raises(Invalid, match="NUL"):
        create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt, overrides={"V": "a\0b"})
    res = cli("job:create", "--template", str(rt), "--env", "V=a\0b")
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "NUL" in res.stderr, res.stderr
    with sqlite_db.read() as session:
        assert session.query(Job).count() == 0


ANY_VALUE = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
    max_size=40,
) | st.text(alphabet="$`'\"\\{}\r\n #=:;(){}abc", max_size=25)


def test_any_value_round_trips_through_the_script_and_both_env_formats(
    sqlite_db: Database, tmp_path: Path, dump: Path
) -> None:
    db = sqlite_db
    _, _, rt = make_setup(db, cmdparams=f"{dump} {{V_ARG}}")

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=ANY_VALUE, argument=ANY_VALUE.filter(bool))
    def check(value: str, argument: str) -> None:
        # Macros are expanded (once) before the app runs; a value without them is exact.
        job_id = run_job(db, rt, {"V_X": value, "V_ARG": argument})
        app = seen_by_app(db, job_id)
        if "{" not in value:
            assert app["env"]["V_X"] == value
        again = run_script(job_script(db, db.settings, job_id), tmp_path)
        assert again["argv"] == app["argv"]
        same_run(again["env"], app["env"])
        text = job_env_file(db, db.settings, job_id)
        assert without_shell(source_env_file(text, tmp_path, dump)) == app["env"]
        (tmp_path / "job.env").write_text(job_env_file(db, db.settings, job_id, fmt="dotenv"))
        assert dotenv_values(tmp_path / "job.env") == app["env"]

    check()

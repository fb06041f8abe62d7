"""Every CLI command, fed random options and values, answers with exit code 0, 1 or 2 and
at most one error line, never a traceback, and leaves the database as it was on error."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from multiflexi.cli.base import REGISTRY
from multiflexi.storage.database import Database
from multiflexi.storage.models import Base
from tests.conftest import Cli, db_environment
from tests.factories import make_setup

#: Commands that run jobs exit with the job's own exit code, by design.
RUNS_JOBS = {"job:run", "queue:process", "housekeeping"}
FILE_OPTIONS = {"--file", "--output", "-o", "--environment"}


def snapshot(db: Database) -> str:
    digest = hashlib.sha256()
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT * FROM "{table.name}" ORDER BY 1')).fetchall()
            digest.update(f"{table.name}:{rows!r}".encode())
    return digest.hexdigest()


VALUES = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from(
        [
            "1",
            "2",
            "0",
            "-1",
            "999999",
            "true",
            "no",
            "json",
            "text",
            "c",
            "d",
            "n",
            "* * * * *",
            "KEY=VALUE",
            "A=",
            "=x",
            "",
            " ",
        ]
    ),
    st.text(min_size=0, max_size=40),
    st.text(alphabet="abc{}$`'\"\\;|&\n\t\x7f€😀", min_size=0, max_size=20),
    st.just("x" * 5000),
)


#: Options that make a command run until it is interrupted (tested where they are defined).
RUNS_UNTIL_STOPPED = {"--watch", "--follow", "-F"}


def command_args(name: str, cmd: click.Command, tmp: Path) -> st.SearchStrategy[list[str]]:
    opts: list[tuple[str, bool]] = []
    for param in cmd.params:
        if isinstance(param, click.Option):
            for flag in param.opts:
                if flag not in RUNS_UNTIL_STOPPED:
                    opts.append((flag, param.is_flag))
    safe_file = st.sampled_from(
        [str(tmp / "out.bin"), str(tmp / "in.json"), "-", str(tmp / "missing.json")]
    )

    def one(option: tuple[str, bool]) -> st.SearchStrategy[list[str]]:
        flag, is_flag = option
        if is_flag:
            return st.just([flag])
        value = safe_file if flag in FILE_OPTIONS else VALUES
        return value.map(lambda v: [flag, v])

    parts = st.lists(st.sampled_from(opts).flatmap(one), max_size=4) if opts else st.just([])
    positional = st.lists(VALUES, max_size=2)
    return st.tuples(parts, positional).map(
        lambda p: [name] + [a for pair in p[0] for a in pair] + p[1]
    )


@pytest.fixture
def seeded(sqlite_db: Database) -> Database:
    make_setup(sqlite_db, cmdparams="-c pass", config={})
    return sqlite_db


def names() -> list[str]:
    import multiflexi.cli.main  # noqa: F401 - registers every command

    return sorted(n for n in REGISTRY if n not in RUNS_JOBS)


@pytest.mark.parametrize("name", names())
def test_every_command_survives_random_input(
    name: str, seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.json").write_text('{"name": "x", "executable": "/bin/true"')
    monkeypatch.chdir(tmp_path)
    cli = Cli({**db_environment(seeded), "PATH": os.environ.get("PATH", "")}, monkeypatch)
    cmd = REGISTRY[name][0]

    @settings(
        max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(argv=command_args(name, cmd, tmp_path))
    def check(argv: list[str]) -> None:
        before = snapshot(seeded)
        res = cli(*argv, input="")
        context: Any = (argv, res.exit_code, res.stderr[-500:])
        assert res.exit_code in (0, 1, 2), context
        assert "Traceback" not in res.stderr, context
        assert "internal error" not in res.stderr, context
        if res.exit_code != 0:
            assert res.stderr.strip() and res.stderr.strip().count("\n") == 0, context
            assert snapshot(seeded) == before, context

    check()

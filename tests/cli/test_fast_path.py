"""The CLI starts fast: one command imports only its own module, ``job:list`` neither
SQLAlchemy nor rich, and its table without rich is the one rich prints.

``python tests/cli/test_fast_path.py`` prints the command index of
``multiflexi/cli/commands/__init__.py`` anew, after a command was added or changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiflexi.cli.output import _plain_table, _rich_table, render_table
from multiflexi.storage.database import Database
from tests.conftest import Cli, db_environment
from tests.factories import make_setup

Entry = tuple[str, tuple[str, ...], str | None]


@pytest.fixture(autouse=True)
def not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without these, rich writes to a pipe as to one, and tables go to rich."""
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


def registered_index() -> dict[str, Entry]:
    """What the command modules register, in the shape of ``INDEX``."""
    from multiflexi.cli.base import REGISTRY

    index: dict[str, Entry] = {}
    for name, (cmd, aliases) in sorted(REGISTRY.items()):
        assert cmd.callback is not None
        module = cmd.callback.__module__.rpartition(".")[2]
        index[name] = (module, aliases, None if cmd.hidden else cmd.get_short_help_str(limit=70))
    return index


def render_index(index: dict[str, Entry]) -> str:
    lines = [f"    {name!r}: {entry!r}," for name, entry in index.items()]
    return "INDEX = {\n" + "\n".join(lines) + "\n}"


def test_the_command_index_is_what_the_modules_register() -> None:
    from multiflexi.cli.commands import INDEX

    expected = registered_index()
    assert expected == INDEX, (
        "multiflexi/cli/commands/__init__.py is out of date; "
        "`python tests/cli/test_fast_path.py` prints it:\n" + render_index(expected)
    )


def test_every_spelling_finds_its_command(cli: Cli) -> None:
    for argv in (["job:ls"], ["jobs:list"], ["job", "list"], ["runtemplate:list"], ["app:list"]):
        assert cli(*argv, "-f", "json").exit_code == 0, argv
    unknown = cli("job:nothing")
    assert unknown.exit_code == 2 and "unknown command 'job:nothing'" in unknown.stderr
    assert "job:list" in cli.ok("--help").stdout


# -- what a command imports ---------------------------------------------------------------

PROBE = """
import json, sys
from multiflexi.cli.main import main
code = main(sys.argv[2:])
sys.stdout.flush()
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def imported(env: dict[str, str], tmp: Any, *argv: str) -> tuple[str, set[str]]:
    """stdout and the modules imported by ``multiflexi-cli argv`` in a fresh process."""
    report = tmp / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["code"] == 0, done.stderr
    return done.stdout, set(data["modules"])


#: Of rich, only the measuring of wide characters (a few ms) is allowed.
RICH_CELLS = ("rich.cells", "rich._unicode_data", "rich._extension")


def heavy(modules: set[str]) -> set[str]:
    """Imports that cost a reader tens of milliseconds and that job:list does not need."""
    return {
        m
        for m in modules
        if m.split(".")[0] in ("sqlalchemy", "alembic", "psycopg", "pymysql")
        or (m.startswith("rich.") and not m.startswith(RICH_CELLS))
        or m in ("multiflexi.scheduling.when", "multiflexi.storage.database", "importlib.metadata")
    }


@pytest.fixture
def listed_db(sqlite_db: Database) -> Database:
    from multiflexi.jobs.service import create_job

    *_, rt_id = make_setup(sqlite_db, name="Účetnictví", slug="acme")
    for _ in range(3):
        create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id)
    return sqlite_db


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_job_list_imports_neither_sqlalchemy_nor_rich(
    listed_db: Database, tmp_path: Any, fmt: str
) -> None:
    out, modules = imported(db_environment(listed_db), tmp_path, "job:list", "-f", fmt)
    assert heavy(modules) == set()
    commands = {m for m in modules if m.startswith("multiflexi.cli.commands.")}
    assert commands == {"multiflexi.cli.commands.jobs"}
    if fmt == "text":
        assert out.splitlines()[0].split() == ["id", "status", "template", "company", "when",
                                               "duration", "exit", "reason"]  # fmt: skip
        assert len(out.splitlines()) == 4 and "acme_" in out
    else:
        assert len(json.loads(out)) == 3


def test_help_imports_no_command_module(tmp_path: Any) -> None:
    env = {"MULTIFLEXI_DATA_DIR": str(tmp_path / "data")}
    out, modules = imported(env, tmp_path, "--help")
    assert "job:list" in out and "status" in out
    assert heavy(modules) == set()
    assert not {m for m in modules if m.startswith("multiflexi.cli.commands.")}
    assert not {m for m in modules if m.startswith("multiflexi.config")}
    assert "multiflexi.cli.base" not in modules and "dataclasses" not in modules


# -- tables without rich ------------------------------------------------------------------

#: Pieces that rich prints as they are, and pieces it changes (markup, emoji codes, wide,
#: zero-width and control characters), so that both paths are taken.
PIECES = st.sampled_from(
    [
        *"ab Z09:-_./\\+[]",
        *[":smile:", ":100:", ":+1:", ":thumbs_up-emoji:", ":11:", "12:30:00", "[bold]", "\\["],
        *["Účet", "日本", "😀", "e\u0301", "\ufe0f", "\u200d", "☃\ufe0f", "👨\u200d👩", "ﬁ"],
        *["\t", "\n", "\r", "\x1b", "\u00a0", "\u3000", "\u2028", "\u00ad", "\U0001f1e8\U0001f1ff"],
    ]
)
TEXT = (
    st.lists(PIECES, max_size=8).map("".join)
    | st.text(max_size=12)
    | st.text(alphabet="ax :0", min_size=20, max_size=90)
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(
            st.lists(TEXT, min_size=n, max_size=n),
            st.lists(st.lists(TEXT, min_size=n, max_size=n), min_size=1, max_size=4),
        )
    )
)
def test_a_table_without_rich_is_the_table_rich_prints(
    table: tuple[list[str], list[list[str]]],
) -> None:
    cols, cells = table
    plain = _plain_table(cols, cells)
    if plain is not None:
        assert plain == _rich_table(cols, cells)


def test_job_rows_are_rendered_without_rich() -> None:
    when = datetime(2026, 1, 31, 23, 59, 58, tzinfo=UTC)
    row = {
        "id": 100000,
        "status": "success",
        "runtemplate_id": 7,
        "runtemplate": "měsíční výkaz",
        "app": "Účetnictví ☃ 日本語",
        "company": "acme_cz",
        "created": when,
        "begin": when,
        "end": None,
        "exitcode": 0,
        "duration": 1.5,
    }
    rows = [row, {**row, "id": 99999, "app": "Faktury (CZ) 100%", "exitcode": None}]
    cells = [[str(v) if v is not None else "" for v in r.values()] for r in rows]
    assert _plain_table(list(row), cells) is not None
    rendered = render_table(rows)
    assert rendered.splitlines()[1].startswith("100000  success  7               měsíční výkaz")
    assert "2026-01-31 23:59:58+00:00" in rendered


def test_what_rich_changes_goes_to_rich() -> None:
    for text in ("[bold]x[/bold]", "a :smile: b", "x:+1:", "tab\there", "two\nlines", "e\u0301"):
        assert _plain_table(["c"], [[text]]) is None, text
    assert _plain_table(["c"], [["x" * 199]]) is not None
    assert _plain_table(["c", "d"], [["x" * 199, "y"]]) is None  # wider than 200: rich wraps


@pytest.mark.parametrize(("var", "value"), [("FORCE_COLOR", "1"), ("TTY_COMPATIBLE", "1")])
def test_a_table_for_a_terminal_goes_to_rich(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    rows = [{"id": 1, "name": "x"}]
    assert render_table(rows) == _rich_table(["id", "name"], [["1", "x"]])
    assert "\x1b[1m" in render_table(rows)  # the bold header


def test_the_only_all_digit_emoji_names_are_known() -> None:
    """``_plain_width`` skips ``:NN:`` (times) without loading rich's emoji table."""
    from rich._emoji_codes import EMOJI

    assert {name for name in EMOJI if name.isdigit()} == {"100", "1234"}


if __name__ == "__main__":
    print(render_index(registered_index()))

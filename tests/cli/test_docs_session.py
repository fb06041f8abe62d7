"""docs/cli.md is a real session: its commands, run in order on a fresh database, end as
the page shows (exit 0, or 1 where it shows an error) and begin their output as shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

from examples.cli_session import environment

from tests.conftest import REPO


def session() -> list[tuple[str, list[str]]]:
    """(command, shown output lines) of every ``$ `` line of docs/cli.md's console blocks."""
    steps: list[tuple[str, list[str]]] = []
    text = (REPO / "docs" / "cli.md").read_text()
    for block in text.split("```console\n")[1:]:
        for line in block.split("\n```", 1)[0].splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def test_the_session_of_docs_cli_md_runs_as_shown(tmp_path: Path) -> None:
    steps = session()
    assert len(steps) >= 15
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = environment(tmp_path)
    for command, shown in steps:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        expected = 1 if shown and shown[0].startswith("error:") else 0
        assert done.returncode == expected, (command, done.stdout)
        if shown:
            assert done.stdout.splitlines()[0] == shown[0], (command, done.stdout)

"""Refresh the outputs of docs/cli.md by running its commands on a fresh database.

    .venv/bin/python examples/cli_session.py

Every ``$ `` line of the page's console blocks is run in order with bash (in a temporary
directory with the repository's examples, the virtual environment's programs first on
PATH, 100 columns), and the lines after it are replaced with what it printed. The prose
is left as it is; tests/cli/test_docs_session.py checks that the page still runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "cli.md"


def environment(cwd: Path) -> dict[str, str]:
    """This process's environment pointed at a fresh database in ``cwd``, with the virtual
    environment's programs first on PATH and 100 columns."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_"))
    }
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MULTIFLEXI_DATA_DIR"] = str(cwd / "data")
    env["COLUMNS"] = "100"
    return env


def run_block(block: str, cwd: Path, env: dict[str, str]) -> str:
    out = []
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line[2:]],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        out.append(line)
        out.extend(done.stdout.rstrip().splitlines())
    return "\n".join(out) + "\n"


def main() -> None:
    text = PAGE.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "examples").symlink_to(REPO / "examples")
        env = environment(cwd)
        parts = text.split("```console\n")
        for i in range(1, len(parts)):
            block, rest = parts[i].split("```\n", 1)
            parts[i] = run_block(block, cwd, env) + "```\n" + rest
    PAGE.write_text("```console\n".join(parts))


if __name__ == "__main__":
    main()

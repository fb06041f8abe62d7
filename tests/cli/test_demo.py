"""`make demo` runs the bundled example job on a fresh SQLite database, three times in a
row, printing every command as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_demo_runs_a_real_job_and_lists_its_artifacts(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_"))
    }
    env["MULTIFLEXI_DATA_DIR"] = str(tmp_path / "data")
    first = subprocess.run(
        [sys.executable, "examples/demo.py"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert (
        "\n$ multiflexi-cli run-template:create --name 'Demo daily report' --app-id 1"
        " --company 1 --interv d --config ROWS=5 --config API_TOKEN=demo-token-123 -f json"
        " | jq .runtemplate_id\n1\n"
    ) in first.stdout
    assert "Job 1 success, exit code 0" in first.stderr
    assert (first.stdout + first.stderr).count("demo-token-123") == 1  # as typed, then masked
    for run in (2, 3):
        res = subprocess.run(
            [sys.executable, "examples/demo.py"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"Job {run} success, exit code 0" in res.stderr
        assert "rows.csv" in res.stdout and "summary.json" in res.stdout
        assert "connecting with token ****" in res.stdout
        assert "demo-token-123" not in res.stdout + res.stderr
        # every command as a user types it, quoted for the shell
        assert "\n$ multiflexi-cli application:import-json --file examples/apps/" in res.stdout
        assert (
            "\n$ multiflexi-cli run-template:list --company 1 -f json"
            " | jq '.[] | select(.name == \"Demo daily report\") | .id'\n1\n"
        ) in res.stdout
        assert f"\n$ multiflexi-cli job:run {run}\n" in res.stdout
    db_file = tmp_path / "data" / "multiflexi.sqlite"
    assert oct(db_file.stat().st_mode & 0o777) == "0o600"

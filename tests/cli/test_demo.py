"""`make demo` runs the bundled example job on a fresh SQLite database, twice in a row."""

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
    for run in (1, 2):
        res = subprocess.run(
            [sys.executable, str(REPO / "examples" / "demo.py")],
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
    db_file = tmp_path / "data" / "multiflexi.sqlite"
    assert oct(db_file.stat().st_mode & 0o777) == "0o600"

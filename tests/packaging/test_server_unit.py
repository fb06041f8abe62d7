"""The API server's systemd unit: the same environment file, sandbox and state directory
as the daemons' units, and a stop that lets requests in flight finish."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from tests.packaging.test_units import (
    DATA_DIR,
    ENV_FILE,
    MAX_EXPOSURE,
    ROOT,
    exposure,
    one,
    unit,
)

NAME = "multiflexi-server.service"


def test_the_server_unit_reads_the_environment_file_and_is_sandboxed() -> None:
    u = unit(NAME)
    assert one(u, "ExecStart") == f"/usr/bin/multiflexi-server -e {ENV_FILE}"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "multiflexi-server" in scripts
    assert one(u, "User") == one(u, "Group") == "multiflexi"
    assert one(u, "KillSignal") == "SIGTERM" and int(one(u, "TimeoutStopSec")) > 30
    assert f"MULTIFLEXI_DATA_DIR={DATA_DIR}" in u["Service.Environment"]
    assert one(u, "WorkingDirectory") == one(u, "ReadWritePaths") == DATA_DIR
    assert one(u, "ProtectSystem") == "strict" and one(u, "NoNewPrivileges") == "true"
    assert one(u, "CapabilityBoundingSet") == ""


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_server_sandbox_exposure_is_at_most_4(tmp_path: Path) -> None:
    assert exposure(NAME, tmp_path) <= MAX_EXPOSURE

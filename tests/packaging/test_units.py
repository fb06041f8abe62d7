"""The shipped systemd units, sysusers.d/tmpfiles.d files and example configuration:
their keys, their sandbox (``systemd-analyze security`` when it is installed), and the
sysusers/tmpfiles files applied to a throw-away root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from multiflexi.config import KNOWN_KEYS, load_settings

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
UNITS = [
    "multiflexi-executor.service",
    "multiflexi-executor@.service",
    "multiflexi-scheduler.service",
]
ENV_FILE = "/etc/multiflexi/multiflexi.env"
DATA_DIR = "/var/lib/multiflexi"
#: Most exposure the issue allows (systemd-analyze's scale: 0 safe ... 10 exposed).
MAX_EXPOSURE = 4.0


def unit(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a unit, every value of a key repeated in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def one(settings: dict[str, list[str]], key: str) -> str:
    (value,) = settings[f"Service.{key}"]
    return value


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_passes_the_environment_file_with_dash_e_and_notifies(name: str) -> None:
    u = unit(name)
    program = "multiflexi-scheduler" if "scheduler" in name else "multiflexi-executor"
    assert one(u, "ExecStart") == f"/usr/bin/{program} -e {ENV_FILE}"
    assert program in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    # EnvironmentFile= would put the file into the process environment, which wins over
    # the file: a reload could change nothing.
    assert "Service.EnvironmentFile" not in u
    assert one(u, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(u, "Type") == "notify" and one(u, "NotifyAccess") == "main"
    assert int(one(u, "WatchdogSec")) >= 30
    assert one(u, "User") == one(u, "Group") == "multiflexi"


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_writes_only_to_its_state_directory(name: str) -> None:
    u = unit(name)
    assert f"MULTIFLEXI_DATA_DIR={DATA_DIR}" in u["Service.Environment"]
    assert one(u, "StateDirectory") == "multiflexi"
    assert one(u, "WorkingDirectory") == one(u, "ReadWritePaths") == DATA_DIR
    assert one(u, "UMask") == "0077"
    assert one(u, "ProtectSystem") == "strict"
    for key in (
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "NoNewPrivileges",
        "RestrictSUIDSGID",
        "RestrictNamespaces",
    ):
        assert one(u, key) == "true", key
    assert one(u, "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    assert u["Service.SystemCallFilter"][0] == "@system-service"
    assert one(u, "CapabilityBoundingSet") == ""


def test_the_executor_waits_for_its_jobs_and_its_template_is_the_same_unit() -> None:
    executor, template = unit(UNITS[0]), unit(UNITS[1])
    assert one(executor, "KillMode") == "mixed"  # SIGTERM to the daemon only: jobs drain
    # Longer than the default shutdown grace (30 s) plus the kill grace (10 s).
    assert int(one(executor, "TimeoutStopSec")) > 40
    assert {k: v for k, v in template.items() if k != "Unit.Description"} == {
        k: v for k, v in executor.items() if k != "Unit.Description"
    }
    assert "%i" in template["Unit.Description"][0]
    text = (SYSTEMD / UNITS[0]).read_text()
    assert "ProtectControlGroups=false" in text  # says what the cgroup limits will need


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", UNITS)
def test_the_sandbox_exposure_is_at_most_4(name: str, tmp_path: Path) -> None:
    assert exposure(name, tmp_path) <= MAX_EXPOSURE


def exposure(name: str, tmp_path: Path) -> float:
    """``systemd-analyze security``'s overall exposure of the unit ``name``."""
    # An instance name for the template: systemd-analyze cannot judge a bare template.
    path = tmp_path / name.replace("@.", "@1.")
    shutil.copy(SYSTEMD / name, path)
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert found, res.stdout + res.stderr
    return float(found.group(1))


def example_env() -> str:
    return (SYSTEMD / "multiflexi.env").read_text()


def test_the_example_configuration_loads_and_points_at_the_state_directory(
    tmp_path: Path,
) -> None:
    settings = load_settings(SYSTEMD / "multiflexi.env", {})
    assert settings.data_dir == Path(DATA_DIR) and settings.db_connection == "sqlite"
    # Every commented setting is one we know: uncommented, the file still loads.
    commented = re.findall(r"^#([A-Z_]+)=", example_env(), re.MULTILINE)
    assert {"DB_CONNECTION", "MULTIFLEXI_MAX_PARALLEL", "MULTIFLEXI_TIMEZONE"} <= set(commented)
    assert set(commented) - KNOWN_KEYS == {"ENCRYPTION_MASTER_KEY"}
    uncommented = tmp_path / "multiflexi.env"
    uncommented.write_text(re.sub(r"^#([A-Z_]+=)", r"\1", example_env(), flags=re.MULTILINE))
    everything = load_settings(uncommented, {})
    assert everything.db_connection == "pgsql" and everything.timezone == "Europe/Prague"


def sysusers_and_tmpfiles() -> list[Path]:
    return [SYSTEMD / "sysusers.d" / "multiflexi.conf", SYSTEMD / "tmpfiles.d" / "multiflexi.conf"]


def test_the_sysusers_and_tmpfiles_files_name_the_units_user_and_directories() -> None:
    sysusers, tmpfiles = (p.read_text() for p in sysusers_and_tmpfiles())
    assert re.search(rf'^u\s+multiflexi\s+-\s+"[^"]+"\s+{DATA_DIR}$', sysusers, re.MULTILINE)
    assert re.search(rf"^d\s+{DATA_DIR}\s+0750\s+multiflexi\s+multiflexi", tmpfiles, re.M)
    assert re.search(rf"^z\s+{ENV_FILE}\s+0640\s+root\s+multiflexi", tmpfiles, re.M)


@pytest.mark.skipif(
    not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")),
    reason="systemd-sysusers/systemd-tmpfiles not installed",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="tmpfiles sets owners: needs root")
def test_sysusers_and_tmpfiles_make_the_user_and_directories_in_a_throw_away_root(
    tmp_path: Path,
) -> None:
    sysusers, tmpfiles = sysusers_and_tmpfiles()
    (tmp_path / "etc" / "multiflexi").mkdir(parents=True)
    (tmp_path / ENV_FILE.lstrip("/")).write_text(example_env())
    for argv in (
        ["systemd-sysusers", f"--root={tmp_path}", str(sysusers)],
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(tmpfiles)],
    ):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    (entry,) = [line for line in passwd if line.startswith("multiflexi:")]
    uid, gid = int(entry.split(":")[2]), int(entry.split(":")[3])
    assert entry.endswith(f":{DATA_DIR}:/usr/sbin/nologin")
    data = (tmp_path / DATA_DIR.lstrip("/")).stat()
    assert (data.st_uid, data.st_gid, data.st_mode & 0o777) == (uid, gid, 0o750)
    env = (tmp_path / ENV_FILE.lstrip("/")).stat()
    assert (env.st_uid, env.st_gid, env.st_mode & 0o777) == (0, gid, 0o640)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_knows_every_setting_of_the_unit(name: str, tmp_path: Path) -> None:
    # The programs are not installed here: verify checks they exist, so /bin/true stands
    # in for them. Any unknown key or bad value is a complaint on stderr.
    text = re.sub(
        r"^ExecStart=\S+", "ExecStart=/bin/true", (SYSTEMD / name).read_text(), flags=re.M
    )
    path = tmp_path / name.replace("@.", "@1.")
    path.write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (res.returncode, res.stderr) == (0, "")

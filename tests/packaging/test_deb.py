"""``make deb``: the Debian packages are built for real (pip fills the bundled environment
from PyPI), their contents and maintainer scripts checked, and they are unpacked into a
throw-away root whose bundled programs run. Nothing is installed on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.test_units import ENV_FILE, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb not installed"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no Debian python3"),
]

VENV = "/usr/lib/multiflexi/venv"
VERSION = "0.1.0-1"


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The packages, built once for this module: name -> .deb."""
    base = tmp_path_factory.mktemp("deb")
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging/deb/build.py"),
            "--out",
            str(base / "out"),
            "--work",
            str(base / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    built = {p.name.split("_")[0]: p for p in (base / "out").glob("*.deb")}
    assert set(built) == {
        "multiflexi-common",
        "multiflexi-cli",
        "multiflexi-executor",
        "multiflexi-scheduler",
    }
    return built


@pytest.fixture(scope="module")
def unpacked(debs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every package unpacked into one throw-away root (``dpkg -x``)."""
    root = tmp_path_factory.mktemp("root")
    for deb in debs.values():
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=120)
    return root


def info(deb: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
    ).stdout
    fields: dict[str, str] = {}
    for line in out.splitlines():
        if line and not line.startswith(" "):
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


def contents(deb: Path) -> dict[str, str]:
    """Path -> mode string (and link target) from ``dpkg-deb -c``."""
    out = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True
    ).stdout
    listing = {}
    for line in out.splitlines():
        mode, owner, _size, _date, _time, path, *rest = line.split()
        assert owner == "root/root", line
        listing[path.removeprefix(".")] = f"{mode} {' '.join(rest)}".strip()
    return listing


def test_the_thin_packages_depend_on_the_common_one_of_the_same_version(
    debs: dict[str, Path],
) -> None:
    common = info(debs["multiflexi-common"])
    assert common["Version"] == VERSION
    depends = common["Depends"].split(", ")
    assert "libmagic1" in depends
    assert any(d.startswith("python3.") for d in depends)  # the venv's interpreter
    for name in ("multiflexi-cli", "multiflexi-executor", "multiflexi-scheduler"):
        fields = info(debs[name])
        assert fields["Architecture"] == "all"
        assert fields["Depends"] == f"multiflexi-common (= {VERSION})"


def test_the_commands_are_links_into_the_bundled_environment(debs: dict[str, Path]) -> None:
    cli = contents(debs["multiflexi-cli"])
    for command in ("multiflexi-cli", "multiflexi-job2script", "multiflexi-job2env"):
        assert cli[f"/usr/bin/{command}"].endswith(f"-> ../lib/multiflexi/venv/bin/{command}")
    executor = contents(debs["multiflexi-executor"])
    assert "/usr/bin/multiflexi-executor" in executor
    assert "/usr/lib/systemd/system/multiflexi-executor.service" in executor
    assert "/usr/lib/systemd/system/multiflexi-executor@.service" in executor
    scheduler = contents(debs["multiflexi-scheduler"])
    assert "/usr/lib/systemd/system/multiflexi-scheduler.service" in scheduler
    common = contents(debs["multiflexi-common"])
    for path in (
        "/usr/lib/sysusers.d/multiflexi.conf",
        "/usr/lib/tmpfiles.d/multiflexi.conf",
        ENV_FILE,
        f"{VENV}/pyvenv.cfg",
        f"{VENV}/bin/multiflexi-executor",
    ):
        assert path in common, path
    assert not [p for p in common if p.endswith(".pyc")]  # compiled by postinst
    # The units' Documentation= pages are installed.
    for name in ("multiflexi-executor.service", "multiflexi-scheduler.service"):
        for line in (ROOT / "systemd" / name).read_text().splitlines():
            if line.startswith("Documentation="):
                for url in line.removeprefix("Documentation=").split():
                    assert url.removeprefix("file://") in common, url


def test_the_environment_file_is_a_conffile(debs: dict[str, Path], tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", str(debs["multiflexi-common"]), str(tmp_path)], check=True)
    assert (tmp_path / "conffiles").read_text().split() == [ENV_FILE]


def test_the_bundled_environment_names_only_its_installed_path(unpacked: Path) -> None:
    venv = unpacked / VENV.lstrip("/")
    assert f"-m venv --without-pip {VENV}\n" in (venv / "pyvenv.cfg").read_text()
    shebang = (venv / "bin/multiflexi-executor").read_text().splitlines()[0]
    assert shebang == f"#!{VENV}/bin/python"
    # Debian's interpreter, which the package depends on, not the build's.
    assert (venv / "bin/python").resolve() == Path(os.path.realpath("/usr/bin/python3"))
    leaked = subprocess.run(
        ["grep", "-rl", str(unpacked), str(unpacked)], capture_output=True, text=True
    )
    assert leaked.stdout == ""


@pytest.mark.parametrize(
    "command", ["multiflexi-cli", "multiflexi-executor", "multiflexi-scheduler"]
)
def test_the_bundled_programs_run_from_the_throw_away_root(unpacked: Path, command: str) -> None:
    python = unpacked / VENV.lstrip("/") / "bin/python"
    res = subprocess.run(
        [str(python), str(unpacked / "usr/bin" / command), "--help"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout or "usage" in res.stdout


def test_the_bundled_cli_makes_and_migrates_a_database(unpacked: Path, tmp_path: Path) -> None:
    python = unpacked / VENV.lstrip("/") / "bin/python"
    res = subprocess.run(
        [str(python), str(unpacked / "usr/bin/multiflexi-cli"), "-f", "json", "status"],
        env={"PATH": "/usr/bin:/bin", "MULTIFLEXI_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert '"up_to_date": true' in res.stdout  # the migrations are in the package


# -- maintainer scripts, run with every command they call replaced by a recorder --------


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A PATH of stubs that append their name and arguments to a log, exit 0 (``getent``
    exits 2: no such user)."""
    stubs, log = tmp_path / "bin", tmp_path / "calls.log"
    stubs.mkdir()
    for name in (
        "systemd-sysusers",
        "systemd-tmpfiles",
        "getent",
        "adduser",
        "useradd",
        "install",
        "chown",
        "chmod",
        "find",
        "rmdir",
        "deb-systemd-helper",
        "deb-systemd-invoke",
        "systemctl",
    ):
        code = 2 if name == "getent" else 0
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit {code}\n')
        (stubs / name).chmod(0o755)
    yield stubs, log


def script(deb: Path, name: str, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(into)], check=True)
    path = into / name
    assert path.stat().st_mode & 0o111
    return path


def run_script(path: Path, stubs: Path, *args: str, drop: tuple[str, ...] = ()) -> None:
    for name in drop:
        (stubs / name).unlink()
    res = subprocess.run(
        ["/bin/sh", str(path), *args],
        env={"PATH": str(stubs)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def test_common_postinst_makes_the_user_and_directories_with_systemd_tools(
    debs: dict[str, Path], recorder: tuple[Path, Path], tmp_path: Path
) -> None:
    stubs, log = recorder
    run_script(script(debs["multiflexi-common"], "postinst", tmp_path / "c"), stubs, "configure")
    calls = log.read_text().splitlines()
    assert calls == [
        "systemd-sysusers /usr/lib/sysusers.d/multiflexi.conf",
        "systemd-tmpfiles --create /usr/lib/tmpfiles.d/multiflexi.conf",
    ]


def test_common_postinst_without_systemd_uses_adduser_or_useradd(
    debs: dict[str, Path], recorder: tuple[Path, Path], tmp_path: Path
) -> None:
    stubs, log = recorder
    postinst = script(debs["multiflexi-common"], "postinst", tmp_path / "c")
    run_script(postinst, stubs, "configure", drop=("systemd-sysusers", "systemd-tmpfiles"))
    calls = log.read_text().splitlines()
    assert calls[0] == "getent passwd multiflexi"
    assert calls[1].startswith("adduser --system --group --home /var/lib/multiflexi")
    assert calls[2] == "install -d -m 0750 -o multiflexi -g multiflexi /var/lib/multiflexi"
    log.unlink()
    run_script(postinst, stubs, "configure", drop=("adduser",))
    assert (
        log.read_text()
        .splitlines()[1]
        .startswith("useradd --system --user-group --home-dir /var/lib/multiflexi")
    )


def test_common_prerm_and_postrm_remove_bytecode_and_keep_the_data(
    debs: dict[str, Path], recorder: tuple[Path, Path], tmp_path: Path
) -> None:
    stubs, log = recorder
    run_script(script(debs["multiflexi-common"], "prerm", tmp_path / "c"), stubs, "remove")
    assert log.read_text().startswith(f"find {VENV} -depth -type d -name __pycache__")
    postrm = (tmp_path / "c" / "postrm").read_text()
    assert "rm -rf /var/lib" not in postrm and "userdel" not in postrm and "deluser" not in postrm
    run_script(tmp_path / "c" / "postrm", stubs, "purge")


def test_daemon_scripts_enable_on_install_stop_on_remove_and_forget_on_purge(
    debs: dict[str, Path], recorder: tuple[Path, Path], tmp_path: Path
) -> None:
    stubs, log = recorder
    deb = debs["multiflexi-executor"]
    unit = "multiflexi-executor.service"
    run_script(script(deb, "postinst", tmp_path / "e"), stubs, "configure", "")
    assert log.read_text().splitlines() == [
        f"deb-systemd-helper unmask {unit}",
        f"deb-systemd-helper --quiet was-enabled {unit}",
        f"deb-systemd-helper enable {unit}",
    ]
    prerm = (tmp_path / "e" / "prerm").read_text()
    assert f"systemctl stop {unit} 'multiflexi-executor@*.service'" in prerm
    log.unlink()
    run_script(tmp_path / "e" / "postrm", stubs, "purge")
    assert log.read_text().splitlines() == [
        f"deb-systemd-helper purge {unit}",
        f"deb-systemd-helper unmask {unit}",
    ]
    scheduler_postinst = script(debs["multiflexi-scheduler"], "postinst", tmp_path / "s")
    assert "UNIT=multiflexi-scheduler.service" in scheduler_postinst.read_text()
    assert "@" not in scheduler_postinst.read_text().replace("multiflexi-executor@", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="a chroot needs root")
@pytest.mark.skipif(not shutil.which("unshare"), reason="unshare not installed")
def test_the_packages_install_run_and_purge_in_a_throw_away_chroot(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    chroot = tmp_path / "chroot"
    chroot.mkdir()
    host_before = host_state()
    res = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            str(Path(__file__).with_name("chroot_install.sh")),
            str(chroot),
            *map(str, debs.values()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode == 77:
        pytest.skip("no overlay mounts in a private mount namespace here")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    steps = {}
    for part in res.stdout.split("== ")[1:]:
        name, _, output = part.partition("\n")
        steps[name] = output
    assert steps["user"].startswith("multiflexi:x:")
    assert steps["user"].strip().endswith(":/var/lib/multiflexi:/usr/sbin/nologin")
    assert steps["modes"].splitlines() == [
        "/var/lib/multiflexi multiflexi:multiflexi 750",
        "/etc/multiflexi/multiflexi.env root:multiflexi 640",
    ]
    enabled = steps["enabled"].split()
    assert {"multiflexi-executor.service", "multiflexi-scheduler.service"} <= set(enabled)
    # The CLI, run as the daemons' user, uses their database in the state directory.
    assert '"location": "sqlite /var/lib/multiflexi/multiflexi.sqlite"' in steps["status"]
    assert int(steps["bytecode"]) > 100  # compiled by postinst
    assert steps["remove"].strip().endswith("no /usr/lib/multiflexi")
    assert "no /etc/multiflexi" in steps["purge"]
    assert "multiflexi.sqlite" in steps["purge"]  # the data is the operator's
    assert host_state() == host_before  # nothing reached this machine


def host_state() -> tuple[str, str, bool, bool]:
    """What an installation on this machine itself would change."""
    return (
        Path("/etc/passwd").read_text(),
        Path("/var/lib/dpkg/status").read_text(),
        Path("/usr/lib/multiflexi").exists(),
        Path(ENV_FILE).exists(),
    )

"""Build MultiFlexi's Debian packages with plain ``dpkg-deb`` (``make deb``).

Debian's own Python libraries are older than the ranges in pyproject.toml, so the
packages bundle their Python environment, as dh-virtualenv does:

* ``multiflexi-common`` holds a virtual environment in ``/usr/lib/multiflexi/venv``
  made with Debian's ``/usr/bin/python3.X`` and filled by pip from PyPI with our wheel
  and its dependencies; the sysusers.d/tmpfiles.d files; the example
  ``/etc/multiflexi/multiflexi.env`` (a conffile); the docs. Its maintainer scripts make
  the user, the directories and the bytecode.
* ``multiflexi-cli``, ``multiflexi-executor``, ``multiflexi-scheduler`` are thin: links
  in ``/usr/bin`` and the daemons' units. A later ``multiflexi-server`` is one more entry
  in :data:`PACKAGES`.

The environment is built in a staging directory and relocated: script shebangs and the
few text files that name the staging path are rewritten to the installed path, and the
build fails if any other file still names it. No bytecode is shipped (it would name
the staging path); postinst compiles it.

    python packaging/deb/build.py [--out dist/deb] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
VENV = "/usr/lib/multiflexi/venv"
COMMON = "multiflexi-common"
MAINTAINER = "MultiFlexi developers <multiflexi@localhost>"
HOMEPAGE = "https://multiflexi.eu/"


@dataclass(frozen=True)
class Package:
    """A thin package: commands linked into /usr/bin, units, and its own description."""

    name: str
    summary: str
    commands: tuple[str, ...]
    #: The unit enabled and started on install, then its templates (enabled per instance).
    units: tuple[str, ...] = ()
    description: str = ""
    depends: tuple[str, ...] = field(default_factory=tuple)


PACKAGES = (
    Package(
        "multiflexi-cli",
        "MultiFlexi command line",
        ("multiflexi-cli", "multiflexi", "multiflexi-job2script", "multiflexi-job2env"),
        description="Manages applications, companies, run templates, credentials and jobs.",
    ),
    Package(
        "multiflexi-executor",
        "MultiFlexi executor daemon",
        ("multiflexi-executor",),
        ("multiflexi-executor.service", "multiflexi-executor@.service"),
        "Claims due jobs and runs them; several per host with multiflexi-executor@N.",
    ),
    Package(
        "multiflexi-scheduler",
        "MultiFlexi scheduler daemon",
        ("multiflexi-scheduler",),
        ("multiflexi-scheduler.service",),
        "Turns the schedules of run templates into queued jobs.",
    ),
)


def run(*argv: str | Path, **kwargs: object) -> None:
    print("+", " ".join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], check=True, **kwargs)  # type: ignore[call-overload]


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# -- the bundled environment -----------------------------------------------------------


def build_venv(stage: Path, python: str, work: Path) -> None:
    """Our wheel and its dependencies, from PyPI, in ``stage`` + :data:`VENV`."""
    # The wheel is built from a clean copy: setuptools' build/ in the work tree may hold
    # modules deleted since, and they would be packaged.
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = work / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source)
    (wheel,) = wheels.glob("multiflexi-*.whl")
    target = stage / VENV.lstrip("/")
    run(python, "-m", "venv", "--without-pip", target)
    # pip of this build's interpreter installs into the target's (same minor version):
    # Debian's python3.X needs no ensurepip for that.
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        target / "bin" / "python",
        "install",
        "-q",
        "--no-compile",
        "--no-warn-script-location",
        "--disable-pip-version-check",
        wheel,
    )
    relocate(target, VENV)


def relocate(target: Path, installed: str) -> None:
    """Rewrite the staging path to the installed one where a venv records it, and fail if
    any other file still names it."""
    staged = str(target).encode()
    rewritable = {"pyvenv.cfg"}
    for path in sorted(target.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if path.name == "__pycache__" or path.suffix == ".pyc":
            path.unlink()
            continue
        data = path.read_bytes()
        if staged not in data:
            continue
        in_bin = path.parent == target / "bin"
        if not (in_bin or path.name in rewritable):
            raise SystemExit(f"build: {path} names the staging directory")
        path.write_bytes(data.replace(staged, installed.encode()))
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache)


# -- package trees -----------------------------------------------------------------------


def normalise_modes(tree: Path) -> None:
    for path in tree.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def installed_size(tree: Path) -> int:
    total = sum(
        p.lstat().st_size for p in tree.rglob("*") if p.is_file() and "DEBIAN" not in p.parts
    )
    return max(1, total // 1024)


def write_md5sums(tree: Path, conffiles: list[str]) -> None:
    lines = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        if rel.parts[0] == "DEBIAN" or path.is_symlink() or not path.is_file():
            continue
        if "/" + str(rel) in conffiles:
            continue
        lines.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")
    (tree / "DEBIAN" / "md5sums").write_text("".join(lines))


def control(
    tree: Path,
    *,
    name: str,
    version: str,
    arch: str,
    depends: list[str],
    summary: str,
    description: str,
) -> None:
    body = "\n".join(f" {line}" if line else " ." for line in description.splitlines())
    fields = {
        "Package": name,
        "Version": version,
        "Architecture": arch,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_size(tree)),
        "Depends": ", ".join(depends),
        "Section": "admin",
        "Priority": "optional",
        "Homepage": HOMEPAGE,
        "Description": f"{summary}\n{body}",
    }
    text = "".join(f"{k}: {v}\n" for k, v in fields.items() if v)
    (tree / "DEBIAN").mkdir(exist_ok=True)
    (tree / "DEBIAN" / "control").write_text(text)


def maintainer_script(tree: Path, kind: str, source: str, values: dict[str, str]) -> None:
    text = (SCRIPTS / source).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.search(r"@[A-Z_]+@", text)
    if left:
        raise SystemExit(f"build: {source}: no value for {left.group()}")
    path = tree / "DEBIAN" / kind
    path.write_text(text)
    path.chmod(0o755)


def common_tree(tree: Path, python: str, work: Path) -> None:
    build_venv(tree, python, work)
    systemd = ROOT / "systemd"
    for kind in ("sysusers.d", "tmpfiles.d"):
        dest = tree / "usr/lib" / kind / "multiflexi.conf"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(systemd / kind / "multiflexi.conf", dest)
    etc = tree / "etc/multiflexi"
    etc.mkdir(parents=True)
    shutil.copy(systemd / "multiflexi.env", etc / "multiflexi.env")
    doc = tree / "usr/share/doc/multiflexi"
    doc.mkdir(parents=True)
    for page in (ROOT / "docs").glob("*.md"):
        shutil.copy(page, doc / page.name)
    own_doc = tree / "usr/share/doc" / COMMON
    own_doc.mkdir(parents=True)
    (own_doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: multiflexi\n\nFiles: *\nLicense: MIT\n"
    )


def thin_tree(tree: Path, package: Package) -> None:
    bin_dir = tree / "usr/bin"
    bin_dir.mkdir(parents=True)
    for command in package.commands:
        (bin_dir / command).symlink_to(f"../lib/multiflexi/venv/bin/{command}")
    if package.units:
        units = tree / "usr/lib/systemd/system"
        units.mkdir(parents=True)
        for unit in package.units:
            shutil.copy(ROOT / "systemd" / unit, units / unit)
    (tree / "usr/share/doc" / package.name).mkdir(parents=True)


def build(out: Path, python: str, work: Path) -> list[Path]:
    version = f"{project_version()}-1"
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()
    pyver = python_version(python)
    if work.exists():
        shutil.rmtree(work)
    out.mkdir(parents=True, exist_ok=True)
    debs: list[Path] = []

    tree = work / COMMON
    common_tree(tree, python, work)
    normalise_modes(tree)
    control(
        tree,
        name=COMMON,
        version=version,
        arch=arch,
        # The environment's compiled extensions are for this Python and architecture.
        depends=[f"python{pyver}", "libmagic1", "passwd"],
        summary="MultiFlexi: shared files and bundled Python environment",
        description=f"The Python environment of MultiFlexi in {VENV}, the daemons' user\n"
        "and directories, and the example /etc/multiflexi/multiflexi.env.",
    )
    conffiles = ["/etc/multiflexi/multiflexi.env"]
    (tree / "DEBIAN" / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    for kind in ("postinst", "prerm", "postrm"):
        maintainer_script(tree, kind, f"common.{kind}", {})
    write_md5sums(tree, conffiles)
    debs.append(pack(tree, out, COMMON, version, arch))

    for package in PACKAGES:
        tree = work / package.name
        thin_tree(tree, package)
        normalise_modes(tree)
        control(
            tree,
            name=package.name,
            version=version,
            arch="all",
            depends=[f"{COMMON} (= {version})", *package.depends],
            summary=package.summary,
            description=package.description,
        )
        if package.units:
            unit, *templates = package.units
            values = {
                "PACKAGE": package.name,
                "UNIT": unit,
                "TEMPLATES": ", ".join(templates) or "none",
                "TEMPLATE_GLOBS": " ".join(f"'{t.replace('@.', '@*.')}'" for t in templates),
            }
            for kind in ("postinst", "prerm", "postrm"):
                maintainer_script(tree, kind, f"daemon.{kind}", values)
        write_md5sums(tree, [])
        debs.append(pack(tree, out, package.name, version, "all"))
    return debs


def pack(tree: Path, out: Path, name: str, version: str, arch: str) -> Path:
    deb = out / f"{name}_{version}_{arch}.deb"
    # --root-owner-group: every file root:root without fakeroot. gzip, not xz: xz takes
    # minutes for the bundled environment on a small machine, for a quarter less size.
    run(
        "dpkg-deb",
        "--root-owner-group",
        "-Zgzip",
        "-z9",
        "--build",
        tree,
        deb,
        stdout=subprocess.DEVNULL,
    )
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build MultiFlexi's Debian packages.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "deb")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "deb")
    parser.add_argument(
        "--python", default="/usr/bin/python3", help="Debian's interpreter the packages use."
    )
    args = parser.parse_args(argv)
    python = os.path.realpath(shutil.which(args.python) or args.python)
    for deb in build(args.out.resolve(), python, args.work.resolve()):
        print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())

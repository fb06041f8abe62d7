"""A cgroup of a job's own: limits, usage and a sure kill for its whole process tree.

Made inside the executor's own cgroup (so that the executor's limits still bound its
jobs), as ``multiflexi/job-<id>``: on a cgroup v2 host one directory with ``memory.max``,
``cpu.max`` and ``pids.max``; on a v1 host one directory under each of the ``memory``,
``cpu``, ``cpuacct`` and ``pids`` hierarchies that is writable. No systemd is involved.
Every failure is an ``OSError``; the caller then falls back to ``setrlimit``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from multiflexi.executors.limits import Limits

ROOT = Path("/sys/fs/cgroup")
#: ``cpu.cfs_period_us`` / the period of ``cpu.max``.
PERIOD_US = 100_000
#: v1 hierarchies used; cpuacct gives the tree's CPU time.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
PARENT = "multiflexi"


@dataclass(frozen=True)
class Usage:
    peak_bytes: int = 0
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    oom_kills: int = 0
    #: How often a fork was refused at ``pids.max``.
    pids_refused: int = 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.events, cpu.stat, memory.oom_control, pids.events)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def _int(path: Path) -> int:
    try:
        return int(_read(path).strip() or 0)
    except ValueError:
        return 0


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller (``""`` for v2) -> path of our own cgroup, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            out[controller] = parts[2]
    return out


def layout(root: Path | None = None) -> str | None:
    """``cgroup-v2`` when ``root`` (default :data:`ROOT`) is a cgroup2 mount,
    ``cgroup-v1`` when it holds a v1 memory hierarchy, else None."""
    root = ROOT if root is None else root
    if (root / "cgroup.controllers").exists():
        return "cgroup-v2"
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return "cgroup-v1"
    return None


class JobCgroup:
    """The cgroup directories of one job (one for v2, one per hierarchy for v1)."""

    def __init__(self, mechanism: str, dirs: dict[str, Path]) -> None:
        self.mechanism = mechanism
        #: Controller (``unified`` for v2) -> directory.
        self.dirs = dirs

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    def _dir(self, controller: str) -> Path | None:
        return self.dirs.get("unified") or self.dirs.get(controller)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in dict.fromkeys(self.dirs.values()):
            for word in _read(d / "cgroup.procs").split():
                found.add(int(word))
        return found

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU of everything that ran in the cgroup."""
        if self.mechanism == "cgroup-v2":
            d = self.dirs["unified"]
            stat = _keyed(_read(d / "cpu.stat"))
            return stat.get("user_usec", 0) / 1e6, stat.get("system_usec", 0) / 1e6
        d2 = self.dirs.get("cpuacct")
        if d2 is None:
            return 0.0, 0.0
        user, system = _int(d2 / "cpuacct.usage_user"), _int(d2 / "cpuacct.usage_sys")
        if user or system:
            return user / 1e9, system / 1e9
        hz = os.sysconf("SC_CLK_TCK")
        stat = _keyed(_read(d2 / "cpuacct.stat"))
        return stat.get("user", 0) / hz, stat.get("system", 0) / hz

    def usage(self) -> Usage:
        user, system = self.cpu_seconds()
        if self.mechanism == "cgroup-v2":
            d = self.dirs["unified"]
            events = _keyed(_read(d / "memory.events"))
            return Usage(
                peak_bytes=_int(d / "memory.peak"),
                cpu_user=user,
                cpu_system=system,
                oom_kills=events.get("oom_kill", 0),
                pids_refused=_keyed(_read(d / "pids.events")).get("max", 0),
            )
        mem, pids = self.dirs.get("memory"), self.dirs.get("pids")
        oom = 0
        peak = 0
        if mem is not None:
            peak = _int(mem / "memory.max_usage_in_bytes")
            control = _keyed(_read(mem / "memory.oom_control"))
            # Older kernels have no oom_kill counter: a refused charge is the sign.
            oom = control.get("oom_kill", _int(mem / "memory.failcnt"))
        refused = _keyed(_read(pids / "pids.events")).get("max", 0) if pids is not None else 0
        return Usage(peak, user, system, oom, refused)

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def kill_all(self, sig: int) -> None:
        """Signal every process in the cgroup until it is empty (2 s at most)."""
        deadline = time.monotonic() + 2.0
        while True:
            pids = self.pids()
            if not pids or time.monotonic() >= deadline:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            time.sleep(0.01)

    def remove(self) -> None:
        """Remove the directories; a just-killed process may keep one busy briefly."""
        for d in dict.fromkeys(self.dirs.values()):
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                        break
                    time.sleep(0.01)


def _mkdir(path: Path) -> Path:
    """Make the job's directory; returns it (another name if the usual one is taken)."""
    try:
        path.mkdir()
        return path
    except FileExistsError:
        pass
    try:  # left by a job of a crashed executor: empty by now, so it goes
        path.rmdir()
        path.mkdir()
        return path
    except OSError:  # busy: another executor's job of the same id (another database)
        other = path.with_name(f"{path.name}-{os.getpid()}")
        other.mkdir()
        return other


def create(
    limits: Limits, root: Path | None = None, proc_cgroup: str | None = None
) -> JobCgroup | None:
    """A cgroup for ``limits`` (None when this host has no usable cgroups)."""
    root = ROOT if root is None else root
    kind = layout(root)
    if kind is None:
        return None
    if proc_cgroup is None:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    own = own_paths(proc_cgroup)
    if kind == "cgroup-v2":
        return _create_v2(limits, root, own.get("", "/"))
    return _create_v1(limits, root, own)


def _create_v2(limits: Limits, root: Path, own: str) -> JobCgroup:
    base = root / own.lstrip("/")
    parent = base / PARENT
    wanted = [
        c for c in ("memory", "cpu", "pids") if c in _read(root / "cgroup.controllers").split()
    ]
    parent.mkdir(exist_ok=True)
    # Controllers must be enabled on the way down; our own cgroup may hold processes,
    # which v2 forbids for a cgroup that delegates controllers: the caller falls back.
    enable = " ".join(f"+{c}" for c in wanted)
    if enable:
        _write(base / "cgroup.subtree_control", enable)
        _write(parent / "cgroup.subtree_control", enable)
    job = _mkdir(parent / limits.label)
    group = JobCgroup("cgroup-v2", {"unified": job})
    try:
        if limits.memory_limit is not None:
            _write(job / "memory.max", str(limits.memory_limit))
            if (job / "memory.swap.max").exists():
                _write(job / "memory.swap.max", "0")
        if limits.cpus is not None:
            _write(job / "cpu.max", f"{int(limits.cpus * PERIOD_US)} {PERIOD_US}")
        if limits.max_processes is not None:
            _write(job / "pids.max", str(limits.max_processes))
    except OSError:
        group.remove()
        raise
    return group


def _create_v1(limits: Limits, root: Path, own: dict[str, str]) -> JobCgroup:
    needed = {"memory": limits.memory_limit is not None, "cpu": limits.cpus is not None}
    needed["pids"] = limits.max_processes is not None
    needed["cpuacct"] = True  # the tree's CPU time, limited or not
    dirs: dict[str, Path] = {}
    group = JobCgroup("cgroup-v1", dirs)
    try:
        for controller in V1_CONTROLLERS:
            hierarchy = root / controller
            if not (hierarchy / "cgroup.procs").exists():
                if needed[controller] and controller != "cpuacct":
                    raise OSError(errno.ENOENT, f"no {controller} cgroup hierarchy")
                continue
            real = hierarchy.resolve()
            shared = next((d for c, d in dirs.items() if (root / c).resolve() == real), None)
            if shared is not None:  # co-mounted (cpu,cpuacct): one directory serves both
                dirs[controller] = shared
                continue
            parent = hierarchy / own.get(controller, "/").lstrip("/") / PARENT
            parent.mkdir(parents=True, exist_ok=True)
            dirs[controller] = _mkdir(parent / limits.label)
        mem = dirs.get("memory")
        if mem is not None and limits.memory_limit is not None:
            _write(mem / "memory.limit_in_bytes", str(limits.memory_limit))
            if (mem / "memory.memsw.limit_in_bytes").exists():  # swap counts too
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_limit))
        cpu = dirs.get("cpu")
        if cpu is not None and limits.cpus is not None:
            _write(cpu / "cpu.cfs_period_us", str(PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(int(limits.cpus * PERIOD_US)))
        pids = dirs.get("pids")
        if pids is not None and limits.max_processes is not None:
            _write(pids / "pids.max", str(limits.max_processes))
    except OSError:
        group.remove()
        raise
    return group

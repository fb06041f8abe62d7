"""The job cgroup's files, on a fake cgroup tree (a plain directory): what is written
for each limit, what is read back as usage, for both layouts. The real kernel paths are
exercised by tests/storage/test_job_limits.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiflexi.executors import cgroups
from multiflexi.executors.limits import Limits

MiB = 1 << 20
LIMITS = Limits(memory_limit=64 * MiB, cpus=0.5, max_processes=20, label="job-9")


def test_the_layout_is_told_by_the_mount(tmp_path: Path) -> None:
    assert cgroups.layout(tmp_path) is None
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("max")
    assert cgroups.layout(tmp_path) == "cgroup-v1"
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert cgroups.layout(tmp_path) == "cgroup-v2"


def test_v2_writes_the_limits_in_the_executors_own_cgroup(tmp_path: Path) -> None:
    own = tmp_path / "system.slice" / "multiflexi-executor.service"
    own.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    group = cgroups.create(LIMITS, tmp_path, "0::/system.slice/multiflexi-executor.service\n")
    assert group is not None and group.mechanism == "cgroup-v2"
    job = own / "multiflexi" / "job-9"
    assert group.procs_files() == [str(job / "cgroup.procs")]
    assert (own / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (job / "memory.max").read_text() == str(64 * MiB)
    assert (job / "cpu.max").read_text() == "50000 100000"
    assert (job / "pids.max").read_text() == "20"
    (job / "memory.peak").write_text(f"{50 * MiB}\n")
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (job / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    (job / "pids.events").write_text("max 2\n")
    usage = group.usage()
    assert usage == cgroups.Usage(50 * MiB, 1.0, 0.5, 1, 2)


def test_v1_writes_each_controller_and_shares_co_mounted_ones(tmp_path: Path) -> None:
    for controller in ("memory", "cpu,cpuacct", "pids"):
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("max")
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")
    group = cgroups.create(LIMITS, tmp_path, "4:memory:/daemon\n3:cpu,cpuacct:/\n2:pids:/\n")
    assert group is not None and group.mechanism == "cgroup-v1"
    mem = tmp_path / "memory" / "daemon" / "multiflexi" / "job-9"
    cpu = tmp_path / "cpu" / "multiflexi" / "job-9"
    assert group.dirs["cpuacct"] == group.dirs["cpu"] == cpu
    assert len(group.procs_files()) == 3
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "pids" / "multiflexi" / "job-9" / "pids.max").read_text() == "20"
    (mem / "memory.max_usage_in_bytes").write_text(str(70 * MiB))
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (cpu / "cpuacct.usage_user").write_text("2000000000")
    (cpu / "cpuacct.usage_sys").write_text("250000000")
    assert group.usage() == cgroups.Usage(70 * MiB, 2.0, 0.25, 2, 0)


def test_a_missing_hierarchy_that_a_limit_needs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").write_text("")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("max")
    with pytest.raises(OSError, match="no cpu cgroup hierarchy"):
        cgroups.create(LIMITS, tmp_path, "")
    assert not (tmp_path / "memory" / "multiflexi" / "job-9").exists()


def test_a_taken_job_directory_is_reused_when_empty_or_avoided_when_busy(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    leftover = tmp_path / "multiflexi" / "job-9"
    leftover.mkdir(parents=True)
    group = cgroups.create(Limits(memory_limit=MiB, label="job-9"), tmp_path, "0::/\n")
    assert group is not None and group.dirs["unified"] == leftover
    # Busy now (a file stands for the processes in it): the next one goes elsewhere.
    again = cgroups.create(Limits(memory_limit=MiB, label="job-9"), tmp_path, "0::/\n")
    assert again is not None and again.dirs["unified"].name.startswith("job-9-")

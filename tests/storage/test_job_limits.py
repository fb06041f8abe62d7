"""Resource limits on real jobs: the process tree is stopped at its limit, the job fails
with the limit as its reason, its output so far is kept, and other jobs go on.

Every runaway here is bounded by itself as well (a finite loop, a timeout), so that a
limit that failed to apply could never hurt the machine."""

from __future__ import annotations

import resource
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multiflexi.executors import cgroups
from multiflexi.executors.limits import Limits
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job, job_record
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Job, JobStatus
from tests.factories import make_script, make_setup

MiB = 1 << 20


def _cgroup_problem() -> str | None:
    try:
        group = cgroups.create(Limits(memory_limit=64 * MiB, max_processes=10, label="probe"))
    except OSError as exc:
        return f"cgroups not writable here: {exc}"
    if group is None:
        return "no cgroup hierarchy on this host"
    group.remove()
    return None


CGROUP_PROBLEM = _cgroup_problem()
needs_cgroup = pytest.mark.skipif(CGROUP_PROBLEM is not None, reason=CGROUP_PROBLEM or "")
MECHANISMS = [pytest.param("auto", marks=needs_cgroup, id="cgroup"), "rlimit"]

HOG = """
import sys
print("allocating", flush=True)
print("on stderr", file=sys.stderr, flush=True)
hoard = []
for _ in range(64):  # 512 MiB at most, whatever happens
    hoard.append(bytearray(8 << 20))
    for i in range(0, 8 << 20, 4096):
        hoard[-1][i] = 1
print("survived")
"""

SPIN = """
import time
print("spinning", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    pass
"""

# 200 sleeps at most, each gone after 3 s: a fork bomb that always ends.
FORKS = """
i=0
echo forking
while [ $i -lt 200 ]; do sleep 3 & i=$((i+1)); done
wait
"""

FLOOD = """
import os
block = b"x" * (1 << 20)
for _ in range(1024):  # 1 GiB at most
    os.write(1, block)
"""


def run(db: Database, rt_id: int, mechanism: str = "auto") -> Job:
    settings = replace(db.settings, limits_mechanism=mechanism)
    job = create_job(db, settings, runtemplate_id=rt_id)
    claim = claim_job(db, job.id, new_worker_id("test"), settings.lease_seconds)
    JobRunner(db, settings, job_hooks=[]).perform_job(claim)
    with db.read() as s:
        return s.get_one(Job, job.id)


def output(db: Database, job_id: int, name: str = "stdout.txt") -> bytes:
    with db.read() as s:
        art = s.scalars(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.filename == name)
        ).one()
    return b"".join(blobs.iter_content(db, art.id))


def expected_mechanism(mechanism: str) -> str:
    return cgroups.layout() or "rlimit" if mechanism == "auto" else "rlimit"


@needs_cgroup
def test_a_memory_hog_is_killed_at_its_limit_while_its_neighbour_succeeds(
    sqlite_db: Database, tmp_path: Path
) -> None:
    hog = make_script(tmp_path, HOG, "hog.py")
    _, _, hog_rt = make_setup(sqlite_db, cmdparams=str(hog), memory_limit=64 * MiB, timeout=60)
    calm = make_script(tmp_path, "import time; time.sleep(1); print('fine')", "calm.py")
    _, _, calm_rt = make_setup(sqlite_db, cmdparams=str(calm), slug="calm", memory_limit=64 * MiB)
    neighbour: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: neighbour.update(job=run(sqlite_db, calm_rt)))
    thread.start()
    job = run(sqlite_db, hog_rt)
    thread.join(60)

    assert job.status == JobStatus.FAILED
    assert job.reason == "memory limit 64 MiB exceeded"
    assert job.limits_mechanism == cgroups.layout()
    assert job.max_rss_kb and 32 * 1024 < job.max_rss_kb <= 64 * 1024 + 1024
    assert output(sqlite_db, job.id) == b"allocating\n"
    assert output(sqlite_db, job.id, "stderr.txt") == b"on stderr\n"
    other = neighbour["job"]
    assert other.status == JobStatus.SUCCESS and other.reason == ""
    assert output(sqlite_db, other.id) == b"fine\n"


def test_under_the_rlimit_fallback_a_memory_hog_fails_with_the_limit_named(
    sqlite_db: Database, tmp_path: Path
) -> None:
    hog = make_script(tmp_path, HOG, "hog.py")
    _, _, rt = make_setup(sqlite_db, cmdparams=str(hog), memory_limit=64 * MiB, timeout=60)
    job = run(sqlite_db, rt, "rlimit")

    assert job.status == JobStatus.FAILED
    assert job.limits_mechanism == "rlimit"
    assert job.reason.startswith("exit code 1:")
    assert job.reason.endswith("(under an address-space limit of 64 MiB (rlimit))")
    assert b"MemoryError" in output(sqlite_db, job.id, "stderr.txt")
    assert output(sqlite_db, job.id) == b"allocating\n"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_job_over_its_cpu_time_limit_fails(
    sqlite_db: Database, tmp_path: Path, mechanism: str
) -> None:
    spin = make_script(tmp_path, SPIN)
    _, _, rt = make_setup(sqlite_db, cmdparams=str(spin), cpu_time_limit=1, timeout=60)
    job = run(sqlite_db, rt, mechanism)

    assert job.status == JobStatus.FAILED
    assert job.reason == "cpu time limit 1 s exceeded"
    assert job.limits_mechanism == expected_mechanism(mechanism)
    # the kernel checks RLIMIT_CPU on its own clock: rusage may read a little less
    assert (job.cpu_user or 0) + (job.cpu_system or 0) >= 0.5
    assert output(sqlite_db, job.id) == b"spinning\n"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_fork_bomb_is_stopped_by_the_process_limit(
    sqlite_db: Database, tmp_path: Path, mechanism: str
) -> None:
    _, _, rt = make_setup(
        sqlite_db, executable="/bin/sh", cmdparams=f"-c '{FORKS}'", max_processes=20, timeout=60
    )
    job = run(sqlite_db, rt, mechanism)

    assert job.status == JobStatus.FAILED
    assert job.reason == "process limit 20 reached"
    assert job.limits_mechanism == expected_mechanism(mechanism)
    assert output(sqlite_db, job.id) == b"forking\n"
    assert (job.wall_seconds or 0) < 60  # stopped, not timed out


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_an_output_flood_is_truncated_at_the_limit_with_memory_flat(
    sqlite_db: Database, tmp_path: Path, mechanism: str
) -> None:
    flood = make_script(tmp_path, FLOOD)
    _, _, rt = make_setup(sqlite_db, cmdparams=str(flood), output_limit=32 * MiB, timeout=60)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job = run(sqlite_db, rt, mechanism)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before

    assert job.status == JobStatus.FAILED
    assert job.reason == "output limit 32 MiB reached: output truncated"
    assert job.limits_mechanism == expected_mechanism(mechanism)
    stored = output(sqlite_db, job.id)
    assert len(stored) == 32 * MiB and set(stored) == {ord("x")}
    assert grown_kb < 16 * 1024  # the executor streamed it: far less than the output


def test_a_job_within_its_limits_succeeds_and_sees_them(
    sqlite_db: Database, tmp_path: Path
) -> None:
    probe = make_script(
        tmp_path,
        "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print(open('/proc/self/cgroup').read())",
    )
    _, _, rt = make_setup(
        sqlite_db, cmdparams=str(probe), max_open_files=64, cpus=0.5, memory_limit=256 * MiB
    )
    job = run(sqlite_db, rt)

    assert job.status == JobStatus.SUCCESS and job.reason == ""
    lines = output(sqlite_db, job.id).decode().splitlines()
    assert lines[0] == "64"
    if CGROUP_PROBLEM is None:
        assert f"/multiflexi/job-{job.id}" in "\n".join(lines[1:])
        # the cgroup goes with the job
        assert not any(
            Path(d).exists() for d in Path("/sys/fs/cgroup").glob(f"**/multiflexi/job-{job.id}")
        )
    with sqlite_db.read() as s:
        record = job_record(s, s.get_one(Job, job.id))
    assert record["limits_mechanism"] == job.limits_mechanism


@needs_cgroup
def test_the_cpu_share_is_written_to_the_jobs_cgroup(sqlite_db: Database, tmp_path: Path) -> None:
    if cgroups.layout() != "cgroup-v1":
        pytest.skip("reads the v1 cpu controller")
    probe = make_script(
        tmp_path,
        "import re\n"
        "path = re.search(r'^\\d+:cpu:(.*)$', open('/proc/self/cgroup').read(), re.M)[1]\n"
        "print(open('/sys/fs/cgroup/cpu' + path + '/cpu.cfs_quota_us').read().strip())",
    )
    _, _, rt = make_setup(sqlite_db, cmdparams=str(probe), cpus=0.5)
    job = run(sqlite_db, rt)
    assert job.status == JobStatus.SUCCESS, job.reason
    assert output(sqlite_db, job.id) == b"50000\n"


def test_a_job_without_limits_has_no_mechanism(sqlite_db: Database) -> None:
    _, _, rt = make_setup(sqlite_db, cmdparams="-c pass")
    job = run(sqlite_db, rt)
    assert job.status == JobStatus.SUCCESS and job.limits_mechanism is None


def test_insisting_on_a_cgroup_where_there_is_none_fails_the_job_before_it_runs(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cgroups, "ROOT", tmp_path / "no-cgroups")
    marker = tmp_path / "ran"
    _, _, rt = make_setup(
        sqlite_db, cmdparams=f"-c \"open('{marker}', 'w')\"", memory_limit=64 * MiB
    )
    job = run(sqlite_db, rt, "cgroup")
    assert job.status == JobStatus.FAILED
    assert job.reason == "no cgroup for the job's limits: none usable on this host"
    assert job.limits_mechanism is None
    assert not marker.exists()


def test_result_files_count_against_the_output_limit(sqlite_db: Database, tmp_path: Path) -> None:
    writer = make_script(
        tmp_path,
        "import os\n"
        "print('writing')\n"
        "for name in ('a.bin', 'b.bin', 'c.bin'):\n"
        "    open(os.path.join(os.environ['MULTIFLEXI_TMP'], name), 'wb').write(b'z' * (1 << 20))\n",
    )
    _, _, rt = make_setup(sqlite_db, cmdparams=str(writer), output_limit=5 * MiB // 2)
    job = run(sqlite_db, rt)

    assert job.status == JobStatus.FAILED
    assert job.reason == "output limit 2.5 MiB reached: result files not kept: c.bin"
    with sqlite_db.read() as s:
        names = set(s.scalars(select(Artifact.filename).where(Artifact.job_id == job.id)))
    assert {"stdout.txt", "a.bin", "b.bin"} <= names and "c.bin" not in names
    assert output(sqlite_db, job.id) == b"writing\n"

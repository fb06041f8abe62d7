"""Resource limits under the real executor daemon: jobs at their limits fail with the
limit as reason while the other jobs of the same run succeed, and the daemon goes on."""

from __future__ import annotations

import subprocess
from pathlib import Path

from multiflexi.jobs.service import create_job
from multiflexi.storage.database import Database
from tests.daemons.helpers import EXECUTOR, daemon_env, job
from tests.factories import make_script, make_setup
from tests.storage.test_job_limits import FLOOD, HOG, MiB, needs_cgroup, output


@needs_cgroup
def test_jobs_at_their_limits_fail_while_the_others_of_the_run_succeed(
    sqlite_db: Database, tmp_path: Path
) -> None:
    hog = make_script(tmp_path, HOG, "hog.py")
    flood = make_script(tmp_path, FLOOD, "flood.py")
    probe = make_script(
        tmp_path,
        "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])",
        "probe.py",
    )
    plans = {
        "hog": make_setup(sqlite_db, cmdparams=str(hog), memory_limit=64 * MiB, timeout=60),
        "flood": make_setup(
            sqlite_db, cmdparams=str(flood), slug="flood", output_limit=8 * MiB, timeout=60
        ),
        "probe": make_setup(sqlite_db, cmdparams=str(probe), slug="probe"),
    }
    jobs = {
        name: create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt).id
        for name, (_, _, rt) in plans.items()
    }
    env = daemon_env(sqlite_db, MULTIFLEXI_MAX_PARALLEL="2", MULTIFLEXI_DEFAULT_MAX_OPEN_FILES="77")
    res = subprocess.run([EXECUTOR, "--once"], env=env, capture_output=True, timeout=180)
    assert res.returncode == 0, res.stderr

    hogged, flooded, probed = (job(sqlite_db, jobs[name]) for name in ("hog", "flood", "probe"))
    assert (hogged.status, hogged.reason) == ("failed", "memory limit 64 MiB exceeded")
    assert (flooded.status, flooded.reason) == (
        "failed",
        "output limit 8 MiB reached: output truncated",
    )
    assert len(output(sqlite_db, flooded.id)) == 8 * MiB
    # The global default (configuration) applies to a template that sets nothing.
    assert (probed.status, probed.reason) == ("success", "")
    assert output(sqlite_db, probed.id) == b"77\n"
    assert probed.limits_mechanism == hogged.limits_mechanism != "rlimit"

"""A job goes through its whole lifecycle on every backend, with real processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from multiflexi.errors import Conflict
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, Job, JobStatus
from tests.factories import make_script, make_setup

PROBE = """
import json, os, sys
out = os.environ["MULTIFLEXI_TMP"]
print("hello from", os.environ["MULTIFLEXI_COMPANY_NAME"])
print("warn", file=sys.stderr)
json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, open(os.environ["RESULT_FILE"], "w"))
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
open(os.path.join(out, "sub", "rows.csv"), "w").write("a,b\\n1,2\\n")
sys.exit(int(os.environ.get("EXIT", "0")))
"""


def run(db: Database, rt_id: int, **kwargs: object) -> Job:
    job = create_job(db, db.settings, runtemplate_id=rt_id, **kwargs)  # type: ignore[arg-type]
    claim = claim_job(db, job.id, new_worker_id("test"), db.settings.lease_seconds)
    JobRunner(db, db.settings, job_hooks=[]).perform_job(claim)
    with db.read() as s:
        return s.get(Job, job.id)  # type: ignore[return-value]


def artifacts(db: Database, job_id: int) -> dict[str, tuple[Artifact, bytes]]:
    with db.read() as s:
        arts = s.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
    return {a.filename: (a, b"".join(blobs.iter_content(db, a.id))) for a in arts}


def test_a_job_runs_to_success_and_leaves_a_complete_record(
    any_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, company_id, rt_id = make_setup(
        any_db,
        cmdparams=f"{script} {{GREETING}} 'two words'",
        fields={
            "GREETING": {"defval": "a b; $(rm -rf /) `x`"},
            "RESULT_FILE": {"defval": "result.json"},
            "TOKEN": {"type": "password"},
        },
        config={"TOKEN": "s3cr3t-value"},
        artifacts={r".*\.csv$": "Rows as CSV"},
        exit_codes={0: ("All good", "success")},
        company_env={"COMPANY_ONLY": "yes"},
    )
    job = run(any_db, rt_id, company_id=company_id, overrides={"EXTRA": "1"})

    assert job.status == JobStatus.SUCCESS
    assert job.exitcode == 0 and job.reason == ""
    assert job.created <= job.scheduled_at <= job.begin <= job.end  # type: ignore[operator]
    assert job.wall_seconds and job.wall_seconds > 0 and job.max_rss_kb and job.pid
    arts = artifacts(any_db, job.id)
    assert set(arts) == {"stdout.txt", "stderr.txt", "result.json", "sub/rows.csv"}
    assert arts["stdout.txt"][1].startswith(b"hello from Acme")
    assert arts["stderr.txt"][1] == b"warn\n"
    assert arts["sub/rows.csv"][0].note == "Rows as CSV"
    assert arts["sub/rows.csv"][0].content_type == "text/csv"
    seen = json.loads(arts["result.json"][1])
    assert seen["argv"] == ["a b; $(rm -rf /) `x`", "two words"]
    assert seen["env"]["TOKEN"] == "s3cr3t-value"
    assert seen["env"]["COMPANY_ONLY"] == "yes" and seen["env"]["EXTRA"] == "1"
    assert seen["env"]["MULTIFLEXI_JOB_ID"] == str(job.id)
    assert "DB_PASSWORD" not in seen["env"]
    sources = {v["name"]: v["source"] for v in job.env}
    assert sources["GREETING"].startswith("app:") and sources["EXTRA"] == "override"
    assert sources["TOKEN"].startswith("runtemplate:") and sources["COMPANY_ONLY"].startswith(
        "company:"
    )
    stored = json.dumps(job.env)
    assert "s3cr3t-value" not in stored
    assert not Path(job.workdir).exists()


def test_a_failing_exit_code_fails_the_job_with_the_apps_own_meaning(
    any_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, PROBE)
    _, _, rt_id = make_setup(
        any_db,
        cmdparams=str(script),
        fields={"RESULT_FILE": {"defval": "r.json"}, "EXIT": {"defval": "3"}},
        exit_codes={3: ("Upstream not reachable", "warning")},
    )
    job = run(any_db, rt_id)
    assert job.status == JobStatus.FAILED and job.exitcode == 3
    assert job.reason == "exit code 3: Upstream not reachable"


@pytest.mark.parametrize(
    ("setup", "code", "reason"),
    [
        ({"executable": "/nonexistent/tool"}, 127, "executable not found: /nonexistent/tool"),
        ({"executable": "NONEXEC"}, 126, "executable not executable"),
        ({"fields": {"NEEDED": {"required": True}}}, 78, "required value missing: NEEDED"),
        (
            {"fields": {"INPUT": {"type": "file-path", "defval": "/no/such/file"}}},
            66,
            "input file missing: INPUT=/no/such/file",
        ),
        ({"cmdparams": "'unterminated"}, 78, "quot"),
    ],
)
def test_preexecution_failures_end_the_job_failed_with_a_precise_reason(
    sqlite_db: Database, tmp_path: Path, setup: dict[str, object], code: int, reason: str
) -> None:
    if setup.get("executable") == "NONEXEC":
        plain = tmp_path / "plain-file"
        plain.write_text("not a program")
        plain.chmod(0o644)
        setup = {"executable": str(plain)}
    _, _, rt_id = make_setup(sqlite_db, **setup)  # type: ignore[arg-type]
    job = run(sqlite_db, rt_id)
    assert job.status == JobStatus.FAILED
    assert job.exitcode == code
    assert reason in job.reason
    arts = artifacts(sqlite_db, job.id)
    assert arts["stdout.txt"][1] == b""
    assert reason.encode() in arts["stderr.txt"][1]


def test_a_job_root_that_cannot_be_created_gives_the_job_back_in_its_attempt(
    tmp_path: Path, sqlite_db: Database
) -> None:
    from multiflexi.config import settings_from_values
    from multiflexi.errors import ExecutorFault

    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = settings_from_values(
        {**sqlite_db.settings.raw, "MULTIFLEXI_JOBS_DIR": str(blocker / "jobs")}
    )
    db = Database(settings)
    _, _, rt_id = make_setup(db, cmdparams="-c pass")
    made = create_job(db, settings, runtemplate_id=rt_id)
    claim = claim_job(db, made.id, new_worker_id("test"), settings.lease_seconds)
    with pytest.raises(ExecutorFault, match="queued again for another executor"):
        JobRunner(db, settings, job_hooks=[]).perform_job(claim)
    with db.read() as s:
        job = s.get(Job, made.id)
    assert job is not None and job.status == JobStatus.SCHEDULED and job.attempt == 1
    assert "cannot run jobs: output directory not creatable" in job.reason


def test_a_file_where_the_job_directory_goes_fails_the_job(sqlite_db: Database) -> None:
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass")
    job = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id)
    root = Path(sqlite_db.settings.job_root)
    root.mkdir(parents=True, exist_ok=True)
    (root / str(job.id)).write_text("not a directory")
    claim = claim_job(sqlite_db, job.id, new_worker_id("test"), sqlite_db.settings.lease_seconds)
    JobRunner(sqlite_db, sqlite_db.settings, job_hooks=[]).perform_job(claim)
    with sqlite_db.read() as s:
        done = s.get(Job, job.id)
    assert done is not None and done.status == JobStatus.FAILED and done.exitcode == 73
    assert "output directory not creatable" in done.reason
    assert (root / str(job.id)).read_text() == "not a directory"


def test_a_directory_left_by_an_earlier_attempt_is_reused_and_made_private(
    sqlite_db: Database,
) -> None:
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass")
    job = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id)
    workdir = Path(sqlite_db.settings.job_root) / str(job.id)
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)
    claim = claim_job(sqlite_db, job.id, new_worker_id("test"), sqlite_db.settings.lease_seconds)
    prepared = JobRunner(sqlite_db, sqlite_db.settings, job_hooks=[]).run_begin(claim)
    assert prepared.workdir == workdir
    assert workdir.stat().st_mode & 0o777 == 0o700


def test_a_job_over_its_timeout_is_killed_and_fails_with_reason_timeout(
    sqlite_db: Database,
) -> None:
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c 'import time; time.sleep(30)'", timeout=1)
    job = run(sqlite_db, rt_id)
    assert job.status == JobStatus.FAILED
    assert "timeout" in job.reason
    assert job.wall_seconds is not None and job.wall_seconds < 15


def test_binary_output_is_stored_byte_exact(any_db: Database, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 5000 + b"\xff\xfe\x00 invalid utf8 \xc3\x28"
    code = (
        f"import sys; sys.stdout.buffer.write({payload!r}); sys.stderr.buffer.write(b'\\x00\\x01')"
    )
    _, _, rt_id = make_setup(any_db, cmdparams=str(make_script(tmp_path, code)))
    job = run(any_db, rt_id)
    arts = artifacts(any_db, job.id)
    assert hashlib.sha256(arts["stdout.txt"][1]).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert arts["stdout.txt"][0].sha256 == hashlib.sha256(payload).hexdigest()
    assert arts["stdout.txt"][0].size == len(payload)
    assert arts["stderr.txt"][1] == b"\x00\x01"


def test_secret_values_echoed_to_output_are_masked_but_result_files_are_not(
    sqlite_db: Database, tmp_path: Path
) -> None:
    script = make_script(
        tmp_path,
        "import os; t = os.environ['TOKEN']; print('token=' + t); open(os.environ['MULTIFLEXI_TMP'] + '/t.txt', 'w').write(t)",
    )
    fields = {"TOKEN": {"type": "password"}}
    _, _, rt_id = make_setup(
        sqlite_db, cmdparams=str(script), fields=fields, config={"TOKEN": "hunter2-secret"}
    )
    job = run(sqlite_db, rt_id)
    arts = artifacts(sqlite_db, job.id)
    assert arts["stdout.txt"][1] == b"token=****\n"
    assert arts["t.txt"][1] == b"hunter2-secret"
    _, _, rt2 = make_setup(
        sqlite_db,
        cmdparams=str(script),
        fields=fields,
        config={"TOKEN": "hunter2-secret"},
        mask_secrets=False,
    )
    job2 = run(sqlite_db, rt2)
    assert artifacts(sqlite_db, job2.id)["stdout.txt"][1] == b"token=hunter2-secret\n"


def test_a_job_is_claimed_once(any_db: Database) -> None:
    _, _, rt_id = make_setup(any_db, cmdparams="-c pass")
    job = create_job(any_db, any_db.settings, runtemplate_id=rt_id)
    claim_job(any_db, job.id, "worker-a", 60)
    with pytest.raises(Conflict):
        claim_job(any_db, job.id, "worker-b", 60)


def test_failed_jobs_are_retried_up_to_max_attempts(sqlite_db: Database) -> None:
    _, _, rt_id = make_setup(
        sqlite_db,
        cmdparams="-c 'raise SystemExit(4)'",
        max_attempts=2,
        retry_backoff="fixed",
        retry_min_gap=60,
    )
    first = run(sqlite_db, rt_id)
    with sqlite_db.read() as s:
        retry = s.scalars(select(Job).where(Job.retry_of == first.id)).one()
    assert retry.status == JobStatus.SCHEDULED and retry.attempt == 2
    assert retry.schedule is not None and (retry.schedule - first.end).total_seconds() >= 59  # type: ignore[operator]
    claim = claim_job(sqlite_db, retry.id, "w", 60)
    JobRunner(sqlite_db, sqlite_db.settings, job_hooks=[]).perform_job(claim)
    with sqlite_db.read() as s:
        assert s.scalars(select(Job).where(Job.retry_of == retry.id)).first() is None


def test_a_company_that_does_not_own_the_template_is_refused(sqlite_db: Database) -> None:
    from multiflexi.errors import Invalid

    _, company_id, rt_id = make_setup(sqlite_db, cmdparams="-c pass")
    with pytest.raises(Invalid, match="belongs to company"):
        create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id, company_id=company_id + 99)
    with sqlite_db.read() as s:
        assert s.scalars(select(Job)).first() is None


def test_output_is_visible_while_the_job_runs(sqlite_db: Database, tmp_path: Path) -> None:
    import threading
    import time

    flag = tmp_path / "go"
    code = f"import os, time; print('first', flush=True)\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)\nprint('second')"
    script = make_script(tmp_path, code)
    _, _, rt_id = make_setup(sqlite_db, cmdparams=str(script))
    job = create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt_id)
    claim = claim_job(sqlite_db, job.id, "w", 60)
    worker = threading.Thread(
        target=JobRunner(sqlite_db, sqlite_db.settings, job_hooks=[]).perform_job, args=(claim,)
    )
    worker.start()
    seen = b""
    deadline = time.monotonic() + 5
    while b"first" not in seen and time.monotonic() < deadline:
        arts = artifacts(sqlite_db, job.id)
        seen = arts.get("stdout.txt", (None, b""))[1]
        time.sleep(0.1)
    pid = None
    while pid is None and time.monotonic() < deadline + 5:
        with sqlite_db.read() as s:
            pid = s.get(Job, job.id).pid  # type: ignore[union-attr]
        time.sleep(0.1)
    flag.write_text("")
    worker.join(10)
    assert seen == b"first\n"
    assert pid is not None  # a running job shows its pid
    assert artifacts(sqlite_db, job.id)["stdout.txt"][1] == b"first\nsecond\n"


def test_an_internal_error_while_preparing_fails_the_job_at_once_with_it(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiflexi.jobs import runner

    def broken(app: object, values: object) -> list[str]:
        raise RuntimeError("a bug in building the command line")

    monkeypatch.setattr(runner, "_argv", broken)
    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass")
    job = run(sqlite_db, rt_id)
    assert job.status == JobStatus.FAILED and job.exitcode == 70
    assert job.reason == (
        "internal error preparing the job: RuntimeError: a bug in building the command line"
    )

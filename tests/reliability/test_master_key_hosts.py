"""Two hosts, simulated by two data dirs, against one database (PostgreSQL, and SQLite
with one file): the database records its master key's identity; a host with another key,
or none, refuses every secret with one line naming both fingerprints and where its key
came from, never creates a key, and its daemons refuse to start (issue 32, item 1)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete

from multiflexi.secrets import fingerprint
from multiflexi.storage.database import Database
from multiflexi.storage.models import Company, RunTemplate, Setting
from tests.conftest import ServerDatabases, open_database
from tests.daemons.helpers import BIN, EXECUTOR, SCHEDULER, Daemon, daemon_env, job
from tests.factories import make_setup

CLI = str(BIN / "multiflexi-cli")


@dataclass
class Host:
    """One host: its own data dir (and master.key in it), the shared database."""

    name: str
    data_dir: Path
    env: dict[str, str]

    def __call__(self, *args: str | int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *map(str, args)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str | int) -> str:
        done = self(*args)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    @property
    def key_file(self) -> Path:
        return self.data_dir / "master.key"

    def fingerprint(self) -> str:
        return fingerprint(self.key_file.read_text().strip().encode())

    def daemon(self, argv: list[str], log: Path) -> Daemon:
        return Daemon(argv, self.env, log)


def make_host(db: Database, root: Path, name: str, **extra: str) -> Host:
    data_dir = root / name
    data_dir.mkdir()
    env = daemon_env(db, MULTIFLEXI_DATA_DIR=str(data_dir), **extra)
    return Host(name, data_dir, env)


@pytest.fixture(params=["sqlite", "pgsql"])
def shared(
    request: pytest.FixtureRequest, tmp_path: Path, server_databases: ServerDatabases
) -> Iterator[Database]:
    """One database for both hosts (on SQLite one file, outside both data dirs)."""
    db = open_database(request.param, tmp_path, server_databases)
    yield db
    db.dispose()


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def _store_a_secret(host: Host, company: str, name: str = "bank") -> int:
    host.ok("credential-type:create", "--code", "Tok", "--name", "Token",
            "--field", "TOKEN:secret:required")  # fmt: skip
    out = host.ok("credential:create", "--name", name, "--company", company,
                  "--type", "Tok", "--field", "TOKEN=s3cret-token", "-f", "json")  # fmt: skip
    return int(json.loads(out)["credential_id"])


def _company(db: Database) -> str:
    make_setup(db, executable="/bin/sh", cmdparams="-c 'echo token=${TOKEN:+set}'")
    with db.read() as session:
        return str(session.query(Company.slug).one()[0])


def test_a_host_without_the_key_refuses_every_secret_and_creates_none(
    shared: Database, tmp_path: Path
) -> None:
    a, b = make_host(shared, tmp_path, "a"), make_host(shared, tmp_path, "b")
    company = _company(shared)
    cred = _store_a_secret(a, company)
    theirs = a.fingerprint()

    refused = b("credential:get", cred, "--reveal", "--yes")
    line = _one_line(refused.stderr)
    assert refused.returncode == 1
    assert line == (
        f"error: master key mismatch: the database's secrets are encrypted with key {theirs}, "
        f"this process has none (no ENCRYPTION_MASTER_KEY, no key file {b.key_file}): "
        "give this host the same ENCRYPTION_MASTER_KEY or master.key as the others; "
        "no new key is created while the database holds secrets"
    )
    written = b("credential:create", "--name", "other", "--company",
                company, "--type", "Tok", "--field", "TOKEN=x")  # fmt: skip
    assert written.returncode == 1 and _one_line(written.stderr) == line
    assert not b.key_file.exists()
    # Listing needs no key: redacted values are shown as before.
    assert "••••••••" in b.ok("credential:get", cred)

    status = b("status", "-f", "json")
    state = json.loads(status.stdout)["encryption"]
    assert status.returncode == 0 and not state["ok"] and state["state"] == "missing"
    assert state["database"] == theirs and state["fingerprint"] is None
    assert (
        f"PROBLEM: master key mismatch: the database's secrets are encrypted with key {theirs}"
        in b.ok("status")
    )
    assert not b.key_file.exists()

    # Another key of its own: both fingerprints, and where this one came from.
    b.key_file.write_text("a-key-of-host-b\n")
    mine = b.fingerprint()
    line = _one_line(b("credential:get", cred, "--reveal", "--yes").stderr)
    assert (
        f"encrypted with key {theirs}, this process has key {mine} (from the key file {b.key_file})"
        in line
    )
    b.env["ENCRYPTION_MASTER_KEY"] = "yet-another-key"
    line = _one_line(b("credential:get", cred, "--reveal", "--yes").stderr)
    other = fingerprint(b"yet-another-key")
    assert f"key {theirs}, this process has key {other} (from ENCRYPTION_MASTER_KEY)" in line
    del b.env["ENCRYPTION_MASTER_KEY"]

    # The same key as host a: everything works, and status says so.
    b.key_file.write_bytes(a.key_file.read_bytes())
    assert "s3cret-token" in b.ok("credential:get", cred, "--reveal", "--yes")
    state = json.loads(b.ok("status", "-f", "json"))["encryption"]
    assert state["ok"] and state["state"] == "match" and state["fingerprint"] == theirs


@pytest.mark.parametrize("argv", [[EXECUTOR], [SCHEDULER]], ids=["executor", "scheduler"])
def test_a_daemon_with_the_wrong_key_refuses_to_start(
    shared: Database, tmp_path: Path, argv: list[str]
) -> None:
    a, b = make_host(shared, tmp_path, "a"), make_host(shared, tmp_path, "b")
    _store_a_secret(a, _company(shared))
    prog = Path(argv[0]).name
    for key in (None, "not-the-key"):
        if key is not None:
            b.env["ENCRYPTION_MASTER_KEY"] = key
        daemon = b.daemon(argv, tmp_path / f"{prog}-{key}.log")
        try:
            assert daemon.wait(60) == 1
        finally:
            daemon.stop()
        line = _one_line(_errors(daemon.log()))
        assert line.startswith(f"{prog}: error: master key mismatch: the database's secrets are "
                               f"encrypted with key {a.fingerprint()}, this process has ")  # fmt: skip
        assert not b.key_file.exists()
    # Host a's daemon starts, and its log says which key it checked.
    good = a.daemon([*argv, "--once"], tmp_path / f"{prog}-a.log")
    try:
        assert good.wait(60) == 0
    finally:
        good.stop()
    assert f"action=checks key={a.fingerprint()}" in good.log()


def test_secrets_from_before_the_identity_was_recorded_are_checked_by_opening_one(
    shared: Database, tmp_path: Path
) -> None:
    a, b = make_host(shared, tmp_path, "a"), make_host(shared, tmp_path, "b")
    cred = _store_a_secret(a, _company(shared))
    with shared.session() as session:  # as a database of the previous version has it
        session.execute(delete(Setting))
    b.key_file.write_text("a-key-of-host-b\n")
    line = _one_line(b("credential:get", cred, "--reveal", "--yes").stderr)
    assert "encrypted with another key (its identity not recorded yet)" in line
    assert f"this process has key {b.fingerprint()}" in line
    # The right key opens it and records itself.
    assert "s3cret-token" in a.ok("credential:get", cred, "--reveal", "--yes")
    assert shared.keys.recorded() == a.fingerprint()


def test_an_executor_whose_key_turns_out_wrong_gives_the_job_back_and_stops(
    shared: Database, tmp_path: Path
) -> None:
    a = make_host(shared, tmp_path, "a")
    b = make_host(shared, tmp_path, "b", ENCRYPTION_MASTER_KEY="host-b-key")
    company = _company(shared)
    # No secret yet: b's start-up check passes, and b waits for jobs.
    executor_b = b.daemon([EXECUTOR], tmp_path / "executor-b.log")
    try:
        executor_b.wait_for_log("action=start ")
        cred = _store_a_secret(a, company)
        with shared.read() as session:
            rt_id = session.query(RunTemplate.id).one()[0]
        a.ok("run-template:assign-credential", "--id", rt_id, "--credential_id", cred)
        job_id = json.loads(a.ok("job:create", "--template", rt_id, "-f", "json"))["job_id"]
        assert executor_b.wait(60) == 1
    finally:
        executor_b.stop()
    line = _one_line(_errors(executor_b.log()))
    assert line.startswith("multiflexi-executor: error: master key mismatch: ")
    assert line.endswith(f"(job {job_id} queued again for another executor)")
    row = job(shared, job_id)
    assert row.status == "scheduled" and row.attempt == 1
    assert row.reason.startswith("requeued: executor@") and "master key mismatch" in row.reason
    # Host a runs it, in its first attempt.
    executor_a = a.daemon([EXECUTOR, "--once"], tmp_path / "executor-a.log")
    try:
        assert executor_a.wait(60) == 0
    finally:
        executor_a.stop()
    row = job(shared, job_id)
    assert (row.status, row.attempt, row.retry_of, row.reason) == ("success", 1, None, "")


def _errors(log: str) -> str:
    """The lines of a daemon's stderr that are not log records."""
    return "\n".join(line for line in log.splitlines() if not line[:4].isdigit())


def test_the_fingerprint_reveals_nothing_of_the_key() -> None:
    key = os.urandom(32)
    assert len(fingerprint(key)) == 16 and key.hex()[:16] != fingerprint(key)
    assert fingerprint(key) == fingerprint(key) != fingerprint(key + b"x")

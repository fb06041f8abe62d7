"""Upgrades and downgrades with real CLI processes: a database newer than this version
is one line, SQLite keeps a copy of itself before it migrates, and `db:downgrade --to`
undoes the last step and `db:migrate` redoes it with the data intact (issue 39)."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from multiflexi.storage.database import Database
from multiflexi.storage.migrations import HEAD, known_revisions
from tests.conftest import ServerDatabases, open_database
from tests.daemons.helpers import BIN, EXECUTOR, SCHEDULER, daemon_env

CLI = str(BIN / "multiflexi-cli")
PREVIOUS = known_revisions()[-2]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([CLI, *args], env)


def _stamp(db: Database, revision: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


@pytest.mark.parametrize("backend", ["sqlite", "pgsql"])
def test_a_database_newer_than_this_version_is_one_line_everywhere(
    backend: str, tmp_path: Path, server_databases: ServerDatabases
) -> None:
    db = open_database(backend, tmp_path, server_databases)
    env = daemon_env(db)
    _stamp(db, "0099")  # what a later version's migration leaves
    try:
        line = f"error: the database is newer than this version (0099 > {HEAD}): upgrade this host"
        for args in (["status"], ["company:list"], ["db:migrate"]):
            done = _cli(env, *args)
            assert (done.returncode, done.stderr) == (1, line + "\n"), args
        for daemon in (EXECUTOR, SCHEDULER):
            done = _run([daemon, "--once"], env)
            name = Path(daemon).name
            assert (done.returncode, done.stderr) == (1, f"{name}: {line}\n")
        status = json.loads(_cli(env, "db:status", "-f", "json").stdout)
        assert status["revision"] == "0099" and status["newer"] is True
        assert not list(tmp_path.rglob("*.pre-*"))  # nothing migrated, nothing copied
    finally:
        _stamp(db, HEAD)
        db.dispose()


def test_sqlite_copies_a_database_with_data_before_it_migrates_itself(
    sqlite_db: Database,
) -> None:
    env = daemon_env(sqlite_db)
    path = sqlite_db.settings.sqlite_path
    assert _cli(env, "company:create", "--name", "Acme", "--slug", "acme").returncode == 0
    refused = _cli(env, "db:downgrade", "--to", PREVIOUS)
    assert refused.returncode == 1 and "Refusing without a terminal: add --yes" in refused.stderr
    down = _cli(env, "db:downgrade", "--to", PREVIOUS, "--yes")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip().endswith(f"downgraded from {HEAD} to {PREVIOUS}.")
    assert path.with_name(f"{path.name}.pre-downgrade-{PREVIOUS}").exists()
    sqlite_db.dispose()

    listed = _cli(env, "company:list", "-f", "json")  # any command migrates it back
    assert listed.returncode == 0 and [c["slug"] for c in json.loads(listed.stdout)] == ["acme"]
    copy = path.with_name(f"{path.name}.pre-{HEAD}")
    assert listed.stderr == (
        f"multiflexi: {path} is at schema {PREVIOUS}; a copy of it was written to {copy} "
        f"before migrating to {HEAD}\n"
    )
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (PREVIOUS,)
        assert conn.execute("SELECT slug FROM company").fetchall() == [("acme",)]
    # Up to date: no copy, no message.
    again = _cli(env, "company:list")
    assert again.returncode == 0 and again.stderr == ""


def test_a_new_sqlite_database_is_created_without_a_copy(tmp_path: Path) -> None:
    env = {**daemon_env_for_dir(tmp_path / "fresh")}
    done = _cli(env, "company:list")
    assert done.returncode == 0 and done.stderr == ""
    assert not list((tmp_path / "fresh").glob("*.pre-*"))


def daemon_env_for_dir(data_dir: Path) -> dict[str, str]:
    import os

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_"))
    }
    return {**base, "MULTIFLEXI_DATA_DIR": str(data_dir)}


@pytest.mark.parametrize("backend", ["sqlite", "pgsql"])
def test_downgrade_then_upgrade_keeps_the_data_and_the_secrets(
    backend: str, tmp_path: Path, server_databases: ServerDatabases
) -> None:
    db = open_database(backend, tmp_path, server_databases)
    env = daemon_env(db)
    try:
        steps = [
            ["company:create", "--name", "Acme", "--slug", "acme"],
            ["credential-type:create", "--code", "Tok", "--name", "Token",
             "--field", "TOKEN:secret:required"],
            ["credential:create", "--name", "bank", "--company", "acme", "--type", "Tok",
             "--field", "TOKEN=s3cret"],
        ]  # fmt: skip
        for args in steps:
            assert _cli(env, *args).returncode == 0, args
        recorded = db.keys.recorded()
        assert recorded is not None
        down = _cli(env, "db:downgrade", "--to", PREVIOUS, "--yes")
        assert down.returncode == 0, down.stderr
        assert db.current_revision() == PREVIOUS
        if backend != "sqlite":  # SQLite would migrate itself at the next command
            behind = _cli(env, "company:list")
            assert behind.returncode == 1 and "run `multiflexi-cli db:migrate`" in behind.stderr
        up = _cli(env, "db:migrate")
        assert up.returncode == 0, up.stderr
        assert f"migrated from {PREVIOUS} to {HEAD}" in up.stdout
        shown = json.loads(
            _cli(env, "credential:get", "1", "--reveal", "--yes", "-f", "json").stdout
        )
        assert shown["fields"]["TOKEN"] == "s3cret"
        # The identity went with the table, and came back from the secret that opened.
        assert db.keys.recorded() == recorded
    finally:
        db.dispose()


def test_downgrade_refuses_what_it_cannot_do(sqlite_db: Database) -> None:
    env = daemon_env(sqlite_db)
    unknown = _cli(env, "db:downgrade", "--to", "0099", "--yes")
    assert unknown.returncode == 1 and "unknown revision '0099'" in unknown.stderr
    same = _cli(env, "db:downgrade", "--to", HEAD, "--yes")
    assert same.returncode == 1 and "--to must name an older revision" in same.stderr

"""Shared fixtures: databases on every backend, and the CLI run in-process.

Server backends use one fresh database per test session (``mf_t<pid>``), migrated once,
emptied between tests. Without a server they skip, except under ``CI=true``, where a
missing server fails the run.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multiflexi.config import Settings, settings_from_values
from multiflexi.storage import scratch
from multiflexi.storage.database import Database

BACKENDS = ("sqlite", "pgsql", "mysql")
IN_CI = os.environ.get("CI", "").lower() == "true"


class ServerDatabases:
    """Creates one database per backend for this test session, on demand."""

    def __init__(self) -> None:
        self.created: dict[str, Settings] = {}
        self.failed: dict[str, str] = {}
        self.name = f"mf_t{os.getpid()}"

    def settings(self, backend: str, data_dir: Path) -> Settings:
        if backend in self.failed:
            self._unavailable(backend, self.failed[backend])
        if backend not in self.created:
            try:
                values = scratch.create(backend, self.name)
                settings = settings_from_values({**values, "MULTIFLEXI_DATA_DIR": str(data_dir)})
            except Exception as exc:  # pragma: no cover - depends on the machine
                self.failed[backend] = f"{type(exc).__name__}: {exc}"
                self._unavailable(backend, self.failed[backend])
            self.created[backend] = settings
        base = self.created[backend]
        return settings_from_values({**base.raw, "MULTIFLEXI_DATA_DIR": str(data_dir)})

    @staticmethod
    def _unavailable(backend: str, why: str) -> None:
        message = f"{backend} server not available: {why.splitlines()[0]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)

    def drop_all(self) -> None:
        for backend in self.created:
            try:
                scratch.drop(backend, self.name)
            except Exception:  # pragma: no cover - a server gone by the end of the run
                pass


@pytest.fixture(scope="session")
def server_databases() -> Iterator[ServerDatabases]:
    servers = ServerDatabases()
    yield servers
    servers.drop_all()


def make_settings(backend: str, tmp_path: Path, servers: ServerDatabases, **extra: str) -> Settings:
    data_dir = tmp_path / "data"
    if backend == "sqlite":
        return settings_from_values({"MULTIFLEXI_DATA_DIR": str(data_dir), **extra})
    base = servers.settings(backend, data_dir)
    return settings_from_values({**base.raw, **extra})


def open_database(backend: str, tmp_path: Path, servers: ServerDatabases) -> Database:
    db = Database(make_settings(backend, tmp_path, servers))
    if backend != "sqlite":
        scratch.empty(db)
    return db


def _one_database(
    backend: str, tmp_path: Path, server_databases: ServerDatabases
) -> Iterator[Database]:
    db = open_database(backend, tmp_path, server_databases)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path, server_databases: ServerDatabases) -> Iterator[Database]:
    yield from _one_database("sqlite", tmp_path, server_databases)


@pytest.fixture
def pg_db(tmp_path: Path, server_databases: ServerDatabases) -> Iterator[Database]:
    yield from _one_database("pgsql", tmp_path, server_databases)


@pytest.fixture
def mysql_db(tmp_path: Path, server_databases: ServerDatabases) -> Iterator[Database]:
    yield from _one_database("mysql", tmp_path, server_databases)


@pytest.fixture(params=BACKENDS)
def any_db(
    request: pytest.FixtureRequest, tmp_path: Path, server_databases: ServerDatabases
) -> Iterator[Database]:
    """The same test on SQLite, PostgreSQL and MariaDB."""
    db = open_database(request.param, tmp_path, server_databases)
    yield db
    db.dispose()


def db_environment(db: Database) -> dict[str, str]:
    """Process environment that points a CLI or daemon at ``db``."""
    return scratch.process_environment(db.settings)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)


def _split(args: tuple[str | int | Path, ...]) -> list[str]:
    """``cli("job:show 5")`` is ``cli("job:show", "5")``."""
    argv = [str(a) for a in args]
    if len(argv) == 1 and " " in argv[0]:
        argv = shlex.split(argv[0])
    return argv


class Cli:
    """Runs ``multiflexi-cli`` in-process, exactly as the console script does."""

    def __init__(self, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.env = dict(env)
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str | int | Path, input: str | None = None) -> Result:
        from click.testing import CliRunner

        from multiflexi.cli.main import main

        argv = _split(args)
        runner = CliRunner()
        for key in [
            k
            for k in os.environ
            if k.startswith("DB_") or k.startswith("MULTIFLEXI_") or k.startswith("ENCRYPTION_")
        ]:
            self.monkeypatch.delenv(key, raising=False)
        for key, value in self.env.items():
            self.monkeypatch.setenv(key, value)
        with runner.isolation(input=input) as (out, err, *_):
            code = main(argv)
            stdout = out.getvalue().decode("utf-8", "replace")
            stderr = err.getvalue().decode("utf-8", "replace")
        return Result(code, stdout, stderr)

    def ok(self, *args: str | int | Path, input: str | None = None) -> Result:
        res = self(*args, input=input)
        assert res.exit_code == 0, f"{args} -> {res.exit_code}\n{res.stdout}\n{res.stderr}"
        return res

    def json(self, *args: str | int | Path) -> Any:
        argv = _split(args)
        return self.ok(*argv, "-f", "json").json()


@pytest.fixture
def cli(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI against a fresh SQLite database."""
    return Cli(db_environment(sqlite_db), monkeypatch)


REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference"

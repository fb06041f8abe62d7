"""The real server: ``multiflexi-server`` in a subprocess on a free loopback port, on a
scratch database of each backend, driven over HTTP with httpx. One server per test module
and backend (starting one takes a second or two)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from multiflexi.storage.database import Database
from tests.conftest import ServerDatabases, db_environment, open_database
from tests.factories import make_setup

BASE = "/api/VitexSoftware/MultiFlexi/1.0.0"
PASSWORD = "pass-word-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``multiflexi-server`` and the database under it."""

    db: Database
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.url + BASE

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, **kw)

    def as_user(self, login: str, password: str = PASSWORD) -> httpx.Client:
        return self.client(auth=(login, password))

    def with_token(self, token: str) -> httpx.Client:
        return self.client(headers={"Authorization": f"Bearer {token}"})

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return int(self.proc.returncode)


def start_server(db: Database, tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_", "API_RATE"))
    }
    env.update(db_environment(db))
    env.update(extra_env or {})
    log = tmp / f"server-{port}.log"
    code = "from multiflexi.api.server import run; run()"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(db, proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(server.base + "/ping.json", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server did not answer: {log.read_text()}")
        time.sleep(0.05)


def add_user(
    db: Database, login: str, *, admin: bool = False, roles: dict[int, str] | None = None
) -> int:
    from multiflexi.accounts.service import assign_company, create_user, set_roles

    with db.session() as s:
        user = create_user(s, login=login, email=f"{login}@example.com", password=PASSWORD)
        if admin:
            set_roles(s, user, ["admin"])
        for company_id, role in (roles or {}).items():
            assign_company(s, company_id, user, role)
        return user.id


def token_for(db: Database, login: str, **kw: Any) -> str:
    from multiflexi.accounts.service import find_user
    from multiflexi.accounts.tokens import generate_token

    with db.session() as s:
        return generate_token(s, find_user(s, login=login), **kw)[1]


SCRIPT = """
import os, sys
print("hello from", os.environ.get("MULTIFLEXI_COMPANY_SLUG"))
print("secret is", os.environ.get("API_TOKEN"))
sys.stderr.write("warn\\n")
with open(os.path.join(os.environ["MULTIFLEXI_TMP"], "data.bin"), "wb") as fh:
    fh.write(bytes(range(256)) * 10000)
"""


def populate(db: Database, tmp: Path) -> dict[str, Any]:
    """Two companies A and B, each with an app, a run template and a finished job with
    artifacts; users admin, operator and viewer of A, viewer of B."""
    from tests.support_servers import run_job

    script = tmp / "probe.py"
    script.write_text(SCRIPT)
    fields = {"API_TOKEN": {"type": "password", "secret": True}, "ROWS": {"type": "string"}}
    ids: dict[str, Any] = {}
    for name in ("a", "b"):
        app_id, company_id, rt_id = make_setup(
            db,
            cmdparams=str(script),
            fields=fields,
            config={"API_TOKEN": f"tok-{name}-s3cret", "ROWS": "3"},
            slug=name,
            artifacts={"data.bin": "binary data"},
        )
        job = run_job(db, db.settings, rt_id)
        ids[name] = {"app": app_id, "company": company_id, "rt": rt_id, "job": job.id}
        with db.read() as s:
            from sqlalchemy import select

            from multiflexi.storage.models import Artifact

            arts = {
                a.filename: a.id
                for a in s.scalars(select(Artifact).where(Artifact.job_id == job.id))
            }
        ids[name]["artifacts"] = arts
    add_user(db, "admin", admin=True)
    add_user(db, "operator", roles={ids["a"]["company"]: "operator"})
    add_user(db, "viewer", roles={ids["a"]["company"]: "viewer"})
    add_user(db, "other", roles={ids["b"]["company"]: "viewer"})
    return ids


def _server_for(
    backend: str, tmp_path_factory: pytest.TempPathFactory, servers: ServerDatabases
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"api-{backend}")
    db = open_database(backend, tmp, servers)
    ids = populate(db, tmp)
    server = start_server(db, tmp)
    server.ids = ids
    try:
        yield server
    finally:
        server.stop()
        db.dispose()


@pytest.fixture(scope="module", params=("sqlite", "pgsql", "mysql"))
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    server_databases: ServerDatabases,
) -> Iterator[Server]:
    """The server on each backend, with :func:`populate`'s data."""
    yield from _server_for(request.param, tmp_path_factory, server_databases)


@pytest.fixture(scope="module")
def sqlite_server(
    tmp_path_factory: pytest.TempPathFactory, server_databases: ServerDatabases
) -> Iterator[Server]:
    yield from _server_for("sqlite", tmp_path_factory, server_databases)

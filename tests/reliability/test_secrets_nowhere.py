"""A planted secret appears nowhere — database, displays, exports, logs — unless the user
asks with --reveal."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from multiflexi.storage.database import Database
from multiflexi.storage.models import Base
from tests.conftest import Cli, db_environment

SECRET = "Pl4nted-S3cret-Value"
PRINTER = "import os, sys; print('cfg', os.environ['APP_PASSWORD']); print('cred', os.environ['CRED_TOKEN'], file=sys.stderr); open(os.environ['MULTIFLEXI_TMP'] + '/out.txt', 'w').write(os.environ['APP_PASSWORD'])"


#: The one place the secret may be: the result file the application itself wrote, which
#: is stored unaltered by design.
EXEMPT = {
    "artifacts": "WHERE filename <> 'out.txt'",
    "artifact_chunk": "WHERE artifact_id NOT IN (SELECT id FROM artifacts WHERE filename = 'out.txt')",
}


def all_rows_text(db: Database) -> str:
    out = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            where = EXEMPT.get(table.name, "")
            for row in conn.execute(text(f"SELECT * FROM {table.name} {where}")):
                out.append(repr(tuple(row)))
    return "\n".join(out)


@pytest.fixture
def planted(
    any_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Cli, Database, int]:
    cli = Cli({**db_environment(any_db), "PATH": os.environ.get("PATH", "")}, monkeypatch)
    app_file = tmp_path / "printer.json"
    import json

    app_file.write_text(
        json.dumps(
            {
                "name": "Secret Printer",
                "description": "prints its secrets",
                "executable": sys.executable,
                "cmdparams": "{SCRIPT}",
                "environment": {
                    "APP_PASSWORD": {"type": "password", "description": "a secret"},
                    "SCRIPT": {"type": "string", "description": "script"},
                },
            }
        )
    )
    script = tmp_path / "printer.py"
    script.write_text(PRINTER)
    cli.ok("application:import-json", "--file", app_file)
    cli.ok("company:create", "--name", "Secretive")
    cli.ok(
        "credential-type:create",
        "--code",
        "Tok",
        "--name",
        "Token",
        "--field",
        "CRED_TOKEN:password",
    )
    cred = cli.json(
        "credential:create",
        "--name",
        "tok",
        "--company",
        "secretive",
        "--type",
        "Tok",
        "--field",
        f"CRED_TOKEN={SECRET}",
    )
    rt = cli.json(
        "run-template:create",
        "--name",
        "leaky",
        "--app_id",
        "1",
        "--company",
        "secretive",
        "--config",
        f"APP_PASSWORD={SECRET}",
        "--config",
        f"SCRIPT={script}",
    )
    rt_id = rt.get("runtemplate_id", rt.get("id"))
    cli.ok(
        "run-template:assign-credential",
        "--id",
        rt_id,
        "--credential_id",
        cred.get("credential_id", cred.get("id")),
    )
    job_id = cli.json("job:create", "--template", rt_id)["job_id"]
    ran = cli(f"job:run {job_id}")
    assert ran.exit_code == 0, ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
    return cli, any_db, job_id


def test_a_planted_secret_is_stored_and_shown_nowhere(planted: tuple[Cli, Database, int]) -> None:
    cli, db, job_id = planted
    assert SECRET not in all_rows_text(db)
    for command in (
        f"job:show {job_id}",
        f"job:show {job_id} --env",
        f"job:show {job_id} -f json",
        f"job:show {job_id} --env -f json",
        f"job:logs {job_id}",
        f"job2env {job_id}",
        f"job2script {job_id}",
        "run-template:get 1",
        "run-template:get 1 -f json",
        "credential:list -f json",
        "credential:get 1",
        "job:list -f json",
    ):
        res = cli.ok(command)
        assert SECRET not in res.stdout + res.stderr, command
    arts = cli.json(f"artifact:list --job {job_id}")
    for art in arts:
        content = cli.ok(f"artifact:get {art['id']} --output -").stdout
        if art["filename"] == "out.txt":
            assert content == SECRET  # result files are never altered
        else:
            assert SECRET not in content, art["filename"]


def test_reveal_shows_the_secret_only_when_asked(planted: tuple[Cli, Database, int]) -> None:
    cli, _, job_id = planted
    assert SECRET in cli.ok(f"job:show {job_id} --env --reveal --yes").stdout
    assert SECRET in cli.ok(f"job2env {job_id} --reveal --yes").stdout
    refused = cli(f"job:show {job_id} --env --reveal")
    assert refused.exit_code == 1 and SECRET not in refused.stdout


def test_the_sqlite_file_holds_no_clear_secret_and_is_private(
    planted: tuple[Cli, Database, int],
) -> None:
    _, db, _ = planted
    if db.dialect != "sqlite":
        pytest.skip("file check is for the embedded database")
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = db.settings.sqlite_path.read_bytes()
    assert raw.count(SECRET.encode()) <= 1  # at most the application's own result file
    assert stat.S_IMODE(db.settings.sqlite_path.stat().st_mode) == 0o600
    key = db.settings.data_dir / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

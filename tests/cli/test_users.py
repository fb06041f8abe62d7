"""user:*, user-role:set, user-company:*, token:* and auditlog:list through the real CLI."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from multiflexi.accounts.passwords import verify_password
from multiflexi.accounts.tokens import user_of_token
from multiflexi.errors import Unauthenticated
from multiflexi.storage.database import Database
from multiflexi.storage.models import AuditLog, Token, User
from tests.conftest import Cli


def test_a_user_created_from_stdin_has_an_argon2id_hash_that_is_never_shown(
    cli: Cli, sqlite_db: Database
) -> None:
    res = cli.ok(
        "user:create --login bob --email bob@example.com --firstname Bob --password-stdin",
        input="correct horse battery\n",
    )
    assert "User created" in res.stdout
    with sqlite_db.read() as s:
        bob = s.scalars(select(User).where(User.login == "bob")).one()
        assert bob.password.startswith("$argon2id$")
        assert verify_password(bob.password, "correct horse battery")
    listing = cli.ok("user:list -f json").stdout
    assert "argon2" not in listing and "bob@example.com" in listing


def test_plaintext_is_accepted_with_a_warning_and_a_short_password_is_refused(cli: Cli) -> None:
    res = cli("user:create --login carol --email c@example.com --plaintext s3cret-pass")
    assert res.exit_code == 0 and "ps" in res.stderr
    short = cli("user:create --login dave --email d@example.com --plaintext short")
    assert short.exit_code == 1 and "too short" in short.stderr
    dup = cli("user:create --login carol --email c@example.com --plaintext s3cret-pass")
    assert dup.exit_code == 1 and "exists" in dup.stderr


def test_password_file_roles_and_company_assignments(cli: Cli, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-a-file-123\n")
    cli.ok(f"user:create --login erin --email e@example.com --password-file {pw}")
    assert cli.json("user-role:set --login erin --roles admin")["roles"] == ["admin"]
    company = cli.json("company:create --name Acme")["company_id"]
    out = cli.json(f"user-company:assign --company_id {company} --login erin --role operator")
    assert out["role"] == "operator"
    bad = cli(f"user-company:assign --company_id {company} --login erin --role boss")
    assert bad.exit_code == 1 and "viewer, operator" in bad.stderr
    got = cli.json("user:get --login erin")
    assert got["roles"] == ["admin"]
    assert got["companies"] == [
        {
            "company_id": company,
            "user_id": got["id"],
            "role": "operator",
            "created_at": got["companies"][0]["created_at"],
        }
    ]
    assert cli.json(f"user-company:list --company_id {company}")[0]["role"] == "operator"
    gone = cli.json(f"user-company:unassign --company_id {company} --login erin")
    assert gone["deleted"] == 1
    assert cli.json("user-role:set --login erin --roles ''")["roles"] == []
    assert cli.json("user:delete --login erin")["status"] == "success"
    assert cli("user:get --login erin").exit_code == 1


def test_tokens_are_shown_once_stored_hashed_and_stop_working_when_revoked(
    cli: Cli, sqlite_db: Database
) -> None:
    cli.ok("user:create --login frank --email f@example.com --plaintext long-enough-pw")
    made = cli.json("token:generate --user frank --expires 1d")
    plain = made["token"]
    with sqlite_db.session() as s:
        row = s.get(Token, made["token_id"])
        assert row is not None and plain not in (row.token_hash, row.prefix)
        assert user_of_token(s, plain).login == "frank"
    listed = cli.ok("token:list -f json").stdout
    assert plain not in listed and '"state": "active"' in listed
    cli.ok(f"token:revoke --id {made['token_id']}")
    with sqlite_db.session() as s:
        try:
            user_of_token(s, plain)
            raise AssertionError("a revoked token still works")
        except Unauthenticated:
            pass
    assert cli.json("token:list --user frank")[0]["state"] == "revoked"


def test_every_change_is_in_the_audit_log_with_secrets_redacted(
    cli: Cli, sqlite_db: Database
) -> None:
    cli.ok("user:create --login gina --email g@example.com --plaintext very-secret-pw")
    cli.ok("user:update --login gina --new-email g2@example.com")
    cli.ok("company:create --name Globex")
    rows = cli.json("auditlog:list --limit 10")
    kinds = [(r["entity_type"], r["action"]) for r in rows]
    assert ("user", "create") in kinds and ("user", "update") in kinds
    assert ("company", "create") in kinds
    assert all(r["source"] == "cli" and r["login"] for r in rows)
    with sqlite_db.read() as s:
        texts = [str(a.changes) for a in s.scalars(select(AuditLog))]
    assert not any("argon2" in t or "very-secret-pw" in t for t in texts)
    update = next(r for r in rows if r["action"] == "update")
    assert update["changes"] == {"email": "g2@example.com", "DatSave": update["changes"]["DatSave"]}
    assert cli.json("auditlog:list --entity company")[0]["entity_type"] == "company"


def test_the_cli_never_imports_the_api_layer(cli: Cli, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from multiflexi.cli.main import main\n"
        "main(['user:list', '-f', 'json'])\n"
        "main(['token:list', '-f', 'json'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette')"
        " or m.startswith('multiflexi.api')]\n"
        "print('LOADED', bad)\n"
    )
    env = {**db_environment_of(cli), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "LOADED []" in out


def db_environment_of(cli: Cli) -> dict[str, str]:
    return dict(cli.env)

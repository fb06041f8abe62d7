"""The Alembic head matches the models on every backend, and HEAD names the newest script."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from multiflexi.storage.database import Database
from multiflexi.storage.migrations import HEAD, alembic_config
from multiflexi.storage.models import Base


def test_head_constant_names_the_newest_migration() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == HEAD


def test_migrated_schema_equals_the_models(any_db: Database) -> None:
    with any_db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    assert any_db.current_revision() == HEAD


def test_migration_0004_drops_the_job_state_indexes_and_gives_them_back(any_db: Database) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def job_indexes() -> set[str]:
        with any_db.engine.connect() as conn:
            return {ix["name"] or "" for ix in inspect(conn).get_indexes("job")}

    assert {"ix_job_status", "ix_job_begin"}.isdisjoint(job_indexes())
    command.downgrade(alembic_config(any_db.engine), "0003")
    assert any_db.current_revision() == "0003"
    assert {"ix_job_status", "ix_job_begin"} <= job_indexes()
    any_db.migrate()
    assert any_db.current_revision() == HEAD
    assert {"ix_job_status", "ix_job_begin"}.isdisjoint(job_indexes())


def test_the_limits_migration_adds_nullable_columns_and_takes_them_back(any_db: Database) -> None:
    from alembic import command
    from sqlalchemy import inspect

    limits = {"memory_limit", "cpu_time_limit", "cpus", "max_processes", "max_open_files"}
    limits.add("output_limit")

    def columns(table: str) -> dict[str, bool]:
        with any_db.engine.connect() as conn:
            return {c["name"]: c["nullable"] for c in inspect(conn).get_columns(table)}

    assert all(columns("runtemplate")[name] for name in limits)
    assert columns("job")["limits_mechanism"]
    # Found by its file name: revisions are renumbered when branches merge.
    script = ScriptDirectory.from_config(alembic_config())
    [ours] = [r for r in script.walk_revisions() if r.path.endswith("_resource_limits.py")]
    assert isinstance(ours.down_revision, str)
    command.downgrade(alembic_config(any_db.engine), ours.down_revision)
    assert limits.isdisjoint(columns("runtemplate"))
    assert "limits_mechanism" not in columns("job")
    any_db.migrate()
    assert any_db.current_revision() == HEAD
    assert limits <= set(columns("runtemplate"))


def test_the_operations_migration_adds_on_interrupt_and_daemon_state_and_takes_them_back(
    any_db: Database,
) -> None:
    """Server defaults: rows written by an older version (which knows neither column)
    read ``requeue`` and ``running``; the downgrade removes both."""
    from alembic import command
    from sqlalchemy import inspect

    def columns(table: str) -> set[str]:
        with any_db.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns(table)}

    assert "on_interrupt" in columns("runtemplate") and "state" in columns("worker")
    # Found by its file name: revisions are renumbered when branches merge.
    script = ScriptDirectory.from_config(alembic_config())
    [ours] = [r for r in script.walk_revisions() if r.path.endswith("_operations.py")]
    assert isinstance(ours.down_revision, str)
    command.downgrade(alembic_config(any_db.engine), ours.down_revision)
    assert "on_interrupt" not in columns("runtemplate") and "state" not in columns("worker")
    any_db.migrate()
    assert any_db.current_revision() == HEAD
    assert "on_interrupt" in columns("runtemplate") and "state" in columns("worker")


def test_the_users_and_audit_migration_goes_down_and_up_again(any_db: Database) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def tables() -> set[str]:
        with any_db.engine.connect() as conn:
            return set(inspect(conn).get_table_names())

    ours = {"token", "rbac_user_roles", "company_user", "login_attempt", "auditlog"}
    assert ours <= tables()
    # Found by its file name: revisions are renumbered when branches merge.
    script = ScriptDirectory.from_config(alembic_config())
    [mine] = [r for r in script.walk_revisions() if r.path.endswith("_users_tokens_audit.py")]
    assert isinstance(mine.down_revision, str)
    command.downgrade(alembic_config(any_db.engine), mine.down_revision)
    assert ours.isdisjoint(tables())
    any_db.migrate()
    assert ours <= tables() and any_db.current_revision() == HEAD


def test_the_company_name_key_migration_keys_existing_names_and_keeps_the_colliding_ones(
    any_db: Database,
) -> None:
    """Names that fold to one key (possible on SQLite and PostgreSQL before) both stay;
    the later one has no key until it is renamed."""
    from alembic import command
    from sqlalchemy import text

    from multiflexi.storage.models import company_name_key

    # Found by its file name: revisions are renumbered when branches merge.
    script = ScriptDirectory.from_config(alembic_config())
    [ours] = [
        r for r in script.walk_revisions() if r.path.endswith("_company_name_key_globalenv.py")
    ]
    assert isinstance(ours.down_revision, str)
    command.downgrade(alembic_config(any_db.engine), ours.down_revision)
    names = ["Účetní s.r.o.", "Acme"]
    if any_db.dialect != "mysql":  # its collation refused this one before
        names.append("účetní s.r.o.")
    insert = text(
        "INSERT INTO company (enabled, name, slug, ic, email, settings, logo, server, setup,"
        ' zabbix_host, "DatCreate", marked_for_deletion)'
        " VALUES (1=1, :name, :slug, '', '', '', '', 0, 1=0, '', CURRENT_TIMESTAMP, 1=0)"
    )
    with any_db.engine.begin() as conn:
        if any_db.dialect == "mysql":
            conn.exec_driver_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
        for i, name in enumerate(names):
            conn.execute(insert, {"name": name, "slug": f"c{i}"})
    any_db.migrate()
    with any_db.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT name, name_key FROM company")).all())
    assert keys["Účetní s.r.o."] == company_name_key("účetní S.R.O.")
    assert keys["Acme"] == company_name_key("ACME")
    if any_db.dialect != "mysql":
        assert keys["účetní s.r.o."] is None
    command.downgrade(alembic_config(any_db.engine), ours.down_revision)
    any_db.migrate()
    assert any_db.current_revision() == HEAD

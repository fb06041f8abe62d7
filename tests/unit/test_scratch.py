"""The throw-away databases shared by the test suite and the benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiflexi.config import settings_from_values
from multiflexi.storage import scratch
from multiflexi.storage.database import Database


def test_the_admin_login_takes_the_overrides_of_its_own_backend_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MF_TEST_PG_PORT", "6543")
    monkeypatch.setenv("MF_TEST_PG_PASSWORD", "pw")
    monkeypatch.delenv("MF_TEST_MY_PORT", raising=False)
    pg, my = scratch.server_values("pgsql"), scratch.server_values("mysql")
    assert (pg["DB_PORT"], pg["DB_PASSWORD"], pg["DB_USERNAME"]) == ("6543", "pw", "postgres")
    assert "DB_PORT" not in my and my["DB_USERNAME"] == "root"


@pytest.mark.parametrize("backend", ["sqlite", "pgsql", "mysql"])
def test_a_process_environment_opens_the_same_database(backend: str, tmp_path: Path) -> None:
    values = {"MULTIFLEXI_DATA_DIR": str(tmp_path), "ENCRYPTION_MASTER_KEY": "k" * 44}
    if backend != "sqlite":
        values |= {**scratch.server_values(backend), "DB_DATABASE": "mf_x", "DB_PASSWORD": "s"}
    settings = settings_from_values(values)
    again = settings_from_values(scratch.process_environment(settings))
    assert again.database_url() == settings.database_url()
    assert (again.data_dir, again.master_key) == (settings.data_dir, settings.master_key)


def test_emptying_is_refused_on_sqlite(sqlite_db: Database) -> None:
    with pytest.raises(ValueError, match="not a server database"):
        scratch.empty(sqlite_db)


@pytest.mark.parametrize("fixture", ["pg_db", "mysql_db"])
def test_a_server_database_is_emptied_and_its_ids_restart(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy import func, select

    from multiflexi.storage.models import Company

    db: Database = request.getfixturevalue(fixture)
    with db.session() as session:
        session.add_all([Company(name="a", slug="a"), Company(name="b", slug="b")])
    scratch.empty(db)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Company)) == 0
        session.add(Company(name="c", slug="c"))
        session.flush()
        assert session.scalars(select(Company.id)).all() == [1]
